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
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * llmbatch.ingest.max-record-chars on each kind of inbox file, with a small limit so the records stay small here
 * (IngestMemoryIT feeds 220 MB records to a 128 MB heap): an over-long .jsonl line is a rejects line and the lines
 * after it are read; an over-long CSV record or .json element fails the file, saying where.
 */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=ingest",
        "llmbatch.queue.tasks=t11i_record_tasks",
        "llmbatch.ingest.inbox=target/t11i-inbox-record",
        "llmbatch.ingest.max-record-chars=2000",
        "llmbatch.ingest.poll-delay=200",
        "camel.server.port=20107",
        "camel.main.routesReloadEnabled=false" })
class RecordLimitTest {

    static final String TASKS = "t11i_record_tasks";
    static final Path INBOX = Path.of("target/t11i-inbox-record");
    static final ObjectMapper JSON = new ObjectMapper();

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

    static void drop(String name, String content) throws Exception {
        Files.move(Files.writeString(INBOX.resolveSibling("t11i-record-" + name + ".tmp"), content, StandardCharsets.UTF_8),
                INBOX.resolve(name));
    }

    static String task(String name, String addr) {
        return "{\"reg_dt\": \"2015-03-02\", \"addr\": \"" + addr + "\", \"ent_table_name\": \"" + name + "\"}";
    }

    @Test
    void jsonl_line_over_the_limit_is_rejected_and_the_next_lines_are_read() throws Exception {
        // the longest line that passes (2,000 characters, CRLF line ends) and the shortest that does not
        String longest = task("最长", "a".repeat(2000 - task("最长", "").length()));
        String tooLong = task("太长", "a".repeat(2001 - task("太长", "").length()));
        drop("limits.jsonl", task("一", "北京") + "\r\n" + longest + "\r\n" + tooLong + "\r\n" + task("四", "上海") + "\r\n");
        await().atMost(Duration.ofSeconds(20)).until(() -> Files.exists(INBOX.resolve(".done/limits.jsonl")));

        assertThat(broker.drain(TASKS)).extracting(m -> JSON.readTree(m.getBody()).get("ent_table_name").asText())
                .containsExactly("一", "最长", "四");
        List<String> rejects = Files.readAllLines(INBOX.resolve(".done/limits.jsonl.rejects.jsonl"));
        assertThat(rejects).hasSize(1);
        JsonNode reject = JSON.readTree(rejects.get(0));
        assertThat(reject.get("line").asInt()).isEqualTo(3);
        assertThat(reject.get("reason").asText()).isEqualTo("line of 2001 characters is longer than llmbatch.ingest.max-record-chars (2000)");
        assertThat(reject.get("record").asText()).startsWith("{\"reg_dt\"").hasSizeLessThan(300);
    }

    @Test
    void csv_record_over_the_limit_fails_the_file_saying_where() throws Exception {
        drop("long.csv", "reg_dt,addr,ent_table_name\n2015-03-02,北京,甲\n2015-03-02," + "长".repeat(60_000) + ",乙\n2015-03-02,上海,丙\n");
        await().atMost(Duration.ofSeconds(20)).until(() -> Files.exists(INBOX.resolve(".failed/long.csv.error.txt")));

        assertThat(Files.readString(INBOX.resolve(".failed/long.csv.error.txt")))
                .contains("record starting at line 3", "llmbatch.ingest.max-record-chars (2000", "tasks confirmed before the failure: 1");
        assertThat(broker.drain(TASKS)).hasSize(1);
    }

    @Test
    void json_array_element_over_the_limit_fails_the_file_saying_where() throws Exception {
        drop("long.json", "[\n" + task("甲", "北京") + ",\n" + task("乙", "长".repeat(60_000)) + "\n]\n");
        await().atMost(Duration.ofSeconds(20)).until(() -> Files.exists(INBOX.resolve(".failed/long.json.error.txt")));

        assertThat(Files.readString(INBOX.resolve(".failed/long.json.error.txt")))
                .contains("element starting at line 3", "llmbatch.ingest.max-record-chars (2000", "tasks confirmed before the failure: 1");
        assertThat(broker.drain(TASKS)).hasSize(1);
    }
}
