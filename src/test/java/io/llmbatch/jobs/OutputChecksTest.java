package io.llmbatch.jobs;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import com.mongodb.client.MongoCollection;
import com.mongodb.client.MongoDatabase;
import com.rabbitmq.client.GetResponse;
import org.apache.camel.test.main.junit5.CamelMainTest;
import org.bson.Document;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.llm.LlmSimulator;
import io.llmbatch.support.Broker;
import io.llmbatch.support.Http;
import io.llmbatch.support.Mongo;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * Output checks on the real routes, broker and worker, against two LLM servers (one OpenAI-compatible, one api.py)
 * whose answers vary in length per request, as sampling does: each task says in its prompt how its answers go
 * ({@code ok}: always right, {@code fix1}: too short once, {@code fix2}: too long twice, {@code never}: always too
 * short), so what must be stored, repaired and dead-lettered is known exactly.
 */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=ingest,worker,collector",
        "llmbatch.queue.tasks=t14_checks_tasks",
        "llmbatch.queue.results=t14_checks_results",
        "llmbatch.queue.tasks-dlq=t14_checks_tasks.dlq",
        "llmbatch.queue.results-dlq=t14_checks_results.dlq",
        "llmbatch.ingest.allowed-queues=t14_checks_tasks",
        "llmbatch.ingest.inbox=target/t14-checks/inbox",
        "llmbatch.jobs.dir=target/t14-checks/jobs",
        "llmbatch.llm.endpoints=http://127.0.0.1:21101;slots=3;api=openai,http://127.0.0.1:21104;slots=3;api=chatglm",
        "llmbatch.mongodb.uri=mongodb://127.0.0.1:21102",
        "llmbatch.collector.batch-timeout=300",
        "camel.server.port=21103",
        "camel.main.routesReloadEnabled=false" })
class OutputChecksTest {

    static final int PORT = 21103;
    static final Path BASE = Path.of("target/t14-checks");
    static final String DLQ = "t14_checks_tasks.dlq.output-check.t14_lengths";
    static final ObjectMapper JSON = new ObjectMapper();
    static final LlmSimulator OPENAI;
    static final LlmSimulator CHATGLM;

    static {
        Mongo.reset(21102);
        try {
            io.llmbatch.support.JobsDir.fresh(BASE);
            Files.writeString(BASE.resolve("jobs/t14_lengths.yaml"), """
                    description: answers of 100-200 characters
                    prompt: prompts/t14_lengths.txt
                    required_fields: [n, kind]
                    key_fields: [n]
                    output_field: text
                    collection: t14_lengths
                    checks:
                      min_chars: 100
                      max_chars: 200
                      max_repairs: 2
                      repair_prompt_file: prompts/t14_repair.txt
                    """);
            Files.writeString(BASE.resolve("prompts/t14_lengths.txt"), "T14 第{n}号 {kind}: 写一段 100-200 字的介绍");
            Files.writeString(BASE.resolve("prompts/t14_repair.txt"), "T14-REPAIR 不合格: {failure}。请重写。");
            OPENAI = LlmSimulator.start(21101, 0, 3).replies(OutputChecksTest::reply);
            CHATGLM = LlmSimulator.start(21104, 0, 3).replies(OutputChecksTest::reply);
        } catch (Exception e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    /** The first prompt of a request (OpenAI: the first user message; api.py: the prompt, or the history's first). */
    static String firstPrompt(JsonNode body) {
        if (body.has("messages")) {
            for (JsonNode m : body.get("messages")) {
                if ("user".equals(m.path("role").asText())) {
                    return m.path("content").asText();
                }
            }
            return "";
        }
        JsonNode history = body.path("history");
        return history.isArray() && !history.isEmpty() ? history.get(0).get(0).asText() : body.path("prompt").asText();
    }

    /** Repair requests before this one: the assistant messages, or api.py's history. */
    static int repairs(JsonNode body) {
        if (body.has("messages")) {
            int n = 0;
            for (JsonNode m : body.get("messages")) {
                n += "assistant".equals(m.path("role").asText()) ? 1 : 0;
            }
            return n;
        }
        return body.path("history").size();
    }

    /** {@code n} characters (code points): a third of them outside the BMP, two UTF-16 units each. */
    static String chars(int n) {
        StringBuilder s = new StringBuilder();
        for (int i = 0; i < n; i++) {
            s.append(i % 3 == 0 ? "😀" : "好");
        }
        return s.toString();
    }

    /** The prompt is fixed: tasks of kind never answer right at once. */
    static volatile boolean fixed;

    static LlmSimulator.Reply reply(JsonNode body) {
        String prompt = firstPrompt(body);
        if (!prompt.startsWith("T14 ")) {
            return null; // the seed's job: the simulator's own answer
        }
        int attempt = repairs(body);
        String kind = prompt.split(" ")[2].replace(":", "");
        int length = switch (kind) {
            case "ok" -> 180; // 240 UTF-16 units: counted in characters, it passes
            case "fix1" -> attempt == 0 ? 40 : 150;
            case "fix2" -> attempt == 0 ? 300 : attempt == 1 ? 250 : 120; // 400 UTF-16 units: under max_tokens (512)
            default -> fixed ? 160 : 30; // never
        };
        return new LlmSimulator.Reply(chars(length), null);
    }

    Broker broker;
    MongoClient client;
    MongoDatabase db;

    @BeforeEach
    void start() throws Exception {
        broker = new Broker().purge("t14_checks_tasks", "t14_checks_results", "t14_checks_tasks.dlq", "t14_checks_results.dlq", DLQ,
                "t14_checks_tasks.dlq.t14_lengths", "t14_checks_tasks.dlq.output-check.company_intro");
        fixed = false;
        client = MongoClients.create("mongodb://127.0.0.1:21102");
        db = client.getDatabase("llm");
        for (String c : List.of("company_intro", "t14_lengths", JobStore.LEDGER)) {
            db.getCollection(c).deleteMany(new Document());
        }
    }

    @AfterEach
    void stop() throws Exception {
        client.close();
        broker.close();
    }

    static double meter(String name, String... tags) {
        return io.micrometer.core.instrument.Metrics.globalRegistry.find(name).tags(tags).counters().stream()
                .mapToDouble(io.micrometer.core.instrument.Counter::count).sum();
    }

    @Test
    void answers_outside_the_length_are_asked_again_and_what_no_repair_fixes_is_dead_lettered_with_its_last_answer() throws Exception {
        StringBuilder tasks = new StringBuilder();
        int[] kinds = { 40, 30, 20, 10 }; // ok, fix1, fix2, never
        String[] names = { "ok", "fix1", "fix2", "never" };
        int n = 0;
        for (int k = 0; k < kinds.length; k++) {
            for (int i = 0; i < kinds[k]; i++) {
                tasks.append("{\"n\": \"").append(n++).append("\", \"kind\": \"").append(names[k]).append("\"}\n");
            }
        }
        double passedBefore = meter("llmbatch.output.checks", "job", "t14_lengths", "outcome", "passed");
        double repairedBefore = meter("llmbatch.output.checks", "job", "t14_lengths", "outcome", "repaired");
        double failedBefore = meter("llmbatch.output.checks", "job", "t14_lengths", "outcome", "failed");
        long postsBefore = OPENAI.posts() + CHATGLM.posts();
        Http.Answer posted = Http.post(PORT, "/api/jobs/t14_lengths/tasks", tasks.toString(), "Content-Type", "application/x-ndjson");
        assertThat(posted.json().get("published").asInt()).isEqualTo(100);

        MongoCollection<Document> stored = db.getCollection("t14_lengths");
        await().atMost(Duration.ofSeconds(90)).until(() -> stored.countDocuments() == 90 && broker.count(DLQ) == 10);

        // every stored answer passes its checks, counted in characters
        for (Document d : stored.find()) {
            String text = d.getString("text");
            assertThat(text.codePointCount(0, text.length())).as(d.toJson()).isBetween(100, 200);
            String kind = d.get("task", Document.class).getString("kind");
            int repairs = d.get("checks", Document.class).getInteger("repairs");
            assertThat(repairs).as(d.toJson()).isEqualTo(kind.equals("ok") ? 0 : kind.equals("fix1") ? 1 : 2);
            if (repairs > 0) {
                assertThat(d.get("checks", Document.class).getList("failed", String.class))
                        .isEqualTo(kind.equals("fix1") ? List.of("min_chars") : List.of("max_chars", "max_chars"));
            }
        }
        // every LLM call, repairs included: 40 + 30 x 2 + 20 x 3 + 10 x 3
        assertThat(OPENAI.posts() + CHATGLM.posts() - postsBefore).isEqualTo(190);

        // the repair requests say the failure, after the previous answer, in each protocol's own form
        List<JsonNode> repairsSent = new ArrayList<>();
        for (LlmSimulator sim : List.of(OPENAI, CHATGLM)) {
            sim.requests().stream().map(LlmSimulator.Request::body).filter(b -> b.toString().contains("T14-REPAIR")).forEach(repairsSent::add);
        }
        assertThat(repairsSent).hasSize(90); // 30 + 20 x 2 + 10 x 2
        boolean sawOpenai = false;
        boolean sawChatglm = false;
        for (JsonNode b : repairsSent) {
            if (b.has("messages")) {
                sawOpenai = true;
                JsonNode m = b.get("messages");
                assertThat(m.get(0).get("content").asText()).startsWith("T14 ");
                assertThat(m.get(m.size() - 2).get("role").asText()).isEqualTo("assistant");
                assertThat(m.get(m.size() - 1).get("role").asText()).isEqualTo("user");
                assertThat(m.get(m.size() - 1).get("content").asText()).startsWith("T14-REPAIR 不合格: it has ").endsWith("。请重写。");
            } else {
                sawChatglm = true;
                assertThat(b.get("prompt").asText()).startsWith("T14-REPAIR 不合格: it has ");
                assertThat(b.get("history").get(0).get(0).asText()).startsWith("T14 ");
                assertThat(b.get("history").get(0).get(1).asText()).isNotBlank(); // the failed answer
            }
        }
        assertThat(sawOpenai).as("repairs over the OpenAI protocol").isTrue();
        assertThat(sawChatglm).as("repairs over api.py").isTrue();
        JsonNode fix2Second = repairsSent.stream().filter(b -> b.has("messages") && repairs(b) == 2).findFirst().orElse(null);
        if (fix2Second != null) { // the second repair carries both earlier answers and the first repair prompt
            assertThat(fix2Second.get("messages").get(1).get("content").asText()).isEqualTo(chars(300));
            assertThat(fix2Second.get("messages").get(2).get("content").asText()).contains("300 characters, at most 200");
        }

        // the job's counts: passed, repaired, failed by a check; exact, from MongoDB and the broker
        JsonNode status = Http.get(PORT, "/api/jobs/t14_lengths").json();
        assertThat(status.get("submitted").asLong()).isEqualTo(100);
        assertThat(status.get("stored").asLong()).isEqualTo(90);
        assertThat(status.get("failed").asLong()).isEqualTo(10);
        assertThat(status.get("remaining").asLong()).isZero();
        assertThat(status.get("checks").get("passed").asLong()).isEqualTo(40);
        assertThat(status.get("checks").get("repaired").asLong()).isEqualTo(50);
        assertThat(status.get("checks").get("failed").asLong()).isEqualTo(10);
        assertThat(broker.count(DLQ)).as("counting leaves the dead letters where they are").isEqualTo(10);
        // ... and the meters of this worker
        assertThat(meter("llmbatch.output.checks", "job", "t14_lengths", "outcome", "passed") - passedBefore).isEqualTo(40);
        assertThat(meter("llmbatch.output.checks", "job", "t14_lengths", "outcome", "repaired") - repairedBefore).isEqualTo(50);
        assertThat(meter("llmbatch.output.checks", "job", "t14_lengths", "outcome", "failed") - failedBefore).isEqualTo(10);
        // the counts are MongoDB's, not this process's: a new store on a new connection reads the same
        try (MongoClient other = MongoClients.create("mongodb://127.0.0.1:21102")) {
            Map<String, Object> counts = new JobStore(other.getDatabase("llm"))
                    .counts(new Jobs(BASE.resolve("jobs"), "company_intro", "chatglm2_6b_int4").get("t14_lengths"));
            assertThat(counts).containsEntry("checks_passed", 40L).containsEntry("checks_repaired", 50L);
        }

        assertThat(status.get("checks").get("dead_letter_queue").asText()).isEqualTo(DLQ);

        // the dead letters: the check in the reason, the last answer kept (read, then put back)
        List<GetResponse> dead = new ArrayList<>();
        GetResponse r;
        while ((r = broker.channel().basicGet(DLQ, false)) != null) {
            dead.add(r);
        }
        broker.channel().basicNack(dead.get(dead.size() - 1).getEnvelope().getDeliveryTag(), true, true);
        assertThat(dead).hasSize(10);
        for (GetResponse d : dead) {
            Map<String, Object> h = d.getProps().getHeaders();
            assertThat(String.valueOf(h.get("x-llmbatch-reason")))
                    .isEqualTo("output-check: min_chars (it has 30 characters, at least 100 are required; after 2 repairs)");
            assertThat(String.valueOf(h.get("x-llmbatch-check"))).isEqualTo("min_chars");
            assertThat(String.valueOf(h.get("x-llmbatch-last-answer"))).isEqualTo(chars(30));
            assertThat(((Number) h.get("x-llmbatch-repairs")).intValue()).isEqualTo(2);
            assertThat(JSON.readTree(d.getBody()).get("kind").asText()).isEqualTo("never");
            assertThat(JSON.readTree(d.getBody()).path("_llmbatch").path("checks").isTextual()).as("kept for a re-drive").isTrue();
            assertThat(h).as("in the body, not again in headers").doesNotContainKeys(Jobs.CHECKS, Jobs.REQUEST).containsKey(Jobs.JOB);
        }

        // the prompt is fixed: the output-check failures are re-driven and pass
        fixed = true;
        Http.Answer redrive = Http.post(PORT, "/api/jobs/t14_lengths/redrive?reason=output-check", "");
        assertThat(redrive.json().get("moved").asInt()).as(redrive.json().toString()).isEqualTo(10);
        await().atMost(Duration.ofSeconds(30)).until(() -> stored.countDocuments() == 100 && broker.count(DLQ) == 0);
        JsonNode after = Http.get(PORT, "/api/jobs/t14_lengths").json();
        assertThat(after.get("stored").asLong()).isEqualTo(100);
        assertThat(after.get("failed").asLong()).isZero();
        assertThat(after.get("checks").get("passed").asLong()).isEqualTo(50);
        assertThat(after.get("checks").get("repaired").asLong()).isEqualTo(50);
        assertThat(after.get("checks").get("failed").asLong()).isZero();
    }

    @Test
    void seed_job_ships_with_the_length_its_prompt_asks_for_and_the_simulators_answers_pass_it() throws Exception {
        StringBuilder list = new StringBuilder();
        for (int i = 0; i < 20; i++) {
            list.append(i == 0 ? "" : ",").append("{\"reg_dt\": \"2015-03-02\", \"addr\": \"北京市海淀区").append(i)
                    .append("号\", \"ent_table_name\": \"北京测试科技有限公司").append(i).append("\"}");
        }
        String payload = "{\"rabbit\": \"rabbit01\", \"routing_key\": \"t14_checks_tasks\", \"durable\": true, "
                         + "\"queue\": \"t14_checks_tasks\", \"message_list\": [" + list + "]}";
        assertThat(Http.post(PORT, "/send_workq_message/", payload).json().get("published").asInt()).isEqualTo(20);
        MongoCollection<Document> companies = db.getCollection("company_intro");
        await().atMost(Duration.ofSeconds(30)).until(() -> companies.countDocuments() == 20);
        for (Document d : companies.find()) {
            String intro = d.getString("intro");
            assertThat(intro.codePointCount(0, intro.length())).isBetween(100, 200);
            assertThat(d.get("checks", Document.class).getInteger("repairs")).isZero();
        }
        JsonNode checks = Http.get(PORT, "/api/jobs/company_intro").json().get("checks");
        assertThat(checks.get("passed").asLong()).isEqualTo(20);
        assertThat(checks.get("repaired").asLong()).isZero();
        assertThat(checks.get("failed").asLong()).isZero();

        // a seed producer publishes one of them straight to the queue (no job headers, so not checked): its answer
        // replaces the checked one, and the checked count follows
        broker.publish("t14_checks_tasks", ("{\"reg_dt\": \"2015-03-02\", \"addr\": \"北京市海淀区0号\", "
                                           + "\"ent_table_name\": \"北京测试科技有限公司0\"}").getBytes(java.nio.charset.StandardCharsets.UTF_8), "t14-direct-0");
        await().atMost(Duration.ofSeconds(30)).until(() -> companies.countDocuments(new Document("checks", null)) == 1);
        assertThat(companies.countDocuments()).isEqualTo(20);
        assertThat(Http.get(PORT, "/api/jobs/company_intro").json().get("checks").get("passed").asLong()).isEqualTo(19);
    }
}
