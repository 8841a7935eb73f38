package io.llmbatch.jobs;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
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
 * A job that must answer JSON valid against a schema (sent to the OpenAI-compatible server as response_format), and a
 * job whose answers are cut at max_tokens (finish_reason length, refused by default), on the real routes and broker.
 */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=ingest,worker,collector",
        "llmbatch.queue.tasks=t14_json_tasks",
        "llmbatch.queue.results=t14_json_results",
        "llmbatch.queue.tasks-dlq=t14_json_tasks.dlq",
        "llmbatch.queue.results-dlq=t14_json_results.dlq",
        "llmbatch.ingest.allowed-queues=t14_json_tasks",
        "llmbatch.ingest.inbox=target/t14-json/inbox",
        "llmbatch.jobs.dir=target/t14-json/jobs",
        "llmbatch.llm.endpoints=http://127.0.0.1:21111;slots=4;api=openai",
        "llmbatch.mongodb.uri=mongodb://127.0.0.1:21112",
        "llmbatch.collector.batch-timeout=300",
        "camel.server.port=21113",
        "camel.main.routesReloadEnabled=false" })
class OutputChecksJsonTest {

    static final int PORT = 21113;
    static final Path BASE = Path.of("target/t14-json");
    static final ObjectMapper JSON = new ObjectMapper();
    static final String SCHEMA = """
            {"type": "object", "required": ["name", "score"],
             "properties": {"name": {"type": "string", "minLength": 1}, "score": {"type": "integer", "minimum": 0, "maximum": 10}}}""";
    static final LlmSimulator SIM;

    static {
        Mongo.reset(21112);
        try {
            if (Files.exists(BASE)) {
                try (var files = Files.walk(BASE)) {
                    files.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
                }
            }
            Files.createDirectories(BASE.resolve("jobs"));
            Files.createDirectories(BASE.resolve("prompts"));
            Files.createDirectories(BASE.resolve("schemas"));
            Files.createDirectories(BASE.resolve("inbox"));
            Files.copy(Path.of("jobs/company_intro.yaml"), BASE.resolve("jobs/company_intro.yaml"));
            Files.copy(Path.of("prompts/company_intro.txt"), BASE.resolve("prompts/company_intro.txt"));
            Files.writeString(BASE.resolve("schemas/t14_score.json"), SCHEMA);
            Files.writeString(BASE.resolve("jobs/t14_json.yaml"), """
                    prompt: prompts/t14_json.txt
                    required_fields: [n, kind]
                    key_fields: [n]
                    collection: t14_json
                    checks:
                      json: true
                      json_schema: schemas/t14_score.json
                      max_repairs: 1
                      repair_prompt: "T14-JSON-REPAIR {failure}"
                    """);
            Files.writeString(BASE.resolve("prompts/t14_json.txt"), "T14J {n} {kind}");
            Files.writeString(BASE.resolve("jobs/t14_cut.yaml"), """
                    prompt: prompts/t14_cut.txt
                    required_fields: [n]
                    key_fields: [n]
                    collection: t14_cut
                    params: {max_tokens: 20}
                    checks:
                      max_repairs: 1
                    """);
            Files.writeString(BASE.resolve("prompts/t14_cut.txt"), "T14C {n}");
            SIM = LlmSimulator.start(21111, 0, 4).replies(OutputChecksJsonTest::reply);
        } catch (Exception e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    static LlmSimulator.Reply reply(JsonNode body) {
        JsonNode m = body.get("messages");
        String prompt = m.get(0).get("content").asText();
        int attempt = (m.size() - 1) / 2;
        if (prompt.startsWith("T14J ")) {
            String kind = prompt.split(" ")[2];
            String text = switch (kind) {
                case "ok" -> "{\"name\": \"a\", \"score\": 7}";
                case "notjson" -> attempt == 0 ? "Sure! Here is the JSON: {\"name\": \"a\"" : "{\"name\": \"b\", \"score\": 3}";
                case "missing" -> attempt == 0 ? "{\"name\": \"c\"}" : "{\"name\": \"c\", \"score\": 10}";
                default -> "{\"name\": \"d\", \"score\": \"high\"}"; // never valid
            };
            return new LlmSimulator.Reply(text, null);
        }
        return null; // t14_cut: the simulator's own answer, cut at max_tokens (finish_reason length)
    }

    Broker broker;
    MongoClient client;
    MongoDatabase db;

    @BeforeEach
    void start() throws Exception {
        broker = new Broker().purge("t14_json_tasks", "t14_json_results", "t14_json_tasks.dlq", "t14_json_results.dlq",
                "t14_json_tasks.dlq.output-check.t14_json", "t14_json_tasks.dlq.output-check.t14_cut", "t14_json_tasks.dlq.t14_json");
        client = MongoClients.create("mongodb://127.0.0.1:21112");
        db = client.getDatabase("llm");
        for (String c : List.of("t14_json", "t14_cut", JobStore.LEDGER)) {
            db.getCollection(c).deleteMany(new Document());
        }
        SIM.answerWhen(p -> false, 200, null);
    }

    @AfterEach
    void stop() throws Exception {
        client.close();
        broker.close();
    }

    @Test
    void json_answers_are_checked_against_the_schema_which_is_also_sent_as_response_format() throws Exception {
        StringBuilder tasks = new StringBuilder();
        String[] kinds = { "ok", "notjson", "missing", "never" };
        for (int i = 0; i < 40; i++) {
            tasks.append("{\"n\": \"").append(i).append("\", \"kind\": \"").append(kinds[i % 4]).append("\"}\n");
        }
        assertThat(Http.post(PORT, "/api/jobs/t14_json/tasks", tasks.toString(), "Content-Type", "application/x-ndjson")
                .json().get("published").asInt()).isEqualTo(40);
        String dlq = "t14_json_tasks.dlq.output-check.t14_json";
        MongoCollection<Document> stored = db.getCollection("t14_json");
        await().atMost(Duration.ofSeconds(60)).until(() -> stored.countDocuments() == 30 && broker.count(dlq) == 10);

        JsonNode schema = JSON.readTree(SCHEMA);
        for (Document d : stored.find()) {
            JsonNode answer = JSON.readTree(d.getString("output"));
            assertThat(answer.get("name").isTextual()).isTrue();
            assertThat(answer.get("score").isInt()).as(d.toJson()).isTrue();
            String kind = d.get("task", Document.class).getString("kind");
            assertThat(d.get("checks", Document.class).getInteger("repairs")).isEqualTo(kind.equals("ok") ? 0 : 1);
            if (!kind.equals("ok")) {
                assertThat(d.get("checks", Document.class).getList("failed", String.class))
                        .containsExactly(kind.equals("notjson") ? "json" : "json_schema");
            }
        }
        // every request asked for JSON of the schema; a repair says what was wrong
        List<JsonNode> sent = SIM.requests().stream().map(LlmSimulator.Request::body)
                .filter(b -> b.path("messages").get(0).path("content").asText().startsWith("T14J ")).toList();
        assertThat(sent).hasSize(10 + 10 * 2 + 10 * 2 + 10 * 2);
        for (JsonNode b : sent) {
            assertThat(b.get("response_format").get("type").asText()).isEqualTo("json_schema");
            assertThat(b.get("response_format").get("json_schema").get("name").asText()).isEqualTo("t14_json");
            assertThat(b.get("response_format").get("json_schema").get("schema")).isEqualTo(schema);
        }
        assertThat(sent.stream().filter(b -> b.toString().contains("T14-JSON-REPAIR it is not valid JSON"))).hasSize(10);
        assertThat(sent.stream().filter(b -> b.toString().contains("T14-JSON-REPAIR the JSON does not match the schema"))).hasSize(20);

        JsonNode checks = Http.get(PORT, "/api/jobs/t14_json").json().get("checks");
        assertThat(checks.get("passed").asLong()).isEqualTo(10);
        assertThat(checks.get("repaired").asLong()).isEqualTo(20);
        assertThat(checks.get("failed").asLong()).isEqualTo(10);
        for (GetResponse d : broker.drain(dlq)) {
            Map<String, Object> h = d.getProps().getHeaders();
            assertThat(String.valueOf(h.get("x-llmbatch-reason"))).startsWith("output-check: json_schema (the JSON does not match the schema: ")
                    .contains("score").endsWith("; after 1 repair)");
            assertThat(String.valueOf(h.get("x-llmbatch-last-answer"))).isEqualTo("{\"name\": \"d\", \"score\": \"high\"}");
        }
    }

    @Test
    void a_repair_request_the_server_refuses_dead_letters_the_task_once_for_that_reason() throws Exception {
        SIM.answerWhen(p -> p.startsWith("T14-JSON-REPAIR"), 400, "{\"error\":{\"message\":\"This model's maximum context "
                                                                  + "length is 2048 tokens\",\"type\":\"invalid_request_error\"}}");
        StringBuilder tasks = new StringBuilder();
        for (int i = 0; i < 6; i++) {
            tasks.append("{\"n\": \"r").append(i).append("\", \"kind\": \"").append(i < 3 ? "ok" : "missing").append("\"}\n");
        }
        assertThat(Http.post(PORT, "/api/jobs/t14_json/tasks", tasks.toString(), "Content-Type", "application/x-ndjson")
                .json().get("published").asInt()).isEqualTo(6);
        String dlq = "t14_json_tasks.dlq.t14_json";
        await().atMost(Duration.ofSeconds(30)).until(() -> broker.count(dlq) == 3 && db.getCollection("t14_json").countDocuments() == 3);
        Thread.sleep(500);
        assertThat(db.getCollection("t14_json").countDocuments()).as("a failed repair stores nothing").isEqualTo(3);
        assertThat(broker.count("t14_json_tasks.dlq.output-check.t14_json")).isZero();
        List<GetResponse> dead = broker.drain(dlq);
        assertThat(dead).hasSize(3);
        for (GetResponse d : dead) {
            assertThat(String.valueOf(d.getProps().getHeaders().get("x-llmbatch-reason"))).contains("maximum context length");
            assertThat(JSON.readTree(d.getBody()).get("kind").asText()).isEqualTo("missing");
        }
    }

    @Test
    void a_repair_call_that_fails_is_retried_like_any_call_and_the_task_is_repaired() throws Exception {
        java.util.concurrent.atomic.AtomicInteger failures = new java.util.concurrent.atomic.AtomicInteger();
        SIM.answerWhen(p -> p.startsWith("T14-JSON-REPAIR") && failures.getAndIncrement() < 2, 500, "Internal Server Error");
        StringBuilder tasks = new StringBuilder();
        for (int i = 0; i < 6; i++) {
            tasks.append("{\"n\": \"f").append(i).append("\", \"kind\": \"missing\"}\n");
        }
        long before = SIM.posts();
        assertThat(Http.post(PORT, "/api/jobs/t14_json/tasks", tasks.toString(), "Content-Type", "application/x-ndjson")
                .json().get("published").asInt()).isEqualTo(6);
        MongoCollection<Document> stored = db.getCollection("t14_json");
        await().atMost(Duration.ofSeconds(30)).until(() -> stored.countDocuments() == 6);
        assertThat(SIM.posts() - before).as("6 answers, 6 repairs, 2 of them sent again").isEqualTo(14);
        for (Document d : stored.find()) {
            assertThat(d.get("checks", Document.class).getInteger("repairs")).isOne();
        }
        assertThat(broker.count("t14_json_tasks.dlq.t14_json") + broker.count("t14_json_tasks.dlq.output-check.t14_json")).isZero();
    }

    @Test
    void answers_cut_at_max_tokens_are_refused_by_default() throws Exception {
        StringBuilder tasks = new StringBuilder();
        for (int i = 0; i < 5; i++) {
            tasks.append("{\"n\": \"").append(i).append("\"}\n");
        }
        long before = SIM.posts();
        assertThat(Http.post(PORT, "/api/jobs/t14_cut/tasks", tasks.toString(), "Content-Type", "application/x-ndjson")
                .json().get("published").asInt()).isEqualTo(5);
        String dlq = "t14_json_tasks.dlq.output-check.t14_cut";
        await().atMost(Duration.ofSeconds(30)).until(() -> broker.count(dlq) == 5);
        assertThat(db.getCollection("t14_cut").countDocuments()).isZero();
        assertThat(SIM.posts() - before).as("each task asked once more").isEqualTo(10);
        JsonNode status = Http.get(PORT, "/api/jobs/t14_cut").json();
        assertThat(status.get("checks").get("failed").asLong()).isEqualTo(5);
        assertThat(status.get("remaining").asLong()).isZero();
        for (GetResponse d : broker.drain(dlq)) {
            assertThat(String.valueOf(d.getProps().getHeaders().get("x-llmbatch-reason")))
                    .isEqualTo("output-check: finish_reason (the answer was cut off (finish_reason length): it must be shorter; after 1 repair)");
            assertThat(String.valueOf(d.getProps().getHeaders().get("x-llmbatch-last-answer")).length()).isEqualTo(20);
        }
    }
}
