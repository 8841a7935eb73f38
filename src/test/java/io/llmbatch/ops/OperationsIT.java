package io.llmbatch.ops;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import com.fasterxml.jackson.databind.JsonNode;
import org.apache.camel.util.FileUtil;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.AppProcess;
import io.llmbatch.support.Broker;
import io.llmbatch.support.Http;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * The jar as a node with its management port: readiness with the broker, MongoDB and LLM checks, llm-batch's
 * meters in Prometheus text, Jolokia behind basic authentication and the read-only policy, /api/progress and the
 * {@code status} command following a job to its end, and a refusal to expose Jolokia off loopback without a password.
 */
@ExtendWith(RabbitMQRequired.class)
class OperationsIT {

    static final int HTTP = 18811;
    static final int MANAGEMENT = 18812;
    static final Path DATA = Path.of("target/it-ops/data");
    static final String TASKS = "ops-it.tasks";
    static final String RESULTS = "ops-it.results";
    static final String AUTH = "Basic " + Base64.getEncoder().encodeToString("admin:s3cret".getBytes(StandardCharsets.UTF_8));
    static final String ROUTE_MBEAN = "org.apache.camel:context=llm-batch,type=routes,name=%22worker-tasks%22";

    @Test
    void a_node_reports_health_metrics_jolokia_and_progress_through_a_job() throws Exception {
        FileUtil.removeDir(DATA.getParent().toFile());
        try (Broker broker = new Broker().reset(TASKS, RESULTS, TASKS + ".dlq", RESULTS + ".dlq");
             AppProcess node = AppProcess.startWithEnvironment("ops-node", Map.of("RABBITMQ_URL", RabbitMQRequired.URL,
                     "MANAGEMENT_PASSWORD", "s3cret"),
                     "camel.server.port=" + HTTP, "camel.management.port=" + MANAGEMENT, "camel.main.routesReloadEnabled=false",
                     "llmbatch.queue.tasks=" + TASKS, "llmbatch.queue.results=" + RESULTS,
                     "llmbatch.queue.tasks-dlq=" + TASKS + ".dlq", "llmbatch.queue.results-dlq=" + RESULTS + ".dlq",
                     "llmbatch.embedded.data-dir=" + DATA, "llmbatch.embedded.mongodb-port=18813",
                     "llmbatch.embedded.llm-port=18814", "llmbatch.embedded.llm-latency=20", "llmbatch.ingest.inbox=target/it-ops/inbox",
                     "llmbatch.status.interval=1000", "llmbatch.cost.per-gpu-hour=1.2")) {
            await().atMost(Duration.ofSeconds(60)).ignoreExceptions()
                    .until(() -> Http.get(MANAGEMENT, "/observe/health/ready").status() == 200);
            String ready = Http.get(MANAGEMENT, "/observe/health/ready?exposureLevel=full").body();
            for (String check : List.of("rabbitmq", "mongodb", "llm-backends")) {
                assertThat(ready).contains("{\"name\":\"" + check + "\",\"status\":\"UP\"");
            }

            List<String> tasks = new ArrayList<>();
            for (int i = 0; i < 300; i++) {
                tasks.add("{\"reg_dt\":\"2020-01-01\",\"addr\":\"武汉\",\"ent_table_name\":\"运维测试公司" + i + "\"}");
            }
            assertThat(Http.post(HTTP, "/api/tasks", "[" + String.join(",", tasks) + "]").json().get("published").asInt())
                    .isEqualTo(300);

            // the status command follows the job until nothing is left, then exits 0
            Process status = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-jar",
                    "target/llm-batch.jar", "status", "http://127.0.0.1:" + HTTP + "/api/progress")
                    .redirectErrorStream(true).redirectOutput(Path.of("target/ops-status.log").toFile()).start();
            assertThat(status.waitFor(120, TimeUnit.SECONDS)).as("status returns once the job is done").isTrue();
            String bar = Files.readString(Path.of("target/ops-status.log"));
            assertThat(status.exitValue()).as(bar).isZero();
            assertThat(bar.strip().lines().reduce((a, b) -> b).orElseThrow()).contains("100.0%", "stored 300", "waiting 0", "CNY/1000");

            JsonNode progress = Http.get(HTTP, "/api/progress").json();
            assertThat(progress.get("stored").asLong()).isEqualTo(300);
            assertThat(progress.get("remaining").asLong()).isZero();
            assertThat(progress.get("dead_lettered").asLong()).isZero();
            assertThat(progress.get("rate_per_second").asDouble()).isPositive();
            assertThat(progress.path("cost").path("per_1000").isNumber()).as(progress.toString()).isTrue();
            assertThat(progress.get("workers").get(0).get("completed").asLong()).isEqualTo(300);

            String metrics = Http.get(MANAGEMENT, "/observe/metrics").body();
            assertThat(metrics).contains("llmbatch_tasks_ingested_total{source=\"http\"} 300.0", "llmbatch_results_stored_total 300.0",
                    "llmbatch_collector_batch_size_count", "llmbatch_llm_in_flight{backend=\"http://127.0.0.1:18814\"}",
                    "llmbatch_llm_latency_seconds_count{backend=\"http://127.0.0.1:18814\",outcome=\"ok\"} 300",
                    "llmbatch_llm_latency_seconds_bucket", "camel_exchanges_total");

            String read = "/observe/jolokia/read/" + ROUTE_MBEAN + "/ExchangesCompleted";
            assertThat(Http.get(MANAGEMENT, read).status()).as("no password, no Jolokia").isEqualTo(401);
            assertThat(Http.get(MANAGEMENT, read, "Authorization", AUTH).json().get("value").asLong()).isEqualTo(300);
            assertThat(Http.get(MANAGEMENT, read, "Authorization", AUTH, "Origin", "https://evil.example").status())
                    .as("a page of another site, through a browser").isEqualTo(403);
            assertThat(Http.get(MANAGEMENT, read, "Authorization", AUTH, "Origin", "http://127.0.0.1:8090").json().get("value")
                    .asLong()).as("bin/hawtio's page").isEqualTo(300);
            // operations only over POST with a JSON Content-Type (what Hawtio sends); never over GET, which any page can trigger
            String context = "org.apache.camel:context=llm-batch,type=context,name=\\\"llm-batch\\\"";
            JsonNode dump = Http.post(MANAGEMENT, "/observe/jolokia", "{\"type\":\"exec\",\"mbean\":\"" + context
                    + "\",\"operation\":\"dumpRoutesAsXml()\"}", "Authorization", AUTH, "Content-Type", "application/json").json();
            assertThat(dump.get("status").asInt()).as(dump.toString()).isEqualTo(200);
            assertThat(Http.get(MANAGEMENT, "/observe/jolokia/exec/org.apache.camel:context=llm-batch,type=context,name=%22llm-batch%22/dumpRoutesAsXml()",
                    "Authorization", AUTH).status()).as("exec over GET").isEqualTo(405);
            JsonNode stop = Http.post(MANAGEMENT, "/observe/jolokia", "{\"type\":\"exec\",\"mbean\":\""
                    + "org.apache.camel:context=llm-batch,type=routes,name=\\\"worker-tasks\\\"\",\"operation\":\"stop\"}",
                    "Authorization", AUTH, "Content-Type", "application/json").json();
            assertThat(stop.get("status").asInt()).as("route control is off: " + stop).isEqualTo(403);
            assertThat(Http.get(MANAGEMENT, "/observe/jolokia/read/" + ROUTE_MBEAN + "/State", "Authorization", AUTH)
                    .json().get("value").asText()).isEqualTo("Started");
        }
    }

    @Test
    void jolokia_off_loopback_without_a_password_stops_the_start() throws Exception {
        try (AppProcess node = AppProcess.startWithEnvironment("ops-exposed", Map.of("RABBITMQ_URL", RabbitMQRequired.URL),
                "llmbatch.roles=worker", "camel.management.host=0.0.0.0", "camel.management.port=18815",
                "llmbatch.llm.endpoints=http://127.0.0.1:18816", "llmbatch.queue.tasks=" + TASKS)) {
            await().atMost(Duration.ofSeconds(60)).until(() -> !node.isAlive());
            assertThat(Files.readString(node.log())).contains("exposes Jolokia, health and metrics beyond this machine",
                    "MANAGEMENT_PASSWORD");
        }
    }

    @Test
    void ingest_off_loopback_without_a_token_stops_the_start() throws Exception {
        try (AppProcess node = AppProcess.startWithEnvironment("ops-ingest-exposed", Map.of("RABBITMQ_URL", RabbitMQRequired.URL),
                "llmbatch.roles=ingest", "camel.server.host=0.0.0.0", "camel.server.port=18817", "llmbatch.queue.tasks=" + TASKS)) {
            assertThat(node.exitCode(Duration.ofSeconds(60))).isNotZero();
            assertThat(Files.readString(node.log())).contains("camel.server.host=0.0.0.0 exposes the ingest endpoints beyond this machine",
                    "INGEST_TOKEN");
            assertThat(Http.listening(18817)).isFalse();
        }
        // with a token it serves, and only with the token
        try (AppProcess node = AppProcess.startWithEnvironment("ops-ingest-token", Map.of("RABBITMQ_URL", RabbitMQRequired.URL,
                "INGEST_TOKEN", "ops-it-token"), "llmbatch.roles=ingest", "camel.server.host=0.0.0.0", "camel.server.port=18817",
                "llmbatch.queue.tasks=" + TASKS)) {
            await().atMost(Duration.ofSeconds(60)).ignoreExceptions().until(() -> Http.get(18817, "/api/progress",
                    "Authorization", "Bearer ops-it-token").status() == 200);
            assertThat(Http.get(18817, "/api/progress").status()).isEqualTo(401);
        }
    }
}
