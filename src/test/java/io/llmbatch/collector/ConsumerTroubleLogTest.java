package io.llmbatch.collector;

import java.time.Duration;

import org.apache.camel.test.main.junit5.CamelMainTest;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.Broker;
import io.llmbatch.support.LogEvents;
import io.llmbatch.support.Mongo;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * A consumer that cannot consume must leave a trace: the results queue is deleted under a running collector (an
 * operator resetting a job), so the listener container's consumers are cancelled and cannot restart until the
 * queue is back. The log line is the behaviour under test: it is an operator's only way to learn why nothing is
 * collected while the process looks healthy.
 */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=collector",
        "llmbatch.queue.results=" + ConsumerTroubleLogTest.RESULTS,
        "llmbatch.queue.results-dlq=" + ConsumerTroubleLogTest.RESULTS + ".dlq",
        "llmbatch.mongodb.uri=mongodb://127.0.0.1:" + ConsumerTroubleLogTest.MONGO_PORT + "/?serverSelectionTimeoutMS=1000",
        "camel.main.routesReloadEnabled=false" })
class ConsumerTroubleLogTest {

    static final String RESULTS = "t11c_trouble_results";
    static final int MONGO_PORT = 20211;
    static final LogEvents LOG;

    static {
        Mongo.reset(MONGO_PORT);
        LOG = LogEvents.capture();
    }

    @AfterAll
    static void cleanUp() throws Exception {
        LOG.stopCapturing();
        try (Broker broker = new Broker()) {
            broker.reset(RESULTS, RESULTS + ".dlq");
        }
    }

    @Test
    void a_consumer_whose_queue_is_deleted_leaves_an_error_in_the_log() throws Exception {
        try (Broker broker = new Broker()) {
            await().atMost(Duration.ofSeconds(30)).until(() -> broker.consumers(RESULTS) == 2);
            broker.reset(RESULTS);
            await().atMost(Duration.ofSeconds(30)).untilAsserted(() -> assertThat(
                    LOG.warnings(t -> t.contains(RESULTS) && (t.contains("queue deleted") || t.contains("Queue not present"))))
                    .as("a WARN or ERROR naming the queue; logged: %s", LOG.all().stream().map(LogEvents::describe).toList())
                    .isNotEmpty());
            broker.purge(RESULTS); // declared again: the consumers come back by themselves
            await().atMost(Duration.ofSeconds(60)).until(() -> broker.consumers(RESULTS) == 2);
        }
    }
}
