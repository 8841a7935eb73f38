package io.llmbatch.jobs;

import java.io.InputStream;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Date;
import java.util.Iterator;
import java.util.List;

import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import com.mongodb.client.MongoCollection;
import org.apache.commons.csv.CSVFormat;
import org.apache.commons.csv.CSVParser;
import org.apache.commons.csv.CSVRecord;
import org.bson.Document;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.AppProcess;
import io.llmbatch.support.Http;
import io.llmbatch.support.Mongo;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * Export of 100,000 stored results (~190 MB of CSV) from an ingest node whose heap is 64 MB: surviving on a heap a third
 * of the output's size is the measure of flat memory (no timing is asserted). The CSV and JSON lines read back exactly,
 * Chinese text with commas, quotes and line breaks included, and the CLI writes the same file.
 */
@ExtendWith(RabbitMQRequired.class)
class JobsExportIT {

    static final int PORT = 21210;
    static final int MONGO = 21211;
    static final int ROWS = 100_000;
    static final String LONG_INTRO = "北京测试科技有限公司成立于2015年,位于北京市海淀区。".repeat(20); // ~540 characters, 1.6 KB
    static final String TRICKY = "第一行,有逗号，中文逗号\n第二行 \"引号\" 与\r\n回车";

    static AppProcess app;

    @BeforeAll
    static void start() throws Exception {
        Mongo.reset(MONGO);
        try (MongoClient client = MongoClients.create("mongodb://127.0.0.1:" + MONGO)) {
            MongoCollection<Document> c = client.getDatabase("llm").getCollection("company_intro");
            List<Document> batch = new ArrayList<>();
            for (int i = 0; i < ROWS; i++) {
                String company = i == 7 ? "上海,示例 \"贸易\" 公司" : "北京测试科技有限公司" + i;
                batch.add(new Document("pid", Jobs.md5(company + "chatglm2_6b_int4")).append("company", company)
                        .append("intro", i == 7 ? TRICKY : LONG_INTRO + i).append("model_name", "chatglm2_6b_int4")
                        .append("job", "company_intro").append("prompt_version", "abc123def456").append("finish_reason", "stop")
                        .append("task", new Document("reg_dt", "2015-03-02").append("addr", "北京").append("ent_table_name", company))
                        .append("updated_at", new Date(1_700_000_000_000L + i)));
                if (batch.size() == 2000) {
                    c.insertMany(batch);
                    batch.clear();
                }
            }
        }
        app = AppProcess.startWithHeap("64m", "t13-export", "llmbatch.roles=ingest", "llmbatch.mongodb.uri=mongodb://127.0.0.1:" + MONGO,
                "llmbatch.queue.tasks=t13_export_tasks", "llmbatch.ingest.allowed-queues=t13_export_tasks",
                "llmbatch.ingest.inbox=target/t13-export-inbox", "camel.server.port=" + PORT, "camel.main.routesReloadEnabled=false");
        await().atMost(Duration.ofSeconds(60)).ignoreExceptions().until(() -> Http.get(PORT, "/api/jobs/company_intro").status() == 200);
    }

    @AfterAll
    static void stop() throws Exception {
        if (app != null) {
            app.close();
        }
        Mongo.stop();
    }

    @Test
    void csv_of_100000_results_streams_from_a_64_mb_heap_and_reads_back_exactly() throws Exception {
        var response = java.net.http.HttpClient.newHttpClient().send(java.net.http.HttpRequest.newBuilder(
                java.net.URI.create("http://127.0.0.1:" + PORT + "/api/jobs/company_intro/results?format=csv&bom=true")).build(),
                java.net.http.HttpResponse.BodyHandlers.ofInputStream());
        assertThat(response.statusCode()).isEqualTo(200);
        assertThat(response.headers().firstValue("Content-Type").orElse("")).startsWith("text/csv");
        try (InputStream in = response.body()) {
            byte[] bom = in.readNBytes(3);
            assertThat(bom).containsExactly(0xEF, 0xBB, 0xBF);
            assertCsv(new java.io.InputStreamReader(in, StandardCharsets.UTF_8));
        }
        assertThat(app.isAlive()).as("the node survived (see " + app.log() + ")").isTrue();
        assertThat(Files.readString(app.log())).doesNotContain("OutOfMemoryError");
    }

    @Test
    void json_lines_of_100000_results_stream_and_the_cli_writes_the_same_csv() throws Exception {
        var response = java.net.http.HttpClient.newHttpClient().send(java.net.http.HttpRequest.newBuilder(
                java.net.URI.create("http://127.0.0.1:" + PORT + "/api/jobs/company_intro/results?format=jsonl")).build(),
                java.net.http.HttpResponse.BodyHandlers.ofLines());
        assertThat(response.statusCode()).isEqualTo(200);
        long[] lines = { 0 };
        com.fasterxml.jackson.databind.ObjectMapper json = new com.fasterxml.jackson.databind.ObjectMapper();
        response.body().forEach(l -> {
            try {
                var d = json.readTree(l);
                if (d.get("company").asText().startsWith("上海")) {
                    assertThat(d.get("intro").asText()).isEqualTo(TRICKY);
                }
            } catch (java.io.IOException e) {
                throw new IllegalStateException(e);
            }
            lines[0]++;
        });
        assertThat(lines[0]).isEqualTo(ROWS);

        // the CLI: `java -jar target/llm-batch.jar export company_intro --format csv --out FILE URL`
        Path out = Path.of("target/t13-export.csv");
        Files.deleteIfExists(out);
        Process cli = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-jar",
                Path.of("target/llm-batch.jar").toAbsolutePath().toString(), "export", "company_intro", "--format", "csv", "--out",
                out.toString(), "http://127.0.0.1:" + PORT).redirectErrorStream(true).start();
        String printed = new String(cli.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(cli.waitFor()).as(printed).isZero();
        assertThat(printed).contains("export: 100,000 result(s) of job company_intro written to");
        try (Reader r = Files.newBufferedReader(out, StandardCharsets.UTF_8)) {
            assertCsv(r);
        }
        assertThat(app.isAlive()).isTrue();
    }

    static void assertCsv(Reader reader) throws Exception {
        try (CSVParser csv = CSVFormat.RFC4180.builder().setHeader().setSkipHeaderRecord(true).get().parse(reader)) {
            assertThat(csv.getHeaderNames()).containsExactly("pid", "ent_table_name", "intro", "model_name", "prompt_version",
                    "finish_reason", "updated_at");
            long rows = 0;
            for (Iterator<CSVRecord> it = csv.iterator(); it.hasNext(); ) {
                CSVRecord r = it.next();
                if (r.get("ent_table_name").startsWith("上海")) {
                    assertThat(r.get("ent_table_name")).isEqualTo("上海,示例 \"贸易\" 公司");
                    assertThat(r.get("intro")).isEqualTo(TRICKY);
                    assertThat(r.get("pid")).isEqualTo(Jobs.md5("上海,示例 \"贸易\" 公司chatglm2_6b_int4"));
                } else {
                    assertThat(r.get("intro")).startsWith(LONG_INTRO);
                }
                assertThat(r.size()).isEqualTo(7);
                rows++;
            }
            assertThat(rows).isEqualTo(ROWS);
        }
    }
}
