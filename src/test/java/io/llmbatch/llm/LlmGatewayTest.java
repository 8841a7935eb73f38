package io.llmbatch.llm;

import java.time.Duration;
import java.util.List;

import com.fasterxml.jackson.databind.JsonNode;
import io.github.resilience4j.circuitbreaker.CircuitBreaker;
import org.apache.camel.BeanInject;
import org.apache.camel.test.main.junit5.CamelMainTest;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.Http;
import io.llmbatch.support.RabbitMQRequired;
import io.llmbatch.support.WorkerQueues;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * The LLM gateway as routes (llm-gateway, llm-backend-1/2, llm-request-*) inside the real worker, against two servers
 * speaking the real protocols over HTTP: llm-backend-1 ChatGLM's api.py with 1 slot, llm-backend-2 OpenAI-compatible
 * with 3. Each failure is produced by a server that really answers that way.
 */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=worker",
        "llmbatch.queue.tasks=test_gw_tasks",
        "llmbatch.queue.results=test_gw_results",
        "llmbatch.queue.tasks-dlq=test_gw_tasks.dlq",
        "llmbatch.llm.endpoints=http://127.0.0.1:18631;slots=1,http://127.0.0.1:18632;slots=3;api=openai",
        "llmbatch.llm.model=test-model",
        "llmbatch.llm.system-prompt=你是一名严谨的企业信息编辑。",
        "llmbatch.llm.connect-timeout=500",
        "llmbatch.llm.response-timeout=1500",
        "llmbatch.llm.cooldown=1000",
        "llmbatch.llm.backoff=100",
        "llmbatch.llm.probe-interval=200",
        "llmbatch.llm.hold=20000",
        "camel.main.routesReloadEnabled=false" })
class LlmGatewayTest {

    static final String SYSTEM = "你是一名严谨的企业信息编辑。";

    static {
        WorkerQueues.purgeNow("test_gw"); // before the worker starts: nothing left from an earlier run
    }

    @BeanInject
    LlmBackends backends;

    WorkerQueues q;
    LlmSimulator chatglm;
    LlmSimulator openai;

    @BeforeEach
    void start() throws Exception {
        q = new WorkerQueues("test_gw").purge();
        chatglm = LlmSimulator.start(18631, 20, 1);
        openai = LlmSimulator.start(18632, 20, 3);
        q.awaitConsumers();
    }

    @AfterEach
    void stop() throws Exception {
        chatglm.close();
        openai.close();
        q.close();
    }

    Backend backend(int n) {
        return backends.get("llm-backend-" + n);
    }

    @Test
    void both_protocols_get_their_request_from_the_request_routes_and_nothing_of_the_task_message() throws Exception {
        q.publish(WorkerQueues.companies("协议公司", 12));
        List<JsonNode> results = q.awaitResults(12, Duration.ofSeconds(30));

        assertThat(results).extracting(r -> r.get("backend").asText()).contains(chatglm.url(), openai.url());
        for (JsonNode r : results) {
            String prompt = WorkerQueues.prompt(r.get("company").asText());
            if (r.get("backend").asText().equals(openai.url())) {
                assertThat(r.get("intro").asText()).isEqualTo(LlmSimulator.textFor(prompt));
                assertThat(r.get("finish_reason").asText()).isEqualTo("stop");
                assertThat(r.get("served_model").asText()).as("the model the server says it ran").isEqualTo("test-model");
                assertThat(r.get("prompt_tokens").asInt()).isPositive();
            } else {
                assertThat(r.get("intro").asText()).isEqualTo(LlmSimulator.textFor(SYSTEM + "\n\n" + prompt));
                assertThat(r.has("finish_reason")).as("api.py does not say").isFalse();
            }
            assertThat(r.get("model_name").asText()).isEqualTo("test-model");
            assertThat(r.get("attempts").asInt()).isEqualTo(1);
        }
        JsonNode o = openai.requests().get(0).body();
        assertThat(o.get("model").asText()).isEqualTo("test-model");
        assertThat(o.get("messages").get(0).get("role").asText()).isEqualTo("system");
        assertThat(o.get("messages").get(0).get("content").asText()).isEqualTo(SYSTEM);
        assertThat(o.get("messages").get(1).get("role").asText()).isEqualTo("user");
        assertThat(o.get("max_tokens").asInt()).isEqualTo(512);
        assertThat(o.get("temperature").asDouble()).isEqualTo(0.8);
        JsonNode c = chatglm.requests().get(0).body();
        assertThat(c.get("prompt").asText()).startsWith(SYSTEM + "\n\n成立日期:2015-03-02");
        assertThat(c.get("history").isArray()).isTrue();
        assertThat(c.get("max_length").asInt()).isEqualTo(2048);
        for (LlmSimulator.Request r : openai.requests()) {
            assertThat(r.headers().keySet()).as("no header of the task's AMQP message reaches the LLM server")
                    .noneMatch(h -> h.contains("camel") || h.contains("rabbit") || h.startsWith("x-"))
                    .doesNotContain("authorization"); // no key configured
            assertThat(r.headers()).containsEntry("content-type", "application/json");
        }
    }

    @Test
    void least_busy_gives_each_backend_work_by_its_slots() throws Exception {
        chatglm.latencyMs(60);
        openai.latencyMs(60);
        q.publish(WorkerQueues.companies("负载公司", 60));
        List<JsonNode> results = q.awaitResults(60, Duration.ofSeconds(60));
        assertThat(results).hasSize(60);
        // 1 slot against 3: the 3-slot server takes about three quarters, and never more than its slots at once
        assertThat(openai.served()).isGreaterThanOrEqualTo(2 * chatglm.served());
        assertThat(chatglm.served()).isPositive();
    }

    @Test
    void a_dead_backend_is_tried_once_then_skipped_until_a_one_token_probe_brings_it_back() throws Exception {
        chatglm.close();
        q.publish(WorkerQueues.companies("故障转移公司", 10));
        List<JsonNode> results = q.awaitResults(10, Duration.ofSeconds(30));
        assertThat(results).allSatisfy(r -> assertThat(r.get("backend").asText()).isEqualTo(openai.url()));
        assertThat(backend(1).requests()).as("tried once: its breaker opened on the refused connection").isEqualTo(1);
        assertThat(backend(1).breakerState()).isNotEqualTo(CircuitBreaker.State.CLOSED);

        chatglm = LlmSimulator.start(18631, 0, 1);
        await().atMost(Duration.ofSeconds(10)).until(() -> backend(1).breakerState() == CircuitBreaker.State.CLOSED);
        JsonNode probe = chatglm.requests().get(0).body();
        assertThat(probe.get("prompt").asText()).as("a probe is a tiny completion, not a GET").isEqualTo("ping");
        assertThat(probe.get("max_length").asInt()).isEqualTo(32);
        q.publish(WorkerQueues.companies("回来公司", 8));
        q.awaitResults(18, Duration.ofSeconds(30));
        assertThat(chatglm.served()).as("tasks reach it again").isGreaterThan(1);
    }

    @Test
    void an_answer_that_stalls_after_its_headers_is_cut_by_the_deadline_and_frees_its_slot() throws Exception {
        openai.stallAfterHeadersRate(1.0); // headers, then nothing, forever
        q.publish(WorkerQueues.companies("停顿公司", 6));
        List<JsonNode> results = q.awaitResults(6, Duration.ofSeconds(60));
        assertThat(results).allSatisfy(r -> assertThat(r.get("backend").asText()).isEqualTo(chatglm.url()));
        // every stall (tasks' and probes') is cut: the server keeps answering headers, the slots come back
        await().atMost(Duration.ofSeconds(15)).until(() -> openai.hung() >= 4);
        openai.stallAfterHeadersRate(0);
        await().atMost(Duration.ofSeconds(15)).until(() -> backend(2).breakerState() == CircuitBreaker.State.CLOSED);
        await().atMost(Duration.ofSeconds(5)).until(() -> backend(2).inFlight() == 0);
        q.publish(WorkerQueues.companies("恢复公司", 12));
        List<JsonNode> after = q.awaitResults(18, Duration.ofSeconds(30)).subList(6, 18);
        assertThat(after).extracting(r -> r.get("backend").asText()).as("more than 3 stalls and the backend is not full for good")
                .contains(openai.url());
        assertThat(q.broker.count(q.dlq)).isZero();
    }

    @Test
    void server_errors_go_to_the_other_backend_and_open_the_failing_ones_breaker() throws Exception {
        chatglm.failRate(1.0);
        q.publish(WorkerQueues.companies("错误公司", 24));
        List<JsonNode> results = q.awaitResults(24, Duration.ofSeconds(30));
        assertThat(results).allSatisfy(r -> assertThat(r.get("backend").asText()).isEqualTo(openai.url()));
        assertThat(chatglm.failed()).isPositive();
        assertThat(backend(1).breakerState()).as("three tasks failed on it in a row").isNotEqualTo(CircuitBreaker.State.CLOSED);
        assertThat(results).anySatisfy(r -> assertThat(r.get("attempts").asInt()).as("failed over").isEqualTo(2));
        assertThat(q.broker.count(q.dlq)).isZero();
    }

    @Test
    void a_server_whose_health_endpoint_answers_while_completions_fail_stays_out() throws Exception {
        chatglm.failRate(1.0);
        q.publish(WorkerQueues.companies("假活公司", 24));
        q.awaitResults(24, Duration.ofSeconds(30));
        await().atMost(Duration.ofSeconds(10)).until(() -> backend(1).breakerState() != CircuitBreaker.State.CLOSED);
        assertThat(Http.get(18631, "/").status()).as("GET / answers as a health check would").isEqualTo(200);
        long failedBefore = chatglm.failed();
        Thread.sleep(3_000); // cool-downs of 1 s: probes POST and fail, GET would have brought it back
        assertThat(chatglm.failed()).as("it was probed with completions").isGreaterThan(failedBefore);
        assertThat(backend(1).breakerState()).isNotEqualTo(CircuitBreaker.State.CLOSED);
        assertThat(backend(1).state(System.currentTimeMillis())).startsWith("down");
    }

    @Test
    void a_429_with_retry_after_keeps_the_backend_out_that_long_and_the_task_is_not_dead_lettered() throws Exception {
        chatglm.close(); // one server left
        openai.tooManyRequests(1, "2");
        q.publish("限流公司");
        List<JsonNode> results = q.awaitResults(1, Duration.ofSeconds(30));
        assertThat(results.get(0).get("backend").asText()).isEqualTo(openai.url());
        List<LlmSimulator.Request> got = openai.requests();
        long refusedAt = got.get(0).at();
        long retriedAt = got.get(1).at();
        assertThat(retriedAt - refusedAt).as("Retry-After: 2 honoured").isGreaterThanOrEqualTo(1_900);
        assertThat(q.broker.count(q.dlq)).isZero();
    }

    @Test
    void requests_per_minute_hold_a_backend_back() {
        RateWindow w = new RateWindow(2, 0);
        w.reserve(1_000, 10);
        w.reserve(2_000, 10);
        assertThat(w.waitMillis(3_000, 10)).as("third request in the minute waits for the first to age out").isEqualTo(58_000);
        assertThat(w.waitMillis(61_000, 10)).isZero();
    }

    @Test
    void tokens_per_minute_count_what_the_server_reported() {
        RateWindow w = new RateWindow(0, 1_000);
        RateWindow.Call first = w.reserve(0, 600); // estimated
        assertThat(w.waitMillis(10, 600)).as("600 + 600 > 1000").isEqualTo(60_000 - 10);
        w.settle(first, 300L); // the server used less
        assertThat(w.waitMillis(10, 600)).isZero();
        w.reserve(20, 600);
        assertThat(w.waitMillis(30, 200)).isEqualTo(60_000 - 30);
    }
}
