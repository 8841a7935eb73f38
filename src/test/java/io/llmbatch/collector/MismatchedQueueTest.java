package io.llmbatch.collector;

import java.util.Map;

import org.apache.camel.main.Main;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.Broker;
import io.llmbatch.support.LogEvents;
import io.llmbatch.support.Mongo;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The results queue exists as a classic queue (declared here first) while the collector is configured for quorum
 * queues: the broker refuses the consumer's declaration (PRECONDITION_FAILED ... inequivalent arg). The start must
 * fail, and the log must say why: it is what an operator reads. (It did already before the listener container's
 * logger was turned back on: the refusal is logged by Spring's connection factory and Camel's failed start; this
 * keeps it so.)
 */
@ExtendWith(RabbitMQRequired.class)
class MismatchedQueueTest {

    static final String RESULTS = "t11c_mismatch_results";
    static final int MONGO_PORT = 20212;

    LogEvents log;

    @AfterEach
    void cleanUp() throws Exception {
        if (log != null) {
            log.stopCapturing();
        }
        try (Broker broker = new Broker()) {
            broker.reset(RESULTS, RESULTS + ".dlq");
        }
    }

    @Test
    void a_queue_declared_with_other_arguments_stops_the_start_and_the_log_says_why() throws Exception {
        try (Broker broker = new Broker()) {
            broker.reset(RESULTS, RESULTS + ".dlq");
            broker.declare(RESULTS, Map.of()); // classic
        }
        Mongo.reset(MONGO_PORT);
        log = LogEvents.capture();
        Main main = new Main();
        main.setPropertyPlaceholderLocations("classpath:application.properties");
        Map.of("llmbatch.roles", "collector", "llmbatch.queue.type", "quorum", "llmbatch.queue.results", RESULTS,
                "llmbatch.queue.results-dlq", RESULTS + ".dlq", "camel.main.routesReloadEnabled", "false",
                "llmbatch.mongodb.uri", "mongodb://127.0.0.1:" + MONGO_PORT + "/?serverSelectionTimeoutMS=1000",
                "llmbatch.rabbitmq.url", RabbitMQRequired.URL).forEach(main::addOverrideProperty);
        try {
            assertThatThrownBy(main::start).hasStackTraceContaining("inequivalent arg");
        } finally {
            main.stop();
        }
        assertThat(log.warnings(t -> t.contains("inequivalent arg") && t.contains(RESULTS))).isNotEmpty();
    }
}
