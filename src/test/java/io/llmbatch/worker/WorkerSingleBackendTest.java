package io.llmbatch.worker;

import java.time.Duration;
import java.util.List;

import com.fasterxml.jackson.databind.JsonNode;
import com.rabbitmq.client.GetResponse;
import io.github.resilience4j.circuitbreaker.CircuitBreaker;
import org.apache.camel.BeanInject;
import org.apache.camel.test.main.junit5.CamelMainTest;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.llm.Backend;
import io.llmbatch.llm.LlmBackends;
import io.llmbatch.llm.LlmSimulator;
import io.llmbatch.support.RabbitMQRequired;
import io.llmbatch.support.WorkerQueues;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A worker with one LLM server, where a single bad prompt or a short outage must not cost the job: a prompt that makes
 * the server fail is dead-lettered without taking the server out, a prompt the server blames is dead-lettered after one
 * call, and an outage shorter than llmbatch.llm.hold holds the tasks in the worker (no redelivery at all; the tasks it has not
 * taken wait in the queue).
 */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=worker",
        "llmbatch.queue.tasks=test_single_tasks",
        "llmbatch.queue.results=test_single_results",
        "llmbatch.queue.tasks-dlq=test_single_tasks.dlq",
        "llmbatch.llm.endpoints=http://127.0.0.1:18651;slots=2",
        "llmbatch.llm.connect-timeout=500",
        "llmbatch.llm.response-timeout=2000",
        "llmbatch.llm.cooldown=500",
        "llmbatch.llm.backoff=50",
        "llmbatch.llm.probe-interval=200",
        "llmbatch.llm.hold=60000",
        "camel.main.routesReloadEnabled=false" })
class WorkerSingleBackendTest {

    static {
        WorkerQueues.purgeNow("test_single"); // before the worker starts: nothing left from an earlier run
    }

    @BeanInject
    LlmBackends backends;

    WorkerQueues q;
    LlmSimulator sim;

    @BeforeEach
    void start() throws Exception {
        q = new WorkerQueues("test_single").purge();
        sim = LlmSimulator.start(18651, 20, 2);
        q.awaitConsumers();
    }

    @AfterEach
    void stop() throws Exception {
        sim.close();
        q.close();
    }

    @Test
    void a_prompt_that_crashes_the_server_is_dead_lettered_without_taking_the_server_out() throws Exception {
        sim.answerWhen(p -> p.contains("毒药公司"), 500, "CUDA error: an illegal memory access was encountered");
        Backend b = backends.all().get(0);
        java.util.List<CircuitBreaker.State> seen = new java.util.concurrent.CopyOnWriteArrayList<>();
        b.breaker().getEventPublisher().onStateTransition(e -> seen.add(e.getStateTransition().getToState()));
        q.publish("毒药公司");
        q.publish(WorkerQueues.companies("正常公司", 20));

        List<GetResponse> dead = q.awaitDead(1, Duration.ofSeconds(30));
        List<JsonNode> results = q.awaitResults(20, Duration.ofSeconds(30));
        assertThat(results).hasSize(20);
        assertThat(dead).singleElement().satisfies(d -> {
            assertThat(d.getProps().getHeaders().get("x-llmbatch-reason").toString()).contains("HTTP 500", "CUDA error");
            assertThat(d.getProps().getHeaders().get("x-llmbatch-attempts")).isEqualTo(5);
        });
        assertThat(sim.posts()).as("5 calls for the poison, one per good task").isEqualTo(25);
        assertThat(seen).as("its breaker never opened: the failures were one task's").isEmpty();
        assertThat(b.breaker().getMetrics().getNumberOfFailedCalls()).isLessThanOrEqualTo(1);
    }

    @Test
    void a_prompt_the_server_blames_is_dead_lettered_after_one_call() throws Exception {
        sim.answerWhen(p -> p.contains("超长公司"), 400, "{\"error\":{\"message\":\"This model's maximum context length is 2048 "
                + "tokens. However, you requested 5120 tokens. Please reduce the length of the messages.\",\"type\":\"BadRequestError\"}}");
        q.publish("超长公司", "正常公司");
        List<GetResponse> dead = q.awaitDead(1, Duration.ofSeconds(30));
        assertThat(q.awaitResults(1, Duration.ofSeconds(30))).hasSize(1);
        assertThat(dead.get(0).getProps().getHeaders().get("x-llmbatch-reason").toString()).contains("maximum context length");
        assertThat(dead.get(0).getProps().getHeaders().get("x-llmbatch-attempts")).isEqualTo(1);
        assertThat(backends.all().get(0).usable(System.currentTimeMillis())).isTrue();
    }

    @Test
    void an_outage_shorter_than_the_hold_costs_no_redelivery() throws Exception {
        sim.close();
        q.publish(WorkerQueues.companies("停电公司", 6));
        Thread.sleep(3_000);
        // 4 consumers (twice the 2 slots) with prefetch 1: the worker holds 4 in its LLM calls, 2 wait in the queue,
        // never delivered; none goes back to it
        assertThat(q.broker.count(q.tasks)).as("the worker holds one per consumer, nothing comes back to the queue").isEqualTo(2);
        assertThat(q.broker.count(q.results)).isZero();
        assertThat(q.broker.count(q.dlq)).isZero();

        sim = LlmSimulator.start(18651, 20, 2);
        List<JsonNode> results = q.awaitResults(6, Duration.ofSeconds(30));
        assertThat(results).extracting(r -> r.get("company").asText()).doesNotHaveDuplicates().hasSize(6);
        assertThat(results).noneSatisfy(r -> assertThat(r.has("redelivered")).as("never delivered twice").isTrue());
        assertThat(q.broker.count(q.dlq)).isZero();
    }
}
