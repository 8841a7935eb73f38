package io.llmbatch.llm;

import java.time.Duration;
import java.util.List;

import com.fasterxml.jackson.databind.JsonNode;
import org.apache.camel.BeanInject;
import org.apache.camel.test.main.junit5.CamelMainTest;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.RabbitMQRequired;
import io.llmbatch.support.WorkerQueues;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * Backends configured wrong, as servers really answer it: vLLM's --api-key (401 without it), a model name the server
 * does not know (404, as vLLM and Ollama answer). The backend is taken out with the fix in its state, its tasks go to
 * the others, nothing is dead-lettered, and it comes back by itself once it answers.
 */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=worker",
        "llmbatch.queue.tasks=test_misconf_tasks",
        "llmbatch.queue.results=test_misconf_results",
        "llmbatch.queue.tasks-dlq=test_misconf_tasks.dlq",
        // the first takes its key from the variable the pom sets (test-secret), the second from LLM_API_KEY's setting
        "llmbatch.llm.endpoints=http://127.0.0.1:18641;api=openai;api-key-env=LLMBATCH_TEST_LLM_KEY;slots=2,"
        + "http://127.0.0.1:18642;api=openai;slots=2;header.X-Title=llm-batch-test,"
        + "http://127.0.0.1:18643;api=openai;slots=2;model=qwen2.5:7b-instruct",
        "llmbatch.llm.api-key=shared-key",
        "llmbatch.llm.model=qwen2.5-7b-instruct",
        "llmbatch.llm.connect-timeout=500",
        "llmbatch.llm.response-timeout=2000",
        "llmbatch.llm.cooldown=500",
        "llmbatch.llm.probe-interval=200",
        "camel.main.routesReloadEnabled=false" })
class LlmMisconfigurationTest {

    static {
        WorkerQueues.purgeNow("test_misconf"); // before the worker starts: nothing left from an earlier run
    }

    @BeanInject
    LlmBackends backends;

    WorkerQueues q;
    LlmSimulator keyed;
    LlmSimulator shared;
    LlmSimulator ollama;

    @BeforeEach
    void start() throws Exception {
        q = new WorkerQueues("test_misconf").purge();
        keyed = LlmSimulator.start(18641, 10, 2).apiKey("test-secret");
        shared = LlmSimulator.start(18642, 10, 2).apiKey("shared-key");
        // Ollama's name for the model; the endpoint says so with ;model=
        ollama = LlmSimulator.start(18643, 10, 2).models("qwen2.5:7b-instruct");
        q.awaitConsumers();
    }

    @AfterEach
    void stop() throws Exception {
        keyed.close();
        shared.close();
        ollama.close();
        q.close();
    }

    @Test
    void each_endpoint_gets_its_key_its_headers_and_its_name_for_the_model() throws Exception {
        q.publish(WorkerQueues.companies("配置公司", 18));
        List<JsonNode> results = q.awaitResults(18, Duration.ofSeconds(30));
        assertThat(results).extracting(r -> r.get("backend").asText()).contains(keyed.url(), shared.url(), ollama.url());
        assertThat(results).allSatisfy(r -> assertThat(r.get("model_name").asText()).as("the pid's model is the configured one")
                .isEqualTo("qwen2.5-7b-instruct"));
        assertThat(keyed.requests()).allSatisfy(r -> assertThat(r.headers()).containsEntry("authorization", "Bearer test-secret"));
        assertThat(shared.requests()).allSatisfy(r -> {
            assertThat(r.headers()).containsEntry("authorization", "Bearer shared-key").containsEntry("x-title", "llm-batch-test");
            assertThat(r.body().get("model").asText()).isEqualTo("qwen2.5-7b-instruct");
        });
        assertThat(ollama.requests()).allSatisfy(r -> assertThat(r.body().get("model").asText()).isEqualTo("qwen2.5:7b-instruct"));
        assertThat(results).filteredOn(r -> r.get("backend").asText().equals(ollama.url()))
                .allSatisfy(r -> assertThat(r.get("served_model").asText()).isEqualTo("qwen2.5:7b-instruct"));
    }

    @Test
    void a_wrong_key_takes_the_backend_out_without_dead_lettering_and_it_returns_when_fixed() throws Exception {
        keyed.apiKey("rotated-key"); // the server's key changed: 401 to everything we send
        q.publish(WorkerQueues.companies("换钥公司", 18));
        List<JsonNode> results = q.awaitResults(18, Duration.ofSeconds(30));
        assertThat(results).noneSatisfy(r -> assertThat(r.get("backend").asText()).isEqualTo(keyed.url()));
        assertThat(q.broker.count(q.dlq)).as("a configuration mistake never dead-letters").isZero();
        Backend b = backends.get("llm-backend-1");
        assertThat(b.misconfigured()).contains("HTTP 401", "API key", "api-key-env");
        assertThat(b.usable(System.currentTimeMillis())).isFalse();

        keyed.apiKey("test-secret");
        await().atMost(Duration.ofSeconds(10)).until(() -> b.misconfigured() == null);
        q.publish(WorkerQueues.companies("修好公司", 18));
        List<JsonNode> after = q.awaitResults(36, Duration.ofSeconds(30)).subList(18, 36);
        assertThat(after).extracting(r -> r.get("backend").asText()).contains(keyed.url());
    }

    @Test
    void a_model_the_server_does_not_know_takes_it_out_naming_what_to_fix() throws Exception {
        ollama.models("llama3.1:8b"); // someone pulled another model
        q.publish(WorkerQueues.companies("模型公司", 18));
        List<JsonNode> results = q.awaitResults(18, Duration.ofSeconds(30));
        assertThat(results).noneSatisfy(r -> assertThat(r.get("backend").asText()).isEqualTo(ollama.url()));
        assertThat(q.broker.count(q.dlq)).isZero();
        assertThat(backends.get("llm-backend-3").misconfigured()).contains("HTTP 404", "qwen2.5:7b-instruct", "/v1/models");
    }
}
