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
}
