package io.llmbatch.ingest;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.rabbitmq.client.GetResponse;
import org.apache.camel.test.main.junit5.CamelMainTest;
import org.apache.camel.util.FileUtil;
import org.bson.BsonSerializationException;
import org.bson.Document;
import org.bson.RawBsonDocument;
import org.bson.codecs.DocumentCodec;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.Broker;
import io.llmbatch.support.Http;
import io.llmbatch.support.Http.Answer;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

/**
 * Ingest refuses what MongoDB could not store once the worker has embedded the task in its result (under
 * {@code task}, one level down), instead of letting it through the GPU to be dead-lettered by the collector.
 * "Storable" is what the collector does ({@code org.bson.Document.parse}, as in Collector.prepare, then BSON encoding
 * by the driver's codec) plus the server's nesting rule, which mongo-java-server does not enforce: MongoDB's
 * validateDepth (src/mongo/db/ops/insert.cpp) counts the document itself as level 1, refuses a non-empty object or
 * array below level 100 (BSONDepth::getMaxDepthForUserStorage() = 100), and does not count empty ones.
 */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=ingest",
        "llmbatch.queue.tasks=t11i_storable_tasks",
        "llmbatch.queue.results=t11i_storable_results",
        "llmbatch.ingest.allowed-queues=t11i_storable_tasks,t11i_storable_results",
        "llmbatch.ingest.inbox=target/t11i-inbox-storable",
        "llmbatch.ingest.poll-delay=200",
        "camel.server.port=20106",
        "camel.main.routesReloadEnabled=false" })
class MongoStorableTest {

    static final int PORT = 20106;
    static final String TASKS = "t11i_storable_tasks";
    static final Path INBOX = Path.of("target/t11i-inbox-storable");
    static final ObjectMapper JSON = new ObjectMapper();
    /** MongoDB's BSONDepth::getMaxDepthForUserStorage(). */
    static final int MONGODB_MAX_DEPTH = 100;

    Broker broker;

    @BeforeEach
    void clean() throws Exception {
        broker = new Broker().reset(TASKS);
        FileUtil.removeDir(INBOX.toFile());
        Files.createDirectories(INBOX);
    }

    @AfterEach
    void close() throws Exception {
        broker.close();
    }

    static String task(String extra) {
        return "{\"reg_dt\": \"2015-03-02\", \"addr\": \"北京\", \"ent_table_name\": \"存储测试\", \"extra\": " + extra + "}";
    }

    /** A task that is {@code depth} levels deep counting itself: its extra field holds depth - 1 nested objects. */
    static String taskOfDepth(int depth, String innermost) {
        return task("{\"a\": ".repeat(depth - 2) + innermost + "}".repeat(depth - 2));
    }

    /** The result the worker publishes for a task (Worker.publishResult puts it under "task"), as the collector parses it. */
    static Document storedResult(byte[] task) {
        return Document.parse("{\"company\": \"存储测试\", \"intro\": \"...\", \"spends\": 0.1, \"task\": "
                              + new String(task, StandardCharsets.UTF_8) + ", \"model_name\": \"m\", \"attempts\": 1}");
    }

    /** MongoDB's validateDepth: the document is level 1; empty objects and arrays add no level. */
    static int mongoDepth(Object value) {
        int below = 0;
        if (value instanceof Map<?, ?> map) {
            for (Object v : map.values()) {
                below = Math.max(below, nonEmpty(v) ? mongoDepth(v) : 0);
            }
        } else if (value instanceof List<?> list) {
            for (Object v : list) {
                below = Math.max(below, nonEmpty(v) ? mongoDepth(v) : 0);
            }
        }
        return 1 + below;
    }

    static boolean nonEmpty(Object v) {
        return v instanceof Map<?, ?> m && !m.isEmpty() || v instanceof List<?> l && !l.isEmpty();
    }

    /** What the collector would do: parse, encode to BSON with the driver's codec, and MongoDB's depth rule. */
    static boolean storable(byte[] task) {
        try {
            Document doc = storedResult(task);
            new RawBsonDocument(doc, new DocumentCodec());
            return mongoDepth(doc) <= MONGODB_MAX_DEPTH;
        } catch (RuntimeException e) {
            return false;
        }
    }

    Answer post(String... tasks) throws Exception {
        return Http.post(PORT, "/api/tasks", "[" + String.join(",", tasks) + "]");
    }

    @Test
    void the_deepest_task_ingest_accepts_is_storable_in_its_result_and_the_next_one_is_refused() throws Exception {
        String deepest = taskOfDepth(99, "{\"a\": 1}");
        String deepestWithEmpty = taskOfDepth(99, "{\"b\": [], \"c\": {}}"); // empty ones add no level
        String tooDeep = taskOfDepth(100, "{\"a\": 1}");
        String tooDeepArrays = task("[".repeat(99) + "1" + "]".repeat(99));
        assertThat(storable(deepest.getBytes(StandardCharsets.UTF_8))).isTrue();
        assertThat(storable(tooDeep.getBytes(StandardCharsets.UTF_8))).as("the first depth refused cannot be stored").isFalse();
        assertThat(storable(tooDeepArrays.getBytes(StandardCharsets.UTF_8))).isFalse();

        Answer accepted = post(deepest, deepestWithEmpty);
        assertThat(accepted.status()).as(accepted.json().toString()).isEqualTo(200);
        List<GetResponse> published = broker.drain(TASKS);
        assertThat(published).hasSize(2);
        for (GetResponse m : published) {
            assertThat(storable(m.getBody())).as("the stored result of what ingest accepted").isTrue();
        }

        for (String refused : List.of(tooDeep, tooDeepArrays)) {
            Answer answer = post(task("1"), refused);
            assertThat(answer.status()).as(answer.json().toString()).isEqualTo(400);
            assertThat(answer.json().get("details").get(0).asText()).startsWith("tasks[1]: ").contains("99", "MongoDB");
        }
        assertThat(broker.count(TASKS)).isZero();
    }

    @Test
    void integers_beyond_64_bits_anywhere_are_400_with_the_index_and_nothing_is_published() throws Exception {
        assertThat(storable(task("9223372036854775808").getBytes(StandardCharsets.UTF_8)))
                .as("Document.parse fails on it: the collector would dead-letter the result").isFalse();
        for (String big : List.of("9223372036854775808", "-9223372036854775809", "{\"n\": [1, 2, 99999999999999999999999]}")) {
            Answer answer = post(task("1"), task("2"), task(big));
            assertThat(answer.status()).as(big).isEqualTo(400);
            assertThat(answer.json().get("details").get(0).asText()).startsWith("tasks[2]: ").contains("64-bit");
        }
        Answer workq = Http.post(PORT, "/send_workq_message/", "{\"queue\": \"" + TASKS + "\", \"message_list\": ["
                                                               + task("1") + "," + task("{\"n\": 18446744073709551616}") + "]}");
        assertThat(workq.json().get("details").get(0).asText()).startsWith("message_list[1]: ").contains("extra.n");
        assertThat(broker.count(TASKS)).isLessThanOrEqualTo(0);

        Answer limits = post(task("9223372036854775807"), task("-9223372036854775808"));
        assertThat(limits.status()).as(limits.json().toString()).isEqualTo(200);
        for (GetResponse m : broker.drain(TASKS)) {
            assertThat(storable(m.getBody())).isTrue();
        }
    }

    @Test
    void numbers_a_bson_double_cannot_hold_are_refused_and_the_rest_are_stored_as_doubles() throws Exception {
        // Tasks.JSON keeps decimals exact (BigDecimal); the collector's Document.parse reads them as 64-bit doubles:
        // 1e400 would be stored as Infinity and 1e-400 as 0, silently. Digits beyond a double's precision round, as
        // in any JSON reader (Python, JavaScript); that is accepted.
        for (String number : List.of("1e400", "-1E+400", "1e-400", "{\"x\": [2.5e-999]}")) {
            Answer answer = post(task(number));
            assertThat(answer.status()).as(number).isEqualTo(400);
            assertThat(answer.json().get("details").get(0).asText()).as(number).startsWith("tasks[0]: ").contains("double");
        }
        assertThat(broker.count(TASKS)).isLessThanOrEqualTo(0);

        List<String> numbers = List.of("1.7976931348623157e308", "4.9e-324", "0.0", "-0.5", "0.1000000000000000000000001");
        Answer accepted = post(numbers.stream().map(MongoStorableTest::task).toArray(String[]::new));
        assertThat(accepted.status()).as(accepted.json().toString()).isEqualTo(200);
        List<GetResponse> published = broker.drain(TASKS);
        assertThat(published).hasSize(numbers.size());
        for (int i = 0; i < numbers.size(); i++) {
            Object stored = storedResult(published.get(i).getBody()).get("task", Document.class).get("extra");
            assertThat(((Number) stored).doubleValue()).as(numbers.get(i)).isEqualTo(Double.parseDouble(numbers.get(i)));
            assertThat(storable(published.get(i).getBody())).isTrue();
        }
    }

    @Test
    void a_field_name_with_a_nul_character_is_refused() throws Exception {
        String nul = "{\"reg_dt\": \"1\", \"addr\": \"a\", \"ent_table_name\": \"b\", \"x\": {\"a\\u0000b\": 1}}";
        // the driver cannot encode it (a BSON field name is a C string): the collector's write would fail
        assertThatThrownBy(() -> new RawBsonDocument(storedResult(nul.getBytes(StandardCharsets.UTF_8)), new DocumentCodec()))
                .isInstanceOf(BsonSerializationException.class);
        Answer answer = post(nul);
        assertThat(answer.status()).isEqualTo(400);
        assertThat(answer.json().get("details").get(0).asText()).contains("x", "NUL");
        assertThat(broker.count(TASKS)).isLessThanOrEqualTo(0);
    }

    @Test
    void inbox_records_mongodb_cannot_store_are_rejects_lines_and_the_file_goes_on() throws Exception {
        String jsonl = task("1") + "\n" + task("9223372036854775808") + "\n" + taskOfDepth(100, "{\"a\": 1}") + "\n" + task("1e400") + "\n"
                       + task("2") + "\n";
        Files.move(Files.writeString(INBOX.resolveSibling("t11i-storable.tmp"), jsonl), INBOX.resolve("storable.jsonl"));
        await().atMost(Duration.ofSeconds(20)).until(() -> Files.exists(INBOX.resolve(".done/storable.jsonl")));

        assertThat(broker.drain(TASKS)).hasSize(2);
        List<JsonNode> rejects = Files.readAllLines(INBOX.resolve(".done/storable.jsonl.rejects.jsonl")).stream().map(l -> {
            try {
                return JSON.readTree(l);
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        }).toList();
        assertThat(rejects).extracting(r -> r.get("line").asInt()).containsExactly(2, 3, 4);
        assertThat(rejects).extracting(r -> r.get("reason").asText()).allMatch(r -> r.contains("MongoDB"));
    }
}
