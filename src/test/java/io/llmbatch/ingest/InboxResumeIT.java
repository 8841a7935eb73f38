package io.llmbatch.ingest;

import java.io.BufferedWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashSet;
import java.util.List;

import org.apache.camel.util.FileUtil;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.AppProcess;
import io.llmbatch.support.Broker;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * An inbox file that takes longer than the stop: the ingest node (the jar, as on a real machine) is stopped
 * gracefully, or killed with {@code kill -9}, while it publishes a 200,000-row CSV, then started again. The file stays
 * in the inbox and the restart resumes after the last confirmed row: every row reaches the queue, a graceful stop
 * sends none twice, a kill -9 at most the confirm window (rows published but not yet confirmed, or confirmed after the
 * last saved position). The stop is given 3 s ({@code camel.main.shutdownTimeout}), less than the file needs.
 */
@ExtendWith(RabbitMQRequired.class)
class InboxResumeIT {

    static final String TASKS = "t11i_resume_tasks";
    static final Path INBOX = Path.of("target/t11i-inbox-resume");
    static final int ROWS = 200_000;
    static final int CONFIRM_WINDOW = 1000; // llmbatch.ingest.confirm-window's default

    Broker broker;

    @BeforeEach
    void clean() throws Exception {
        broker = new Broker().reset(TASKS);
        FileUtil.removeDir(INBOX.toFile());
        Files.createDirectories(INBOX);
    }

    @AfterEach
    void close() throws Exception {
        broker.reset(TASKS).close();
        FileUtil.removeDir(INBOX.toFile());
    }

    static AppProcess node(String name) throws Exception {
        return AppProcess.start(name, "llmbatch.roles=ingest", "llmbatch.queue.tasks=" + TASKS, "llmbatch.ingest.inbox=" + INBOX,
                "llmbatch.ingest.poll-delay=200", "camel.server.port=20130", "camel.main.shutdownTimeout=3",
                "camel.main.routesReloadEnabled=false");
    }

    /** 200,000 rows, each a different company, written beside the inbox and moved in. */
    static void dropBigCsv() throws Exception {
        Path tmp = INBOX.resolveSibling("t11i-resume.tmp");
        try (BufferedWriter out = Files.newBufferedWriter(tmp, StandardCharsets.UTF_8)) {
            out.write("reg_dt,addr,ent_table_name\n");
            for (int i = 0; i < ROWS; i++) {
                out.write("2015-03-02,北京市海淀区中关村大街" + i + "号,续传测试公司" + i + "\n");
            }
        }
        Files.move(tmp, INBOX.resolve("big.csv"));
    }

    /** Waits until the node is mid-file: a tenth of the rows confirmed, the file not finished. */
    void awaitMidFile(AppProcess node) {
        await().atMost(Duration.ofSeconds(120)).pollInterval(Duration.ofMillis(100))
                .until(() -> broker.count(TASKS) >= ROWS / 10 || !node.isAlive());
        assertThat(node.isAlive()).as("see " + node.log()).isTrue();
        assertThat(INBOX.resolve(".done/big.csv")).as("stopped mid-file, not after it").doesNotExist();
    }

    void awaitDone(AppProcess node) {
        await().atMost(Duration.ofSeconds(180)).until(() -> Files.exists(INBOX.resolve(".done/big.csv"))
                                                        || Files.exists(INBOX.resolve(".failed/big.csv")) || !node.isAlive());
        assertThat(INBOX.resolve(".done/big.csv")).as("see " + node.log()).exists();
    }

    /** Files left in the inbox besides the task files: the saved position, while a file is unfinished. */
    static List<Path> positions() throws Exception {
        Path dir = INBOX.resolve(".progress");
        if (!Files.isDirectory(dir)) {
            return List.of();
        }
        try (var files = Files.list(dir)) {
            return files.toList();
        }
    }

    @Test
    void graceful_stop_mid_file_leaves_it_in_the_inbox_and_the_restart_sends_each_row_once() throws Exception {
        try (AppProcess first = node("t11i-resume-stop-1")) {
            dropBigCsv();
            awaitMidFile(first);
            first.close(); // SIGTERM: Camel's graceful stop
        }
        assertThat(INBOX.resolve(".failed/big.csv")).as("a stop is not a failure").doesNotExist();
        assertThat(INBOX.resolve("big.csv")).as("left in the inbox").exists();
        assertThat(positions()).as("its confirmed position saved beside it").hasSize(1);

        try (AppProcess second = node("t11i-resume-stop-2")) {
            awaitDone(second);
        }
        assertThat(positions()).as("the position goes with the finished file").isEmpty();
        List<String> ids = broker.drainIds(TASKS);
        assertThat(new HashSet<>(ids)).as("every row").hasSize(ROWS);
        assertThat(ids).as("none twice after a graceful stop").hasSize(ROWS);
    }

    @Test
    void kill_9_mid_file_resumes_after_the_last_saved_position_with_at_most_the_confirm_window_sent_twice() throws Exception {
        try (AppProcess first = node("t11i-resume-kill-1")) {
            dropBigCsv();
            awaitMidFile(first);
            first.kill9();
        }
        assertThat(INBOX.resolve("big.csv")).exists();

        try (AppProcess second = node("t11i-resume-kill-2")) {
            awaitDone(second);
        }
        assertThat(positions()).isEmpty();
        List<String> ids = broker.drainIds(TASKS);
        int distinct = new HashSet<>(ids).size();
        assertThat(distinct).as("every row, none lost").isEqualTo(ROWS);
        assertThat(ids.size() - distinct).as("rows sent twice").isLessThanOrEqualTo(CONFIRM_WINDOW);
        System.out.printf("InboxResumeIT: kill -9 mid-file, %d rows sent twice (bound %d)%n", ids.size() - distinct, CONFIRM_WINDOW);
    }

    @Test
    void a_reject_read_ahead_of_the_stop_is_written_once_after_the_restart() throws Exception {
        // the queue holds 5 tasks and refuses the rest: rows 0-4 are confirmed, row 5 is refused and the file waits for
        // room; row 9 (no company) was read, checked and rejected with the block, before row 5 was refused
        broker.declare(TASKS, java.util.Map.of("x-max-length", 5, "x-overflow", "reject-publish"));
        StringBuilder csv = new StringBuilder("reg_dt,addr,ent_table_name\n");
        for (int i = 0; i < 12; i++) {
            csv.append("2015-03-02,北京,").append(i == 9 ? "" : "续传拒绝" + i).append('\n');
        }
        Files.writeString(INBOX.resolveSibling("t11i-resume-rejects.tmp"), csv);
        try (AppProcess first = node("t11i-resume-rejects-1")) {
            Files.move(INBOX.resolveSibling("t11i-resume-rejects.tmp"), INBOX.resolve("twelve.csv"));
            await().atMost(Duration.ofSeconds(60)).until(() -> Files.readString(first.log()).contains("broker failure after 5 confirmed"));
            first.close(); // SIGTERM while the file waits: its position is saved at row 4
        }
        assertThat(INBOX.resolve("twelve.csv")).as("left in the inbox").exists();

        List<String> ids = new java.util.ArrayList<>();
        try (AppProcess second = node("t11i-resume-rejects-2")) {
            await().atMost(Duration.ofSeconds(60)).until(() -> {
                broker.drain(TASKS).forEach(m -> ids.add(m.getProps().getMessageId())); // consuming makes room
                return Files.exists(INBOX.resolve(".done/twelve.csv")) && broker.count(TASKS) == 0 || !second.isAlive();
            });
            assertThat(INBOX.resolve(".done/twelve.csv")).as("see " + second.log()).exists();
            assertThat(Files.readString(second.log())).as("the restart's report").contains("rejected 1 ");
        }
        assertThat(ids).as("every good row once").hasSize(11).doesNotHaveDuplicates();
        List<String> rejects = Files.readAllLines(INBOX.resolve(".done/twelve.csv.rejects.jsonl"));
        assertThat(rejects).as("row 9 rejected once, not again after the restart").hasSize(1);
    }

    @Test
    void a_jsonl_file_with_blank_lines_resumes_after_its_confirmed_records_not_before_the_first_blank_line() throws Exception {
        // a blank line is a position with no record: the saved position must go past it, or the restart sends again
        // every record confirmed after it
        broker.declare(TASKS, java.util.Map.of("x-max-length", 5, "x-overflow", "reject-publish"));
        StringBuilder jsonl = new StringBuilder();
        for (int i = 0; i < 12; i++) {
            jsonl.append("{\"reg_dt\":\"2015-03-02\",\"addr\":\"北京\",\"ent_table_name\":\"空行续传" + i + "\"}\n\n");
        }
        Files.writeString(INBOX.resolveSibling("t11i-resume-blank.tmp"), jsonl);
        try (AppProcess first = node("t11i-resume-blank-1")) {
            Files.move(INBOX.resolveSibling("t11i-resume-blank.tmp"), INBOX.resolve("twelve.jsonl"));
            await().atMost(Duration.ofSeconds(60)).until(() -> Files.readString(first.log()).contains("broker failure after 5 confirmed"));
            first.close();
        }
        List<String> ids = new java.util.ArrayList<>();
        try (AppProcess second = node("t11i-resume-blank-2")) {
            await().atMost(Duration.ofSeconds(60)).until(() -> {
                broker.drain(TASKS).forEach(m -> ids.add(m.getProps().getMessageId())); // basic.get: none taken in flight
                return Files.exists(INBOX.resolve(".done/twelve.jsonl")) && broker.count(TASKS) == 0 || !second.isAlive();
            });
            assertThat(INBOX.resolve(".done/twelve.jsonl")).as("see " + second.log()).exists();
            assertThat(Files.readString(second.log())).as("resumed after the 5 confirmed records").contains("resuming after record 10 ");
        }
        assertThat(ids).as("every record once").hasSize(12).doesNotHaveDuplicates();
    }
}
