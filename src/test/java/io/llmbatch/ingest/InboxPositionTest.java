package io.llmbatch.ingest;

import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

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
 * The position an inbox file keeps in {@code <inbox>/.progress/<name>.json} (InboxResumeIT makes real ones with a stop
 * and a kill -9; here they are written as a stopped node leaves them): a file that matches its position resumes after
 * it, with its rejects file cut back to the saved length; a different file under the same name starts afresh.
 */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=ingest",
        "llmbatch.queue.tasks=t11i_position_tasks",
        "llmbatch.ingest.inbox=target/t11i-inbox-position",
        "llmbatch.ingest.poll-delay=200",
        "camel.server.port=20109",
        "camel.main.routesReloadEnabled=false" })
class InboxPositionTest {

    static final String TASKS = "t11i_position_tasks";
    static final Path INBOX = Path.of("target/t11i-inbox-position");
    static final ObjectMapper JSON = new ObjectMapper();

    Broker broker;

    @BeforeEach
    void clean() throws Exception {
        broker = new Broker().reset(TASKS);
        FileUtil.removeDir(INBOX.toFile());
        Files.createDirectories(INBOX.resolve(".progress"));
    }

    @AfterEach
    void close() throws Exception {
        broker.close();
    }

    /** Ten rows; those in {@code bad} lack their company (rejected). */
    static String csv(String prefix, List<Integer> bad) {
        StringBuilder s = new StringBuilder("reg_dt,addr,ent_table_name\n");
        for (int i = 0; i < 10; i++) {
            s.append("2015-03-02,北京,").append(bad.contains(i) ? "" : prefix + i).append('\n');
        }
        return s.toString();
    }

    /** The file as written beside the inbox, and the position a node would have saved for it. */
    static Path staged(String content) throws Exception {
        return Files.writeString(INBOX.resolveSibling("t11i-position-staged.csv"), content, StandardCharsets.UTF_8);
    }

    static void savePosition(Path file, String name, long doneThrough, long published, long rejected, long rejectsBytes) throws Exception {
        Map<String, Object> p = new LinkedHashMap<>();
        p.put("file", name);
        p.put("size", Files.size(file));
        p.put("modified", Files.getLastModifiedTime(file).toMillis());
        try (InputStream in = Files.newInputStream(file)) {
            p.put("head_sha256", HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(in.readNBytes(64 * 1024))));
        }
        p.put("done_through", doneThrough);
        p.put("published", published);
        p.put("rejected", rejected);
        p.put("rejects_bytes", rejectsBytes);
        Files.write(INBOX.resolve(".progress").resolve(name + ".json"), JSON.writeValueAsBytes(p));
    }

    List<String> companies() throws Exception {
        return broker.drain(TASKS).stream().map(m -> {
            try {
                return JSON.readTree(m.getBody()).get("ent_table_name").asText();
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        }).toList();
    }

    void awaitDone(String name) {
        await().atMost(Duration.ofSeconds(20)).until(() -> Files.exists(INBOX.resolve(".done").resolve(name)));
    }

    @Test
    void a_file_with_its_saved_position_resumes_after_it_and_the_position_goes_with_the_finished_file() throws Exception {
        Path file = staged(csv("续", List.of()));
        savePosition(file, "ten.csv", 5, 6, 0, 0); // rows 0-5 confirmed before a stop
        Files.move(file, INBOX.resolve("ten.csv"));
        awaitDone("ten.csv");

        assertThat(companies()).containsExactly("续6", "续7", "续8", "续9");
        assertThat(INBOX.resolve(".progress/ten.csv.json")).doesNotExist();
    }

    @Test
    void a_position_saved_for_another_file_of_the_same_name_is_discarded_and_the_file_starts_afresh() throws Exception {
        Path other = staged(csv("旧", List.of()));
        savePosition(other, "ten.csv", 5, 6, 0, 0);
        Files.delete(other);
        Path file = staged(csv("新的", List.of())); // same name, other content and size
        Files.move(file, INBOX.resolve("ten.csv"));
        awaitDone("ten.csv");

        assertThat(companies()).hasSize(10).startsWith("新的0");
        assertThat(INBOX.resolve(".progress/ten.csv.json")).doesNotExist();
    }

    @Test
    void a_resumed_file_keeps_its_rejects_up_to_the_position_and_writes_none_twice() throws Exception {
        Path file = staged(csv("拒", List.of(2, 7)));
        String before = "{\"line\":4,\"reason\":\"required field 'ent_table_name' is empty\",\"record\":\"2015-03-02,北京,\"}\n";
        String afterSave = "{\"line\":9,\"reason\":\"written after the position was saved\",\"record\":\"\"}\n";
        Files.createDirectories(INBOX.resolve(".done"));
        Files.writeString(INBOX.resolve(".done/ten.csv.rejects.jsonl"), before + afterSave);
        savePosition(file, "ten.csv", 5, 5, 1, before.getBytes(StandardCharsets.UTF_8).length);
        Files.move(file, INBOX.resolve("ten.csv"));
        awaitDone("ten.csv");

        assertThat(companies()).containsExactly("拒6", "拒8", "拒9");
        List<String> rejects = Files.readAllLines(INBOX.resolve(".done/ten.csv.rejects.jsonl"));
        assertThat(rejects).hasSize(2);
        assertThat(rejects.get(0)).isEqualTo(before.strip());
        assertThat(JSON.readTree(rejects.get(1)).get("line").asInt()).isEqualTo(9);
        assertThat(JSON.readTree(rejects.get(1)).get("reason").asText()).contains("ent_table_name");
    }
}
