package io.llmbatch.worker;

import java.time.Duration;
import java.util.List;

import com.fasterxml.jackson.databind.JsonNode;
import org.apache.camel.BeanInject;
import org.apache.camel.health.HealthCheck;
import org.apache.camel.test.main.junit5.CamelMainTest;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.llm.LlmBackends;
import io.llmbatch.llm.LlmSimulator;
import io.llmbatch.support.Broker;
import io.llmbatch.support.RabbitMQRequired;
import io.llmbatch.support.WorkerQueues;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * When no backend is usable for longer than llmbatch.llm.hold, whatever the length of the outage or mistake: the
 * tasks go back to the queue once, the worker stops consuming, nothing is dead-lettered, and it resumes by itself. On
 * quorum queues, where every return counts toward the delivery limit, each task is delivered at most twice.
 */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=worker",
        "llmbatch.queue.type=quorum",
        "llmbatch.queue.tasks=test_pause_tasks",
        "llmbatch.queue.results=test_pause_results",
        "llmbatch.queue.tasks-dlq=test_pause_tasks.dlq",
        "llmbatch.llm.endpoints=http://127.0.0.1:18661;api=openai;slots=2",
        "llmbatch.llm.model=test-model",
        "llmbatch.llm.connect-timeout=500",
        "llmbatch.llm.response-timeout=2000",
        "llmbatch.llm.cooldown=500",
        "llmbatch.llm.probe-interval=200",
        "llmbatch.llm.hold=1500",
        "camel.main.routesReloadEnabled=false" })
class WorkerPausesTest {

    static {
        try (Broker b = new Broker()) { // quorum queues of their own, declared by the worker
            b.reset("test_pause_tasks", "test_pause_results", "test_pause_tasks.dlq", "test_pause_results.dlq");
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    @BeanInject
    LlmBackends backends;
    @BeanInject("llmHealth")
    HealthCheck health;

    WorkerQueues q;
    LlmSimulator sim;

    @BeforeEach
    void start() throws Exception {
        q = new WorkerQueues("test_pause");
        sim = LlmSimulator.start(18661, 10, 2);
        q.awaitConsumers();
        q.broker.channel().queuePurge(q.tasks);
        if (q.broker.count(q.results) >= 0) {
            q.broker.channel().queuePurge(q.results);
        }
    }

    @AfterEach
    void stop() throws Exception {
        sim.close();
        q.close();
    }

    @Test
    void every_backend_answering_404_leaves_the_dead_letter_queue_empty_and_the_tasks_in_the_queue() throws Exception {
        sim.models("another-model"); // the configured model is not there: 404 to every task
        q.publish(WorkerQueues.companies("错配公司", 8));

        await().atMost(Duration.ofSeconds(20)).until(() -> q.broker.count(q.tasks) == 8 && q.broker.consumers(q.tasks) == 0);
        assertThat(q.broker.count(q.dlq)).isZero();
        assertThat(q.broker.count(q.results)).isZero();
        assertThat(backends.all().get(0).misconfigured()).contains("HTTP 404", "test-model");
        assertThat(health.call().getState()).isEqualTo(HealthCheck.State.DOWN);
        Thread.sleep(3_000);
        assertThat(q.broker.count(q.tasks)).as("paused: no bouncing between the queue and the worker").isEqualTo(8);

        sim.models("test-model"); // fixed on the server: the probe sees it, the worker resumes
        List<JsonNode> results = q.awaitResults(8, Duration.ofSeconds(30));
        assertThat(results).extracting(r -> r.get("company").asText()).doesNotHaveDuplicates();
        assertThat(results).allSatisfy(r -> assertThat(r.path("delivery_count").asInt(0)).as("returned once at most").isLessThanOrEqualTo(1));
        assertThat(q.broker.count(q.dlq)).isZero();
    }

    @Test
    void an_outage_longer_than_the_hold_returns_each_task_once_and_the_worker_resumes_by_itself() throws Exception {
        sim.close();
        q.publish(WorkerQueues.companies("长停公司", 8));
        await().atMost(Duration.ofSeconds(20)).until(() -> q.broker.count(q.tasks) == 8 && q.broker.consumers(q.tasks) == 0);
        Thread.sleep(4_000); // longer than the hold again: still nothing bounces
        assertThat(q.broker.count(q.tasks)).isEqualTo(8);
        assertThat(q.broker.count(q.dlq)).isZero();

        sim = LlmSimulator.start(18661, 10, 2);
        List<JsonNode> results = q.awaitResults(8, Duration.ofSeconds(30));
        assertThat(results).extracting(r -> r.get("company").asText()).doesNotHaveDuplicates().hasSize(8);
        assertThat(results).allSatisfy(r -> assertThat(r.path("delivery_count").asInt(0)).isLessThanOrEqualTo(1));
    }
}
