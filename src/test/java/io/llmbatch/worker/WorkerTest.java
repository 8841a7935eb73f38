package io.llmbatch.worker;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
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

/** The worker route on the real broker, with LLM simulators on both protocols over HTTP. */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=worker",
        "llmbatch.queue.tasks=test_worker_tasks",
        "llmbatch.queue.results=test_worker_results",
        "llmbatch.queue.tasks-dlq=test_worker_tasks.dlq",
        "llmbatch.llm.endpoints=http://127.0.0.1:18601;slots=2,http://127.0.0.1:18602;slots=2;api=openai",
        "llmbatch.llm.model=test-model",
        "llmbatch.llm.connect-timeout=500",
        "llmbatch.llm.response-timeout=2000",
        "llmbatch.llm.cooldown=1000",
        "llmbatch.llm.backoff=100",
        "llmbatch.llm.probe-interval=300",
        "llmbatch.worker.gpu=Test GPU 24GB",
        "camel.main.routesReloadEnabled=false" })
class WorkerTest {

    static final String TASKS = "test_worker_tasks";
    static final String RESULTS = "test_worker_results";
    static final String DLQ = "test_worker_tasks.dlq";
    static final ObjectMapper JSON = new ObjectMapper();

    final List<LlmSimulator> sims = new ArrayList<>();
    Broker broker;

    @BeforeEach
    void start() throws Exception {
        broker = new Broker().purge(TASKS, RESULTS, DLQ); // purged, not deleted: the worker's consumers stay on them
        startSimulators();
    }

    void startSimulators() throws Exception {
        sims.add(LlmSimulator.start(18601, 20, 2));
        sims.add(LlmSimulator.start(18602, 20, 2));
    }

    void stopSimulators() {
        sims.forEach(LlmSimulator::close);
        sims.clear();
    }

    @AfterEach
    void stop() throws Exception {
        stopSimulators();
        broker.close();
    }

    static String task(int i) {
        return "{\"reg_dt\": \"2015-03-02\", \"addr\": \"北京市海淀区" + i + "号\", \"ent_table_name\": \"北京测试科技有限公司" + i
               + "\", \"batch\": \"b1\"}";
    }

    void publishTasks(int n) throws Exception {
        for (int i = 0; i < n; i++) {
            broker.publish(TASKS, task(i).getBytes(StandardCharsets.UTF_8), "task-" + i);
        }
    }

    List<JsonNode> awaitResults(int n) throws Exception {
        List<GetResponse> got = new ArrayList<>();
        await().atMost(Duration.ofSeconds(30)).until(() -> {
            got.addAll(broker.drain(RESULTS));
            return got.size() >= n;
        });
        List<JsonNode> results = new ArrayList<>();
        for (GetResponse r : got) {
            assertThat(r.getProps().getDeliveryMode()).as("persistent").isEqualTo(2);
            assertThat(r.getProps().getMessageId()).startsWith("task-");
            results.add(JSON.readTree(r.getBody()));
        }
        return results;
    }

    /** What a meter on /observe/metrics counts now (the context adds its registry to Micrometer's global one). */
    static double meter(String name, String... tags) {
        return io.micrometer.core.instrument.Metrics.globalRegistry.find(name).tags(tags).counters().stream()
                .mapToDouble(io.micrometer.core.instrument.Counter::count).sum();
    }

    @Test
    void tasks_become_results_with_every_field_over_both_protocols() throws Exception {
        double tokens = meter("llmbatch.llm.tokens", "backend", "http://127.0.0.1:18602");
        publishTasks(16);
        List<JsonNode> results = awaitResults(16);

        assertThat(results).hasSize(16);
        for (JsonNode r : results) {
            String company = r.get("company").asText();
            assertThat(company).startsWith("北京测试科技有限公司");
            assertThat(r.get("task").get("ent_table_name").asText()).isEqualTo(company);
            assertThat(r.get("task").get("batch").asText()).as("extra task fields carried along").isEqualTo("b1");
            String prompt = "成立日期:2015-03-02\n注册地址:" + r.get("task").get("addr").asText() + "\n" + company + "简介,字数在100-200字之间";
            assertThat(r.get("intro").asText()).isEqualTo(LlmSimulator.textFor(prompt));
            assertThat(r.get("spends").asDouble()).isPositive();
            assertThat(r.get("model_name").asText()).isEqualTo("test-model");
            assertThat(r.get("worker_host").asText()).isNotBlank();
            assertThat(r.get("gpu").asText()).isIn("Test GPU 24GB", r.get("gpu").asText()); // nvidia-smi wins where present
            assertThat(r.get("attempts").asInt()).isEqualTo(1);
            assertThat(r.get("model_name").asText()).isEqualTo("test-model");
            assertThat(r.get("started_at").asText()).isLessThanOrEqualTo(r.get("finished_at").asText());
            if (r.get("backend").asText().endsWith(":18602")) {
                assertThat(r.get("prompt_tokens").asInt()).isPositive();
                assertThat(r.get("completion_tokens").asInt()).isPositive();
            } else {
                assertThat(r.get("backend").asText()).endsWith(":18601");
                assertThat(r.has("prompt_tokens")).isFalse();
            }
        }
        assertThat(results).extracting(r -> r.get("backend").asText()).contains("http://127.0.0.1:18601", "http://127.0.0.1:18602");
        int reported = results.stream().filter(r -> r.has("prompt_tokens"))
                .mapToInt(r -> r.get("prompt_tokens").asInt() + r.get("completion_tokens").asInt()).sum();
        assertThat(meter("llmbatch.llm.tokens", "backend", "http://127.0.0.1:18602") - tokens)
                .as("llmbatch_llm_tokens_total counts what the OpenAI backend reported").isEqualTo(reported);
        assertThat(broker.count(TASKS)).isZero();
        assertThat(broker.count(DLQ)).isZero();
    }

    @Test
    void poison_tasks_go_to_the_dead_letter_queue_with_the_reason_and_never_loop() throws Exception {
        double deadLettered = meter("llmbatch.dead.lettered", "queue", DLQ);
        broker.publish(TASKS, "{not json".getBytes(StandardCharsets.UTF_8), "bad-json");
        broker.publish(TASKS, "[1, 2]".getBytes(StandardCharsets.UTF_8), "bad-type");
        broker.publish(TASKS, "{\"reg_dt\": \"2015\", \"ent_table_name\": \"缺地址公司\"}".getBytes(StandardCharsets.UTF_8), "no-addr");
        publishTasks(1);

        List<GetResponse> dead = new ArrayList<>();
        await().atMost(Duration.ofSeconds(20)).until(() -> {
            dead.addAll(broker.drain(DLQ));
            return dead.size() >= 3;
        });
        assertThat(awaitResults(1)).hasSize(1);
        assertThat(dead).extracting(d -> d.getProps().getMessageId()).containsExactlyInAnyOrder("bad-json", "bad-type", "no-addr");
        for (GetResponse d : dead) {
            var h = d.getProps().getHeaders();
            assertThat(h).containsKeys("x-llmbatch-reason", "x-llmbatch-exception", "x-llmbatch-attempts", "x-llmbatch-worker-host");
            String reason = h.get("x-llmbatch-reason").toString();
            switch (d.getProps().getMessageId()) {
                case "bad-json" -> {
                    assertThat(reason).startsWith("task is not valid JSON");
                    assertThat(new String(d.getBody(), StandardCharsets.UTF_8)).as("body kept as received").isEqualTo("{not json");
                }
                case "bad-type" -> assertThat(reason).isEqualTo("task must be a JSON object, got an array");
                default -> assertThat(reason).contains("lacks field 'addr'");
            }
        }
        Thread.sleep(500);
        assertThat(broker.count(DLQ)).as("no loop: each poison task dead-lettered once").isZero();
        assertThat(broker.count(TASKS)).isZero();
        assertThat(meter("llmbatch.dead.lettered", "queue", DLQ) - deadLettered).as("llmbatch_dead_lettered_total").isEqualTo(3);
    }
}
