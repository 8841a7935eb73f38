package io.llmbatch.ingest;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.List;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.rabbitmq.client.GetResponse;
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

@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=ingest",
        "llmbatch.queue.tasks=test_file_tasks",
        "llmbatch.ingest.inbox=target/test-inbox",
        "llmbatch.ingest.poll-delay=200",
        "camel.server.port=18183",
        "camel.main.routesReloadEnabled=false" })
class FileIngestTest {

    static final String TASKS = "test_file_tasks";
    static final Path INBOX = Path.of("target/test-inbox");
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

    /** Drops a file the way users should: written elsewhere, then moved into the inbox in one step. */
    static void drop(String name, byte[] content) throws Exception {
        Path tmp = Files.createTempFile(INBOX.getParent(), "drop", ".tmp");
        Files.write(tmp, content);
        Files.move(tmp, INBOX.resolve(name), StandardCopyOption.ATOMIC_MOVE);
    }

    static void drop(String name, String content) throws Exception {
        drop(name, content.getBytes(StandardCharsets.UTF_8));
    }

    static Path awaitMoved(String dir, String name) {
        Path target = INBOX.resolve(dir).resolve(name);
        await().atMost(Duration.ofSeconds(20)).until(() -> Files.exists(target) && !Files.exists(INBOX.resolve(name)));
        return target;
    }

    List<JsonNode> tasks() throws Exception {
        List<GetResponse> messages = broker.drain(TASKS);
        for (GetResponse m : messages) {
            assertThat(m.getProps().getDeliveryMode()).as("persistent").isEqualTo(2);
            assertThat(m.getProps().getMessageId()).isNotBlank();
        }
        return messages.stream().map(m -> {
            try {
                // the task as it came: its job's fields ride beside it (TaskEnvelope)
                com.fasterxml.jackson.databind.node.ObjectNode task = (com.fasterxml.jackson.databind.node.ObjectNode) JSON.readTree(m.getBody());
                assertThat(task.path("_llmbatch").path("job").asText()).isEqualTo("company_intro");
                task.remove("_llmbatch");
                return (JsonNode) task;
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        }).toList();
    }

    List<JsonNode> rejects(String name) throws Exception {
        Path path = INBOX.resolve(".done").resolve(name + ".rejects.jsonl");
        if (!Files.exists(path)) {
            return List.of();
        }
        return Files.readAllLines(path).stream().map(l -> {
            try {
                return JSON.readTree(l);
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        }).toList();
    }

    @Test
    void csv_rows_become_tasks_with_extra_columns_and_bad_rows_go_to_rejects_with_line_numbers() throws Exception {
        String csv = "\uFEFFreg_dt,addr,ent_table_name,legal_person\n"
                     + "2015-03-02,\"北京市海淀区, 中关村\n大街1号\",北京测试科技有限公司,张三\n" // lines 2-3: quoted comma and newline
                     + "2016-01-01,上海\n"                                                   // line 4: too few fields
                     + "2017-05-05,广州,,李四\n"                                              // line 5: blank company
                     + "2018-08-08,深圳,深圳某公司,王五\n";                                     // line 6
        drop("companies.csv", csv);
        awaitMoved(".done", "companies.csv");

        List<JsonNode> tasks = tasks();
        assertThat(tasks).hasSize(2);
        assertThat(tasks.get(0)).isEqualTo(JSON.readTree("{\"reg_dt\": \"2015-03-02\", \"addr\": \"北京市海淀区, 中关村\\n大街1号\","
                                                         + " \"ent_table_name\": \"北京测试科技有限公司\", \"legal_person\": \"张三\"}"));
        assertThat(tasks.get(1).get("ent_table_name").asText()).isEqualTo("深圳某公司");
        assertThat(rejects("companies.csv")).extracting(r -> r.get("line").asInt() + ": " + r.get("reason").asText())
                .containsExactly("4: row has 2 field(s), the header has 4", "5: required field 'ent_table_name' is empty");
    }

    @Test
    void jsonl_bad_lines_are_rejected_and_the_rest_published() throws Exception {
        String jsonl = """
                {"reg_dt": "2015-03-02", "addr": "a", "ent_table_name": "甲公司", "task_id": "job-1"}

                {"reg_dt": "2015-03-02", "addr": "a", "ent_table_name":
                [1, 2]
                {"reg_dt": "2015-03-02", "addr": "a"}
                {"reg_dt": "2015-03-03", "addr": "b", "ent_table_name": "乙公司"}
                """;
        drop("tasks.jsonl", jsonl);
        awaitMoved(".done", "tasks.jsonl");

        assertThat(tasks()).extracting(t -> t.get("ent_table_name").asText()).containsExactly("甲公司", "乙公司");
        assertThat(rejects("tasks.jsonl")).extracting(r -> r.get("line").asInt() + ": " + r.get("reason").asText())
                .satisfiesExactly(
                        r -> assertThat(r).startsWith("3: malformed JSON"),
                        r -> assertThat(r).isEqualTo("4: expected a JSON object, got an array"),
                        r -> assertThat(r).isEqualTo("5: missing required field 'ent_table_name'"));
    }

    @Test
    void json_array_file_is_streamed_element_by_element() throws Exception {
        String json = """
                [
                  {"reg_dt": "2015-03-02", "addr": "a", "ent_table_name": "甲公司"},
                  "not a task",
                  {"reg_dt": "2015-03-03", "addr": "b", "ent_table_name": "乙公司"}
                ]
                """;
        drop("tasks.json", json);
        awaitMoved(".done", "tasks.json");

        assertThat(tasks()).hasSize(2);
        assertThat(rejects("tasks.json")).extracting(r -> r.get("line").asInt() + ": " + r.get("reason").asText())
                .containsExactly("3: expected a JSON object, got a string");
    }

    @Test
    void csv_without_a_required_column_fails_with_an_error_report_and_publishes_nothing() throws Exception {
        drop("no-name.csv", "reg_dt,addr\n2015-03-02,a\n");
        awaitMoved(".failed", "no-name.csv");

        Path report = INBOX.resolve(".failed/no-name.csv.error.txt");
        await().atMost(Duration.ofSeconds(5)).until(() -> Files.exists(report));
        assertThat(Files.readString(report)).contains("lacks required column(s) [ent_table_name]");
        assertThat(broker.count(TASKS)).isLessThanOrEqualTo(0);
    }

    @Test
    void file_that_is_not_valid_utf8_fails_instead_of_publishing_garbled_names() throws Exception {
        byte[] gbk = "reg_dt,addr,ent_table_name\n2015-03-02,北京,北京测试科技有限公司\n".getBytes("GBK");
        drop("gbk.csv", gbk);
        awaitMoved(".failed", "gbk.csv");

        Path report = INBOX.resolve(".failed/gbk.csv.error.txt");
        await().atMost(Duration.ofSeconds(5)).until(() -> Files.exists(report));
        assertThat(Files.readString(report)).contains("llmbatch.ingest.charset");
        assertThat(broker.count(TASKS)).isLessThanOrEqualTo(0);
    }

    @Test
    void json_file_broken_midway_fails_and_reports_what_was_published() throws Exception {
        drop("broken.json", "[{\"reg_dt\": \"1\", \"addr\": \"a\", \"ent_table_name\": \"甲\"},\n{\"reg_dt\": ");
        awaitMoved(".failed", "broken.json");

        Path report = INBOX.resolve(".failed/broken.json.error.txt");
        await().atMost(Duration.ofSeconds(5)).until(() -> Files.exists(report));
        assertThat(Files.readString(report)).contains("malformed JSON at line 2", "tasks confirmed before the failure: 1");
        assertThat(tasks()).hasSize(1);
    }

    @Test
    void broker_refusing_midway_pauses_the_file_and_resumes_without_loss_or_duplicates() throws Exception {
        // the queue holds 5 messages and nacks the rest until someone consumes; row 9 (no company) is rejected while
        // row 5 waits for room, and written once
        broker.declare(TASKS, java.util.Map.of("x-max-length", 5, "x-overflow", "reject-publish"));
        StringBuilder csv = new StringBuilder("reg_dt,addr,ent_table_name\n");
        for (int i = 0; i < 12; i++) {
            csv.append("2015-01-01,addr,").append(i == 9 ? "" : "公司" + i).append('\n');
        }
        drop("twelve.csv", csv.toString());

        java.util.List<String> seen = new java.util.ArrayList<>();
        await().atMost(Duration.ofSeconds(60)).until(() -> {
            for (JsonNode t : tasks()) { // consuming makes room; the file resumes after its last confirmed row
                seen.add(t.get("ent_table_name").asText());
            }
            return Files.exists(INBOX.resolve(".done/twelve.csv")) && broker.count(TASKS) == 0;
        });
        assertThat(seen).hasSize(11).doesNotHaveDuplicates();
        assertThat(rejects("twelve.csv")).extracting(r -> r.get("line").asInt()).containsExactly(11);
    }
}
