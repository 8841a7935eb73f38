package io.llmbatch.collector;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.HashSet;
import java.util.Set;

import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import com.mongodb.client.MongoCollection;
import org.bson.Document;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.AppProcess;
import io.llmbatch.support.Broker;
import io.llmbatch.support.Mongo;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/** A collector process killed with kill -9 in the middle of its batches loses nothing and stores nothing twice. */
@ExtendWith(RabbitMQRequired.class)
class CollectorKillIT {

    static final int MONGO_PORT = 18737;
    static final String RESULTS = "test_kill_results";
    static final int N = 20_000;

    @Test
    void collector_killed_mid_batch_then_restarted_stores_every_result_exactly_once() throws Exception {
        Mongo.reset(MONGO_PORT);
        try (Broker broker = new Broker().purge(RESULTS);
             MongoClient client = MongoClients.create("mongodb://127.0.0.1:" + MONGO_PORT)) {
            MongoCollection<Document> docs = client.getDatabase("llm").getCollection("company_intro");
            java.util.List<byte[]> results = new java.util.ArrayList<>();
            for (int i = 0; i < N; i++) {
                results.add(("{\"company\": \"公司" + i + "\", \"intro\": \"简介" + i + "\", \"spends\": 1.0}")
                        .getBytes(StandardCharsets.UTF_8));
            }
            broker.publishAll(RESULTS, results);
            String[] props = { "llmbatch.roles=collector", "llmbatch.queue.results=" + RESULTS,
                               "llmbatch.queue.results-dlq=" + RESULTS + ".dlq",
                               "llmbatch.mongodb.uri=mongodb://127.0.0.1:" + MONGO_PORT, "camel.main.routesReloadEnabled=false" };

            AppProcess first = AppProcess.start("collector-kill-1", props);
            await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(10)).until(() -> docs.countDocuments() >= 2_000);
            first.kill9();
            long atKill = docs.countDocuments();
            assertThat(atKill).as("the kill must land mid-run for this test to mean anything").isLessThan(N);

            try (AppProcess second = AppProcess.start("collector-kill-2", props)) {
                await().atMost(Duration.ofSeconds(120)).until(() -> docs.countDocuments() == N && broker.count(RESULTS) == 0);
                Thread.sleep(1_000); // anything redelivered late would show up now
                assertThat(docs.countDocuments()).isEqualTo(N);
            }
            Set<String> pids = new HashSet<>();
            docs.find().forEach(d -> pids.add(d.getString("pid")));
            assertThat(pids).hasSize(N);
        } finally {
            Mongo.stop();
        }
    }
}
