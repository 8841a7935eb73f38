package io.llmbatch.worker;

import java.time.Duration;
import java.util.List;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.llm.LlmSimulator;
import io.llmbatch.support.AppProcess;
import io.llmbatch.support.RabbitMQRequired;
import io.llmbatch.support.WorkerQueues;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * A graceful stop (SIGTERM) of a worker in the middle of LLM calls: the calls in flight finish and their results are
 * published before the channels close; the tasks it held without a call go back to the queue untouched. No LLM call is
 * made twice (Spring's default stop, 5 s, would have sent the calls in flight to another worker to be done again).
 */
@ExtendWith(RabbitMQRequired.class)
class WorkerStopIT {

    static final String PREFIX = "test_stop";

    @Test
    void a_graceful_stop_lets_the_calls_in_flight_finish_and_makes_no_call_twice() throws Exception {
        WorkerQueues.purgeNow(PREFIX);
        try (WorkerQueues q = new WorkerQueues(PREFIX); LlmSimulator sim = LlmSimulator.start(18671, 8_000, 2)) {
            String[] props = { "llmbatch.roles=worker", "llmbatch.queue.tasks=" + q.tasks, "llmbatch.queue.results=" + q.results,
                               "llmbatch.queue.tasks-dlq=" + q.dlq, "llmbatch.llm.endpoints=" + sim.url() + ";slots=2",
                               "llmbatch.llm.response-timeout=20000", "camel.main.routesReloadEnabled=false" };
            AppProcess first = AppProcess.start("worker-stop-1", props);
            q.awaitConsumers();
            q.publish(WorkerQueues.companies("停机公司", 8));
            await().atMost(Duration.ofSeconds(30)).until(() -> sim.posts() == 2); // two calls of 8 s in flight
            long stopAt = System.nanoTime();
            first.close(); // SIGTERM, and wait for the process to end
            double stopSeconds = (System.nanoTime() - stopAt) / 1e9;

            List<JsonNode> results = q.awaitResults(2, Duration.ofSeconds(5));
            assertThat(results).as("the two calls in flight finished and were published").hasSize(2);
            assertThat(stopSeconds).as("the stop waited for them").isGreaterThan(3);
            assertThat(q.broker.count(q.tasks)).as("the other six went back to the queue").isEqualTo(6);

            sim.latencyMs(10);
            try (AppProcess second = AppProcess.start("worker-stop-2", props)) {
                List<JsonNode> all = q.awaitResults(8, Duration.ofSeconds(60));
                assertThat(all).extracting(r -> r.get("company").asText()).doesNotHaveDuplicates().hasSize(8);
            }
            assertThat(sim.posts()).as("no LLM call made twice").isEqualTo(8);
            assertThat(q.broker.count(q.dlq)).isZero();
        }
    }
}
