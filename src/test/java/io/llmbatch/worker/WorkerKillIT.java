package io.llmbatch.worker;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import com.mongodb.client.MongoCollection;
import org.bson.Document;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.llm.LlmSimulator;
import io.llmbatch.support.AppProcess;
import io.llmbatch.support.Broker;
import io.llmbatch.support.Mongo;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * A GPU machine vanishing mid-run: the worker process is killed with kill -9 while it holds tasks, another
 * worker takes over, and every task ends as exactly one document (worker and collector as separate processes).
 */
@ExtendWith(RabbitMQRequired.class)
class WorkerKillIT {

    static final int MONGO_PORT = 18747;
    static final int N = 3_000;
    static final String TASKS = "test_wkill_tasks";
    static final String RESULTS = "test_wkill_results";

    @Test
    void worker_killed_mid_run_loses_no_task_and_duplicates_no_document() throws Exception {
        Mongo.reset(MONGO_PORT);
        List<LlmSimulator> sims = new ArrayList<>();
        for (int port : new int[] { 18751, 18752, 18753 }) {
            sims.add(LlmSimulator.start(port, 50, 4));
        }
        String[] common = { "llmbatch.queue.tasks=" + TASKS, "llmbatch.queue.results=" + RESULTS,
                            "llmbatch.queue.tasks-dlq=" + TASKS + ".dlq", "llmbatch.queue.results-dlq=" + RESULTS + ".dlq",
                            "llmbatch.mongodb.uri=mongodb://127.0.0.1:" + MONGO_PORT, "camel.main.routesReloadEnabled=false",
                            "llmbatch.llm.endpoints=http://127.0.0.1:18751;slots=4,http://127.0.0.1:18752;slots=4,http://127.0.0.1:18753;slots=4" };
        try (Broker broker = new Broker().purge(TASKS, RESULTS, TASKS + ".dlq", RESULTS + ".dlq");
             MongoClient client = MongoClients.create("mongodb://127.0.0.1:" + MONGO_PORT);
             AppProcess collector = AppProcess.start("wkill-collector", with(common, "llmbatch.roles=collector"))) {
            MongoCollection<Document> docs = client.getDatabase("llm").getCollection("company_intro");
            List<byte[]> tasks = new ArrayList<>();
            for (int i = 0; i < N; i++) {
                tasks.add(("{\"reg_dt\": \"2015-03-02\", \"addr\": \"北京\", \"ent_table_name\": \"机器消失测试公司" + i + "\"}")
                        .getBytes(StandardCharsets.UTF_8));
            }
            broker.publishAll(TASKS, tasks);

            AppProcess first = AppProcess.start("wkill-worker-1", with(common, "llmbatch.roles=worker"));
            await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(20)).until(() -> docs.countDocuments() >= N / 5);
            first.kill9();
            assertThat(docs.countDocuments()).as("the kill must land mid-run for this test to mean anything").isLessThan(N);

            try (AppProcess second = AppProcess.start("wkill-worker-2", with(common, "llmbatch.roles=worker"))) {
                await().atMost(Duration.ofSeconds(120)).until(() -> docs.countDocuments() == N
                                                                    && broker.count(TASKS) == 0 && broker.count(RESULTS) == 0);
            }
            Set<String> companies = new HashSet<>();
            docs.find().forEach(d -> companies.add(d.getString("company")));
            assertThat(companies).hasSize(N);
            assertThat(docs.countDocuments()).isEqualTo(N);
            assertThat(broker.count(TASKS + ".dlq")).isZero();
            assertThat(broker.count(RESULTS + ".dlq")).isZero();
        } finally {
            sims.forEach(LlmSimulator::close);
            Mongo.stop();
        }
    }

    static String[] with(String[] common, String extra) {
        String[] all = java.util.Arrays.copyOf(common, common.length + 1);
        all[common.length] = extra;
        return all;
    }
}
