package io.llmbatch.embedded;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import com.fasterxml.jackson.databind.JsonNode;
import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import com.mongodb.client.MongoCollection;
import org.apache.camel.util.FileUtil;
import org.bson.Document;
import org.junit.jupiter.api.Test;

import io.llmbatch.support.AppProcess;
import io.llmbatch.support.Http;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * The default run with nothing configured (no RABBITMQ_URL, MONGODB_URI, LLM_ENDPOINTS): embedded broker, MongoDB
 * and LLM simulator process the sample job end to end, {@code /api/progress} and {@code status --once} show it all
 * stored, the results survive a restart, and a configured broker
 * that is down is reported, never replaced by the embedded one. Only ports and directories are set, so that the
 * test does not collide with a running node.
 */
class EmbeddedDefaultIT {

    static final Path DATA = Path.of("target/it-embedded/data");
    static final Path INBOX = Path.of("target/it-embedded/inbox");
    static final int BROKER_PORT = 15673;
    static final int MONGO_PORT = 17018;
    static final int HTTP_PORT = 18190;
    static final String[] PLACES = { "llmbatch.embedded.data-dir=" + DATA, "llmbatch.ingest.inbox=" + INBOX,
                                     "llmbatch.embedded.broker-port=" + BROKER_PORT, "llmbatch.embedded.mongodb-port=" + MONGO_PORT,
                                     "llmbatch.embedded.llm-port=11100", "camel.server.port=" + EmbeddedDefaultIT.HTTP_PORT,
                                     "camel.main.routesReloadEnabled=false" };

    @Test
    void default_run_processes_the_sample_job_and_keeps_results_across_a_restart() throws Exception {
        FileUtil.removeDir(DATA.getParent().toFile());
        Files.createDirectories(INBOX);
        long rows = Files.lines(Path.of("samples/companies.csv")).count() - 1;

        try (AppProcess first = AppProcess.startWithEnvironment("embedded-1", Map.of(), PLACES)) {
            await().atMost(Duration.ofSeconds(60)).until(() -> Http.listening(MONGO_PORT) && Http.listening(BROKER_PORT));
            Path tmp = INBOX.resolveSibling("companies.csv.tmp");
            Files.copy(Path.of("samples/companies.csv"), tmp);
            Files.move(tmp, INBOX.resolve("companies.csv"), StandardCopyOption.ATOMIC_MOVE);
            await().atMost(Duration.ofSeconds(180)).until(() -> stored() == rows);

            // /api/progress on the embedded broker: the status reports of the worker and the collector arrive
            await().atMost(Duration.ofSeconds(30)).ignoreExceptions().untilAsserted(() -> {
                JsonNode progress = Http.get(HTTP_PORT, "/api/progress").json();
                assertThat(progress.path("stored").asLong(-1)).as(progress.toString()).isEqualTo(rows);
                assertThat(progress.path("remaining").asLong(-1)).as(progress.toString()).isZero();
                assertThat(progress.path("workers")).as(progress.toString()).hasSize(1);
                assertThat(progress.path("workers").get(0).path("completed").asLong()).as(progress.toString()).isEqualTo(rows);
                assertThat(progress.path("collectors")).as(progress.toString()).hasSize(1);
            });
            // ... and the status command, as a process against this node, agrees
            Path statusLog = Path.of("target/embedded-status.log");
            Process status = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-jar",
                    "target/llm-batch.jar", "status", "http://127.0.0.1:" + HTTP_PORT + "/api/progress", "--once")
                    .redirectErrorStream(true).redirectOutput(statusLog.toFile()).start();
            assertThat(status.waitFor(60, TimeUnit.SECONDS)).as("status --once returns").isTrue();
            String bar = Files.readString(statusLog);
            assertThat(status.exitValue()).as(bar).isZero();
            assertThat(bar).contains("100.0%", String.format(Locale.ROOT, "stored %,d ", rows), "waiting 0");

            String log = Files.readString(first.log());
            assertThat(log).contains("EMBEDDED broker", "EMBEDDED MongoDB", "EMBEDDED LLM SIMULATOR");
        }
        assertThat(Http.listening(MONGO_PORT)).as("the embedded MongoDB stopped with the process").isFalse();
        try (AppProcess second = AppProcess.startWithEnvironment("embedded-2", Map.of(), PLACES)) {
            await().atMost(Duration.ofSeconds(60)).until(() -> Http.listening(MONGO_PORT));
            assertThat(stored()).as("results survive a restart").isEqualTo(rows);
            try (MongoClient client = client()) {
                Document d = collection(client).find(new Document("company", "成都凯泰电子有限公司")).first();
                assertThat(d.getString("intro")).contains("SIMULATED");
                assertThat(d.get("task", Document.class).getString("industry")).isEqualTo("制造");
            }
        }
    }

    @Test
    void a_configured_broker_that_is_down_is_reported_and_not_replaced() throws Exception {
        try (AppProcess app = AppProcess.startWithEnvironment("embedded-down", Map.of("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:1/"),
                PLACES)) {
            await().atMost(Duration.ofSeconds(60)).until(() -> Files.readString(app.log()).contains("Connection refused"));
            String log = Files.readString(app.log());
            assertThat(log).contains("RabbitMQ at amqp://guest:***@127.0.0.1:1/").doesNotContain("EMBEDDED broker");
            assertThat(Http.listening(BROKER_PORT)).isFalse();
            assertThat(app.isAlive()).as("keeps retrying").isTrue();
        }
    }

    @Test
    void started_where_there_are_no_routes_it_says_where_to_start_it() throws Exception {
        Path elsewhere = Path.of("target/no-routes-here");
        FileUtil.removeDir(elsewhere.toFile());
        Files.createDirectories(elsewhere);
        try (AppProcess app = AppProcess.startIn(elsewhere, "no-routes", Map.of(), PLACES)) {
            assertThat(app.exitCode(Duration.ofSeconds(60))).isEqualTo(2);
            assertThat(Files.readString(app.log())).contains("llm-batch cannot start: routes not found (working directory "
                                                             + elsewhere.toAbsolutePath())
                    .contains("Start it from the directory that holds routes/").doesNotContain("\tat org.apache.camel");
        }
    }

    @Test
    void a_start_that_fails_ends_the_process_instead_of_leaving_a_deaf_node() throws Exception {
        // the management port is taken (an earlier node still stopping, another program): the start fails, and the
        // embedded parts already running must not keep the process alive
        try (java.net.ServerSocket taken = new java.net.ServerSocket(18198, 1, java.net.InetAddress.getLoopbackAddress());
             AppProcess app = AppProcess.start("port-taken", java.util.stream.Stream.concat(java.util.Arrays.stream(PLACES),
                     java.util.stream.Stream.of("camel.management.port=" + taken.getLocalPort())).toArray(String[]::new))) {
            assertThat(app.exitCode(Duration.ofSeconds(60))).isEqualTo(1);
            assertThat(Files.readString(app.log())).contains("llm-batch cannot start: cannot serve HTTP on 127.0.0.1:18198");
        }
    }

    static long stored() {
        try (MongoClient client = client()) {
            return collection(client).countDocuments();
        } catch (RuntimeException e) {
            return -1;
        }
    }

    static MongoClient client() {
        return MongoClients.create("mongodb://127.0.0.1:" + MONGO_PORT + "/?serverSelectionTimeoutMS=1000");
    }

    static MongoCollection<Document> collection(MongoClient client) {
        return client.getDatabase("llm").getCollection("company_intro");
    }

}
