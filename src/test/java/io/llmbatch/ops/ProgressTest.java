package io.llmbatch.ops;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.springframework.amqp.rabbit.connection.CachingConnectionFactory;

import io.llmbatch.support.Broker;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * /api/progress arithmetic on a clock the test drives (rate over the last minute, ETA, cost per 1,000), with
 * queue depths read from the real broker and one status report carried through the llmbatch.status exchange.
 */
@ExtendWith(RabbitMQRequired.class)
class ProgressTest {

    static final String TASKS = "progress-test.tasks";
    static final String RESULTS = "progress-test.results";
    static final String DLQ = "progress-test.tasks.dlq";

    Broker broker;
    CachingConnectionFactory cf;
    final AtomicLong now = new AtomicLong(1_000_000);

    @BeforeEach
    void setUp() throws Exception {
        broker = new Broker().reset(TASKS, RESULTS, DLQ);
        cf = new CachingConnectionFactory();
        cf.setUri(RabbitMQRequired.URL);
        if (cf.getVirtualHost() == null || cf.getVirtualHost().isEmpty()) {
            cf.setVirtualHost("/");
        }
    }

    @AfterEach
    void tearDown() throws Exception {
        cf.destroy();
        broker.close();
    }

    Progress progress(Double price) {
        return new Progress(cf, TASKS, RESULTS, List.of(DLQ), price, "CNY", "test", now::get);
    }

    static byte[] report(String host, long completed, long inFlight, long stored, long documents, Double price) {
        String worker = "{\"completed\":" + completed + ",\"in_flight\":" + inFlight + ",\"concurrency\":8,\"gpu\":\"A10\",\"gpus\":2"
                        + (price == null ? "" : ",\"cost_per_gpu_hour\":" + price) + "}";
        String collector = stored < 0 ? "" : ",\"collector\":{\"stored\":" + stored + ",\"documents\":" + documents + "}";
        return ("{\"host\":\"" + host + "\",\"process\":1,\"interval_ms\":5000,\"worker\":" + worker + collector + "}")
                .getBytes(StandardCharsets.UTF_8);
    }

    @Test
    void rate_eta_and_cost_come_from_the_last_minute_of_reports() throws Exception {
        List<byte[]> tasks = new ArrayList<>();
        for (int i = 0; i < 500; i++) {
            tasks.add(("{\"n\":" + i + "}").getBytes(StandardCharsets.UTF_8));
        }
        broker.publishAll(TASKS, tasks);
        broker.publish(DLQ, "{}".getBytes(StandardCharsets.UTF_8), "poison-1");
        broker.publish(DLQ, "{}".getBytes(StandardCharsets.UTF_8), "poison-2");
        Progress progress = progress(null);
        // two workers on 2 GPUs each, 6 and 4 results/s, and one collector storing 10/s: for 90 s, a report every 2 s
        for (int t = 0; t <= 90; t += 2) {
            now.set(1_000_000 + t * 1000L);
            progress.accept(report("gpu-a", 6L * t, 5, 10L * t, 3000 + 10L * t, 1.5));
            progress.accept(report("gpu-b", 4L * t, 3, -1, -1, 1.5));
            progress.sample();
        }
        Map<String, Object> p = progress.snapshot();

        assertThat(p).containsEntry("tasks_waiting", 500L).containsEntry("in_flight", 8L).containsEntry("results_waiting", 0L)
                .containsEntry("stored", 3900L).containsEntry("dead_lettered", 2L);
        assertThat(p.get("rate_per_second")).isEqualTo(10.0); // over the last 60 s only
        assertThat(p.get("remaining")).isEqualTo(508L);
        assertThat(p.get("eta_seconds")).isEqualTo(51L); // 508 / 10 per s
        @SuppressWarnings("unchecked")
        Map<String, Object> cost = (Map<String, Object>) p.get("cost");
        // 2 workers x 2 GPUs x 1.5 CNY = 6 CNY per hour for 36,000 results per hour
        assertThat(cost).containsEntry("per_hour", 6.0).containsEntry("per_1000", 0.17).containsEntry("currency", "CNY");
        @SuppressWarnings("unchecked")
        List<Map<String, Object>> workers = (List<Map<String, Object>>) p.get("workers");
        assertThat(workers).extracting(w -> w.get("host") + " " + w.get("rate_per_second") + "/s " + w.get("cost_per_1000"))
                .containsExactlyInAnyOrder("gpu-a 6.0/s 0.14", "gpu-b 4.0/s 0.21");
    }

    @Test
    void nothing_left_means_eta_zero_and_no_reports_means_no_estimate() throws Exception {
        Progress progress = progress(2.0);
        assertThat(progress.snapshot()).containsEntry("remaining", 0L).containsEntry("eta_seconds", 0);

        broker.publish(TASKS, "{}".getBytes(StandardCharsets.UTF_8), "t-1");
        progress.sample();
        Map<String, Object> p = progress.snapshot();
        assertThat(p).containsEntry("remaining", 1L).containsEntry("rate_per_second", 0.0);
        assertThat(p.get("eta_seconds")).isNull(); // no rate yet: no made-up ETA
    }

    @Test
    void a_status_report_travels_through_the_broker() throws Exception {
        Progress progress = progress(null);
        StatusReporter reporter = new StatusReporter(cf, 5000, "gpu-c", "worker")
                .with("worker", () -> Map.of("completed", 7, "in_flight", 3, "gpus", 1, "gpu", "none"));
        progress.sample(); // declares its status queue, bound to the exchange
        reporter.report();
        await().atMost(Duration.ofSeconds(10)).untilAsserted(() -> {
            progress.sample();
            assertThat(progress.snapshot()).containsEntry("in_flight", 3L);
        });
        progress.doStop();
    }
}
