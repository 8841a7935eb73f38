package io.llmbatch.worker;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import com.rabbitmq.client.GetResponse;
import org.apache.camel.test.main.junit5.CamelMainTest;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.llm.LlmSimulator;
import io.llmbatch.support.Broker;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/** An LLM server that refuses the request (404 here) dead-letters the task at once, with the answer as reason. */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=worker",
        "llmbatch.queue.tasks=test_refused_tasks",
        "llmbatch.queue.results=test_refused_results",
        "llmbatch.queue.tasks-dlq=test_refused_tasks.dlq",
        "llmbatch.llm.endpoints=http://127.0.0.1:18611/wrong-path",
        "camel.main.routesReloadEnabled=false" })
class WorkerRefusedTest {

    Broker broker;
    LlmSimulator sim;

    @BeforeEach
    void start() throws Exception {
        broker = new Broker().reset("test_refused_tasks", "test_refused_results", "test_refused_tasks.dlq");
        sim = LlmSimulator.start(18611, 0, 1);
    }

    @AfterEach
    void stop() throws Exception {
        sim.close();
        broker.close();
    }

    @Test
    void refused_llm_request_is_dead_lettered_after_one_attempt() throws Exception {
        broker.publish("test_refused_tasks", "{\"reg_dt\": \"2015\", \"addr\": \"a\", \"ent_table_name\": \"甲公司\"}"
                .getBytes(StandardCharsets.UTF_8), "refused-1");

        List<GetResponse> dead = new ArrayList<>();
        await().atMost(Duration.ofSeconds(20)).until(() -> {
            dead.addAll(broker.drain("test_refused_tasks.dlq"));
            return !dead.isEmpty();
        });
        var headers = dead.get(0).getProps().getHeaders();
        assertThat(headers.get("x-llmbatch-reason").toString()).contains("refused the request: HTTP 404");
        assertThat(headers.get("x-llmbatch-exception").toString()).endsWith("LlmRejectedException");
        assertThat(headers.get("x-llmbatch-attempts")).isEqualTo(1);
        assertThat(broker.count("test_refused_results")).isLessThanOrEqualTo(0);
        assertThat(broker.count("test_refused_tasks")).isZero();
    }
}
