package io.llmbatch.ingest;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.camel.test.main.junit5.CamelMainTest;
import org.apache.camel.util.FileUtil;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.Broker;
import io.llmbatch.support.Http;
import io.llmbatch.support.Http.Answer;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * What the broker cannot take is refused per record, before anything is published: a {@code task_id} over 255 bytes
 * (AMQP's {@code message_id} is a shortstr; the RabbitMQ Java client throws IllegalArgumentException before sending)
 * and a message over {@code llmbatch.ingest.max-message-bytes} (lowered here so the test stays small; the broker's
 * own refusal is {@link BrokerSizeLimitTest}). HTTP answers 400 with the index, never 503; an inbox file writes a
 * rejects line and goes on.
 */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=ingest",
        "llmbatch.queue.tasks=t11i_refusal_tasks",
        "llmbatch.queue.results=t11i_refusal_results",
        "llmbatch.ingest.allowed-queues=t11i_refusal_tasks,t11i_refusal_results",
        "llmbatch.ingest.max-message-bytes=4096",
        "llmbatch.ingest.inbox=target/t11i-inbox-refusal",
        "llmbatch.ingest.poll-delay=200",
        "camel.server.port=20103",
        "camel.main.routesReloadEnabled=false" })
class BrokerRefusalTest {

    static final int PORT = 20103;
    static final String TASKS = "t11i_refusal_tasks";
    static final Path INBOX = Path.of("target/t11i-inbox-refusal");
    static final ObjectMapper JSON = new ObjectMapper();
    /** 86 three-byte characters: 258 bytes in UTF-8, though only 86 characters. */
    static final String LONG_ID = "任".repeat(86);
    /** 85 of them: 255 bytes, the most a message_id holds. */
    static final String LONGEST_ID = "任".repeat(85);

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

    static String task(int n) {
        return "{\"reg_dt\": \"2015-03-02\", \"addr\": \"北京\", \"ent_table_name\": \"拒绝测试" + n + "\"}";
    }

    static String taskWithId(int n, String id) {
        return "{\"reg_dt\": \"2015-03-02\", \"addr\": \"北京\", \"ent_table_name\": \"拒绝测试" + n + "\", \"task_id\": \"" + id + "\"}";
    }

    /** A task whose message is about 5,000 bytes, over the 4,096 configured here. */
    static String bigTask(int n) {
        return "{\"reg_dt\": \"2015-03-02\", \"addr\": \"" + "长".repeat(1700) + "\", \"ent_table_name\": \"拒绝测试" + n + "\"}";
    }

    static String list(int size, int bad, String badTask) {
        StringBuilder s = new StringBuilder("[");
        for (int i = 0; i < size; i++) {
            s.append(i == 0 ? "" : ",").append(i == bad ? badTask : task(i));
        }
        return s.append(']').toString();
    }

    @Test
    void task_id_over_255_bytes_is_400_with_its_index_and_nothing_is_published() throws Exception {
        Answer workq = Http.post(PORT, "/send_workq_message/", "{\"queue\": \"" + TASKS + "\", \"message_list\": "
                                                               + list(5, 3, taskWithId(3, LONG_ID)) + "}");
        Answer array = Http.post(PORT, "/api/tasks", list(10, 7, taskWithId(7, LONG_ID)));
        StringBuilder ndjson = new StringBuilder();
        for (int line = 1; line <= 14; line++) {
            ndjson.append(line == 12 ? taskWithId(line, LONG_ID) : task(line)).append('\n');
        }
        Answer lines = Http.post(PORT, "/api/tasks", ndjson.toString(), "Content-Type", "application/x-ndjson");

        for (var c : List.of(new Object[] {workq, "message_list[3]"}, new Object[] {array, "tasks[7]"}, new Object[] {lines, "line 12"})) {
            Answer answer = (Answer) c[0];
            assertThat(answer.status()).as(answer.json().toString()).isEqualTo(400);
            assertThat(answer.json().get("error").asText()).contains("nothing was published");
            assertThat(answer.json().get("details")).hasSize(1);
            assertThat(answer.json().get("details").get(0).asText()).startsWith(c[1] + ": ").contains("task_id", "258 bytes", "255");
        }
        assertThat(broker.count(TASKS)).isLessThanOrEqualTo(0);

        // the boundary: 255 bytes is a valid message_id
        Answer longest = Http.post(PORT, "/api/tasks", list(2, 1, taskWithId(1, LONGEST_ID)));
        assertThat(longest.status()).as(longest.json().toString()).isEqualTo(200);
        assertThat(broker.drain(TASKS)).extracting(m -> m.getProps().getMessageId()).contains(LONGEST_ID);
    }

    @Test
    void message_over_max_message_bytes_is_400_with_its_index_and_nothing_is_published() throws Exception {
        Answer workq = Http.post(PORT, "/send_workq_message/", "{\"queue\": \"" + TASKS + "\", \"message_list\": "
                                                               + list(3, 1, bigTask(1)) + "}");
        Answer array = Http.post(PORT, "/api/tasks", list(3, 2, bigTask(2)));

        for (var c : List.of(new Object[] {workq, "message_list[1]"}, new Object[] {array, "tasks[2]"})) {
            Answer answer = (Answer) c[0];
            assertThat(answer.status()).as(answer.json().toString()).isEqualTo(400);
            assertThat(answer.json().get("details").get(0).asText()).startsWith(c[1] + ": ")
                    .contains("llmbatch.ingest.max-message-bytes", "4096");
        }
        assertThat(broker.count(TASKS)).isLessThanOrEqualTo(0);
    }

    @Test
    void inbox_record_the_broker_cannot_take_is_a_rejects_line_and_the_file_goes_on() throws Exception {
        String jsonl = task(1) + "\n" + taskWithId(2, LONG_ID) + "\n" + bigTask(3) + "\n" + task(4) + "\n";
        Path tmp = Files.writeString(INBOX.resolveSibling("t11i-refusal.tmp"), jsonl);
        Files.move(tmp, INBOX.resolve("refused.jsonl"));

        await().atMost(Duration.ofSeconds(20)).until(() -> Files.exists(INBOX.resolve(".done/refused.jsonl")));
        assertThat(broker.drain(TASKS)).extracting(m -> JSON.readTree(m.getBody()).get("ent_table_name").asText())
                .containsExactly("拒绝测试1", "拒绝测试4");
        List<JsonNode> rejects = Files.readAllLines(INBOX.resolve(".done/refused.jsonl.rejects.jsonl"), StandardCharsets.UTF_8)
                .stream().map(l -> {
                    try {
                        return JSON.readTree(l);
                    } catch (Exception e) {
                        throw new IllegalStateException(e);
                    }
                }).toList();
        assertThat(rejects).extracting(r -> r.get("line").asInt()).containsExactly(2, 3);
        assertThat(rejects.get(0).get("reason").asText()).contains("task_id", "255");
        assertThat(rejects.get(1).get("reason").asText()).contains("llmbatch.ingest.max-message-bytes");
    }
}
