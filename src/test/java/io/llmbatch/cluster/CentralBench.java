package io.llmbatch.cluster;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import com.mongodb.client.MongoCollection;
import org.bson.Document;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.AppProcess;
import io.llmbatch.support.Broker;
import io.llmbatch.support.Http;
import io.llmbatch.support.Mongo;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * The central part's capacity (bench/central.sh; not run by {@code mvn verify}): {@code central.results} (default
 * 50,000) results of ~1 KB already queued, drained by one collector process, then the same again by two collector
 * processes at once. Results stored per second (first to last document), and for two collectors: every result stored
 * exactly once (documents = distinct companies = results, and the collectors' own counts of results written add up to
 * the results sent: none written twice). MongoDB is mongo-java-server in memory in this JVM, as in bench/collector.sh.
 */
@ExtendWith(RabbitMQRequired.class)
class CentralBench {

    static final int N = Integer.getInteger("central.results", 50_000);
    static final int MONGO_PORT = 20441;
    static final String RESULTS = "t15_central_results";
    static final Path TABLE = Path.of("target/central/results.md");
    static final Pattern STORED = Pattern.compile("(?m)^llmbatch_results_stored_total(?:\\{[^}]*\\})? ([0-9.E+]+)");

    @Test
    void one_collector_rate_and_two_collectors_store_every_result_exactly_once() throws Exception {
        Files.createDirectories(TABLE.getParent());
        Files.writeString(TABLE, "| collectors | results queued | stored | distinct | written (collectors' count) | seconds | results/s |\n"
                                 + "|---|---|---|---|---|---|---|\n");
        for (int collectors : new int[] { 1, 2 }) {
            run(collectors);
        }
    }

    void run(int collectors) throws Exception {
        Mongo.reset(MONGO_PORT);
        List<AppProcess> processes = new ArrayList<>();
        try (Broker amqp = new Broker().reset(RESULTS, RESULTS + ".dlq");
             MongoClient client = MongoClients.create("mongodb://127.0.0.1:" + MONGO_PORT)) {
            MongoCollection<Document> docs = client.getDatabase("llm").getCollection("company_intro");
            String intro = "这是一段用于基准测试的公司简介文字，长度大约三百个汉字。".repeat(15); // ~1 KB in UTF-8, as bench/collector.sh
            List<byte[]> bodies = new ArrayList<>(N);
            for (int i = 0; i < N; i++) {
                bodies.add(("{\"company\":\"中心测试公司" + i + "\",\"intro\":\"" + intro + "\",\"spends\":2.0,\"model_name\":\"chatglm2_6b_int4\"}")
                        .getBytes(StandardCharsets.UTF_8));
            }
            amqp.publishAll(RESULTS, bodies);
            for (int c = 0; c < collectors; c++) {
                processes.add(AppProcess.startWithEnvironment("central-collector-" + collectors + "-" + c, Map.of(),
                        "llmbatch.rabbitmq.url=" + RabbitMQRequired.URL, "llmbatch.roles=collector", "llmbatch.queue.results=" + RESULTS,
                        "llmbatch.queue.results-dlq=" + RESULTS + ".dlq", "llmbatch.mongodb.uri=mongodb://127.0.0.1:" + MONGO_PORT,
                        "camel.management.port=" + (20442 + c), "camel.main.routesReloadEnabled=false"));
            }
            await().atMost(Duration.ofMinutes(2)).pollInterval(Duration.ofMillis(5)).until(() -> docs.estimatedDocumentCount() > 0);
            long first = docs.estimatedDocumentCount();
            long t0 = System.nanoTime();
            // the queue depth is cheap to watch; documents are counted for the last results in flight only
            await().atMost(Duration.ofMinutes(10)).pollInterval(Duration.ofMillis(20)).until(() -> amqp.count(RESULTS) == 0);
            await().atMost(Duration.ofMinutes(2)).pollInterval(Duration.ofMillis(20)).until(() -> docs.estimatedDocumentCount() >= N);
            double seconds = (System.nanoTime() - t0) / 1e9;
            Thread.sleep(3_000); // a second write of anything would show now
            long written = 0;
            for (int c = 0; c < collectors; c++) {
                Matcher m = STORED.matcher(Http.get(20442 + c, "/observe/metrics").body());
                assertThat(m.find()).as("collector " + c + " reports llmbatch_results_stored_total").isTrue();
                written += (long) Double.parseDouble(m.group(1));
            }
            long stored = docs.countDocuments();
            Set<String> companies = new HashSet<>();
            docs.find().projection(new Document("company", 1)).forEach(d -> companies.add(d.getString("company")));
            Files.writeString(TABLE, String.format("| %d | %,d | %,d | %,d | %,d | %.2f | %,.0f |%n", collectors, N, stored, companies.size(),
                    written, seconds, (N - first) / seconds), StandardOpenOption.APPEND);
            assertThat(companies).hasSize(N);
            assertThat(stored).as("documents").isEqualTo(N);
            assertThat(written).as("results written by the collectors together (each exactly once)").isEqualTo(N);
            assertThat(amqp.count(RESULTS + ".dlq")).as("dead letters").isLessThanOrEqualTo(0);
            amqp.reset(RESULTS, RESULTS + ".dlq");
        } finally {
            for (AppProcess p : processes) {
                p.close();
            }
            Mongo.stop();
        }
    }
}
