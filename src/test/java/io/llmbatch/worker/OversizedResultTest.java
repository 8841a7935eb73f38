package io.llmbatch.worker;

import java.time.Duration;
import java.util.List;

import com.fasterxml.jackson.databind.JsonNode;
import com.rabbitmq.client.GetResponse;
import org.apache.camel.test.main.junit5.CamelMainTest;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.llm.LlmSimulator;
import io.llmbatch.support.RabbitMQRequired;
import io.llmbatch.support.WorkerQueues;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A result the broker cannot take (here over llmbatch.ingest.max-message-bytes, as a 16 MiB answer would be on RabbitMQ
 * 4's default limit): retrying can never succeed, so the task is dead-lettered with the reason after one LLM call, not
 * requeued and generated again for ever; the other tasks go on.
 */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=worker",
        "llmbatch.queue.tasks=t11w_big_tasks",
        "llmbatch.queue.results=t11w_big_results",
        "llmbatch.queue.tasks-dlq=t11w_big_tasks.dlq",
        "llmbatch.llm.endpoints=http://127.0.0.1:21220;slots=2",
        "llmbatch.ingest.max-message-bytes=20000",
        "camel.main.routesReloadEnabled=false" })
class OversizedResultTest {

    static {
        WorkerQueues.purgeNow("t11w_big");
    }

    WorkerQueues q;
    LlmSimulator sim;

    @BeforeEach
    void start() throws Exception {
        q = new WorkerQueues("t11w_big").purge();
        sim = LlmSimulator.start(21220, 5, 2);
    }

    @AfterEach
    void stop() throws Exception {
        sim.close();
        q.close();
    }

    @Test
    void a_result_over_the_brokers_limit_is_dead_lettered_after_one_call() throws Exception {
        String huge = "长".repeat(10_000); // 30,000 bytes of UTF-8 in the result
        sim.answerWhen(p -> p.contains("话痨公司"), 200, "{\"response\": \"" + huge + "\", \"history\": [], \"status\": 200}");
        q.publish("话痨公司");
        q.publish(WorkerQueues.companies("正常公司", 5));

        List<GetResponse> dead = q.awaitDead(1, Duration.ofSeconds(30));
        List<JsonNode> results = q.awaitResults(5, Duration.ofSeconds(30));
        assertThat(results).extracting(r -> r.get("company").asText()).doesNotContain("话痨公司");
        assertThat(dead).singleElement().satisfies(d -> {
            assertThat(d.getProps().getHeaders().get("x-llmbatch-reason").toString()).contains("over llmbatch.ingest.max-message-bytes");
            assertThat(new String(d.getBody(), java.nio.charset.StandardCharsets.UTF_8)).contains("话痨公司");
        });
        Thread.sleep(1_000);
        assertThat(sim.posts()).as("one call for the big answer, one per good task: never generated again").isEqualTo(6);
        assertThat(q.broker.count(q.tasks)).isZero();
    }
}
