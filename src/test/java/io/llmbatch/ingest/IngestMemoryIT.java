package io.llmbatch.ingest;

import java.io.BufferedWriter;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.camel.util.FileUtil;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.AppProcess;
import io.llmbatch.support.Broker;
import io.llmbatch.support.Http;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * Bad or big input cannot take the ingest node's memory: the jar runs with a 128 MB heap and is fed a 220 MB
 * .jsonl line without a newline, a CSV whose unbalanced quote swallows 220 MB, and concurrent POSTs whose bodies
 * together need several times that heap. It must survive and answer each case as documented; surviving on a heap
 * smaller than the input is the measure of flat memory (no timing is asserted).
 */
@ExtendWith(RabbitMQRequired.class)
class IngestMemoryIT {

    static final int PORT = 20120;
    static final String TASKS = "t11i_memory_tasks";
    static final Path INBOX = Path.of("target/t11i-inbox-memory");
    static final long HUGE = 220L << 20;
    static final int MAX_BODY = 4 << 20;
    static final ObjectMapper JSON = new ObjectMapper();

    static AppProcess app;
    static Broker broker;

    @BeforeAll
    static void start() throws Exception {
        FileUtil.removeDir(INBOX.toFile());
        Files.createDirectories(INBOX);
        broker = new Broker().reset(TASKS);
        app = AppProcess.startWithHeap("128m", "t11i-ingest-memory", "llmbatch.roles=ingest", "llmbatch.queue.tasks=" + TASKS,
                "llmbatch.ingest.allowed-queues=" + TASKS, "llmbatch.ingest.inbox=" + INBOX, "llmbatch.ingest.poll-delay=200",
                "llmbatch.ingest.max-body=" + MAX_BODY, "camel.server.port=" + PORT, "camel.main.routesReloadEnabled=false");
        await().atMost(Duration.ofSeconds(60)).ignoreExceptions()
                .until(() -> Http.post(PORT, "/api/tasks", "[" + task("warm") + "]").status() == 200);
        broker.drainIds(TASKS);
    }

    @org.junit.jupiter.api.BeforeEach
    void emptyQueue() throws Exception {
        broker.drainIds(TASKS);
    }

    @AfterAll
    static void stop() throws Exception {
        if (app != null) {
            app.close();
        }
        if (broker != null) {
            broker.reset(TASKS).close();
        }
        FileUtil.removeDir(INBOX.toFile());
    }

    static String task(String name) {
        return "{\"reg_dt\": \"2015-03-02\", \"addr\": \"北京\", \"ent_table_name\": \"" + name + "\"}";
    }

    /** Writes the file beside the inbox, then moves it in, as users should. */
    static void drop(String name, FileBody body) throws Exception {
        Path tmp = INBOX.resolveSibling("t11i-memory-" + name + ".tmp");
        try (BufferedWriter out = Files.newBufferedWriter(tmp, StandardCharsets.UTF_8)) {
            body.write(out);
        }
        Files.move(tmp, INBOX.resolve(name));
    }

    interface FileBody {
        void write(BufferedWriter out) throws Exception;
    }

    static void repeat(BufferedWriter out, String chunk, long bytes) throws Exception {
        for (long written = 0; written < bytes; written += chunk.length()) {
            out.write(chunk);
        }
    }

    void assertAlive() throws Exception {
        assertThat(app.isAlive()).as("the node survived; see " + app.log()).isTrue();
        assertThat(Http.post(PORT, "/api/tasks", "[" + task("alive") + "]").status()).isEqualTo(200);
        assertThat(broker.drainIds(TASKS)).hasSize(1);
    }

    @Test
    void an_over_long_jsonl_line_is_a_rejects_line_even_without_a_newline_and_the_file_goes_on() throws Exception {
        drop("long-lines.jsonl", out -> {
            out.write(task("行一") + "\n");
            out.write("{\"reg_dt\": \"2015-03-02\", \"addr\": \"");
            repeat(out, "北京市海淀区中关村大街一号", 5L << 20);            // line 2: 5 MB, then a newline: the reader resynchronises
            out.write("\", \"ent_table_name\": \"太长\"}\n");
            out.write(task("行三") + "\n");
            out.write("{\"reg_dt\": \"2015-03-02\", \"addr\": \"");
            repeat(out, "0123456789abcdef", HUGE);                        // line 4: 220 MB and the end of the file, no newline
        });
        Path done = INBOX.resolve(".done/long-lines.jsonl");
        await().atMost(Duration.ofMinutes(3)).until(() -> Files.exists(done) || Files.exists(INBOX.resolve(".failed/long-lines.jsonl"))
                                                         || !app.isAlive());
        assertThat(done).as("see " + app.log()).exists();
        List<JsonNode> rejects = new ArrayList<>();
        for (String line : Files.readAllLines(INBOX.resolve(".done/long-lines.jsonl.rejects.jsonl"))) {
            rejects.add(JSON.readTree(line));
        }
        assertThat(rejects).extracting(r -> r.get("line").asInt()).containsExactly(2, 4);
        assertThat(rejects).extracting(r -> r.get("reason").asText()).allMatch(r -> r.contains("llmbatch.ingest.max-record-chars"));
        assertThat(rejects).extracting(r -> r.get("record").asText().length()).allMatch(n -> n < 10_000);
        assertThat(broker.drainIds(TASKS)).hasSize(2);
        assertAlive();
        Files.delete(done);
    }

    @Test
    void a_csv_quote_left_open_fails_the_file_with_a_report_instead_of_reading_it_into_memory() throws Exception {
        drop("open-quote.csv", out -> {
            out.write("reg_dt,addr,ent_table_name\n2015-03-02,北京,甲公司\n2015-03-02,上海,乙公司\n");
            out.write("2015-03-02,\"广州,丙公司\n");                            // line 4: the quote is never closed
            repeat(out, "2016-01-01,深圳市南山区科技园,深圳某某科技有限公司\n", HUGE); // so all of this is one field
        });
        Path failed = INBOX.resolve(".failed/open-quote.csv");
        await().atMost(Duration.ofMinutes(3)).until(() -> Files.exists(failed) || Files.exists(INBOX.resolve(".done/open-quote.csv"))
                                                         || !app.isAlive());
        assertThat(failed).as("see " + app.log()).exists();
        Path report = INBOX.resolve(".failed/open-quote.csv.error.txt");
        await().atMost(Duration.ofSeconds(10)).until(() -> Files.exists(report));
        assertThat(Files.readString(report)).contains("line 4", "quote", "llmbatch.ingest.max-record-chars",
                "tasks confirmed before the failure: 2");
        assertThat(broker.drainIds(TASKS)).hasSize(2);
        assertAlive();
        Files.delete(failed);
    }

    @Test
    void concurrent_big_posts_beyond_the_bytes_in_flight_get_429_with_retry_after() throws Exception {
        int clients = 6;
        int perRequest = 45_000; // ~3.5 MB each, under max-body (4 MiB); six of them need ~10x their bytes of heap each
        List<byte[]> bodies = new ArrayList<>();
        for (int c = 0; c < clients; c++) {
            StringBuilder list = new StringBuilder("[");
            for (int i = 0; i < perRequest; i++) {
                list.append(i == 0 ? "" : ",").append(task("并发" + c + "-" + i));
            }
            bodies.add(("{\"queue\": \"" + TASKS + "\", \"message_list\": " + list + "]}").getBytes(StandardCharsets.UTF_8));
            assertThat(bodies.get(c).length).isBetween(3 << 20, MAX_BODY);
        }
        ExecutorService pool = Executors.newFixedThreadPool(clients);
        List<CompletableFuture<HttpResponse<String>>> answers = new ArrayList<>();
        for (byte[] body : bodies) {
            answers.add(CompletableFuture.supplyAsync(() -> {
                try {
                    return Http.exchange(PORT, "/send_workq_message/", body, "Content-Type", "application/json");
                } catch (Exception e) {
                    throw new IllegalStateException(e);
                }
            }, pool));
        }
        long published = 0;
        List<byte[]> refused = new ArrayList<>();
        for (int c = 0; c < clients; c++) {
            HttpResponse<String> r = answers.get(c).join();
            assertThat(r.statusCode()).as(r.body()).isIn(200, 429);
            JsonNode json = JSON.readTree(r.body());
            if (r.statusCode() == 200) {
                published += json.get("published").asLong();
            } else {
                assertThat(r.headers().firstValue("Retry-After")).as("Retry-After on a 429").isPresent();
                assertThat(json.get("error").asText()).contains("llmbatch.ingest.max-bytes-in-flight");
                refused.add(bodies.get(c));
            }
        }
        pool.shutdown();
        assertThat(published).as("at least one request got through").isGreaterThanOrEqualTo(perRequest);
        assertThat(refused).as("the budget refused some of %d concurrent requests", clients).isNotEmpty();
        for (byte[] body : refused) { // one at a time, each fits
            assertThat(Http.post(PORT, "/send_workq_message/", body).json().get("published").asLong()).isEqualTo(perRequest);
        }
        assertThat(broker.drainIds(TASKS)).hasSize(clients * perRequest).doesNotHaveDuplicates();
        assertAlive();
    }
}
