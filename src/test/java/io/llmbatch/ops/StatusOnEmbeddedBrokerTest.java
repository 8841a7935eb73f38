package io.llmbatch.ops;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;

import org.apache.camel.util.FileUtil;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.springframework.amqp.rabbit.connection.CachingConnectionFactory;

import io.llmbatch.embedded.Embedded;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * Status reports on the embedded broker (Qpid Broker-J), as in the default all-in-one run: the reporter and
 * {@link Progress} share one connection factory and both need the {@code llmbatch.status} exchange. On Qpid a second
 * declaration of that exchange from another channel failed (EXH-1001), and every report was dropped.
 */
class StatusOnEmbeddedBrokerTest {

    static final int PORT = 20201;
    static final Path DATA = Path.of("target/status-qpid");
    static Embedded.Running broker;
    static CachingConnectionFactory cf;

    @BeforeAll
    static void startBroker() throws Exception {
        FileUtil.removeDir(DATA.toFile());
        broker = Embedded.broker(DATA, PORT);
        cf = new CachingConnectionFactory();
        cf.setUri(broker.address());
        cf.setVirtualHost("/");
    }

    @AfterAll
    static void stopBroker() {
        cf.destroy();
        broker.stop().run();
    }

    @Test
    void reports_of_a_collector_and_a_worker_reach_progress_on_the_embedded_broker() {
        // as in the all-in-one process: one reporter (worker and collector sections) starts first, the ingest
        // node's Progress after it, on the same connection factory
        StatusReporter reporter = new StatusReporter(cf, 1000, "vm", "worker,collector")
                .with("worker", () -> Map.of("completed", 3000, "in_flight", 0, "gpus", 1, "gpu", "none"))
                .with("collector", () -> Map.of("stored", 3000, "documents", 3000));
        Progress progress = new Progress(cf, "status-qpid.tasks", "status-qpid.results", List.of(), null, "CNY", "vm");
        reporter.report();
        try {
            await().atMost(Duration.ofSeconds(20)).untilAsserted(() -> {
                progress.sample();
                reporter.report();
                Map<String, Object> p = progress.snapshot();
                assertThat(p.get("stored")).as(p.toString()).isEqualTo(3000L);
                assertThat((List<?>) p.get("workers")).hasSize(1);
                assertThat((List<?>) p.get("collectors")).hasSize(1);
            });
        } finally {
            progress.doStop();
        }
    }
}
