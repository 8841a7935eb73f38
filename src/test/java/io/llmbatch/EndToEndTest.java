package io.llmbatch;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import com.mongodb.client.MongoCollection;
import org.apache.camel.test.main.junit5.CamelMainTest;
import org.bson.Document;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.collector.Collector;
import io.llmbatch.llm.LlmSimulator;
import io.llmbatch.support.Broker;
import io.llmbatch.support.Http;
import io.llmbatch.support.Mongo;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/** All three roles in one process: seed payload in, one MongoDB document per company out, also when sent twice. */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=ingest,worker,collector",
        "llmbatch.queue.tasks=test_e2e_tasks",
        "llmbatch.queue.results=test_e2e_results",
        "llmbatch.queue.tasks-dlq=test_e2e_tasks.dlq",
        "llmbatch.queue.results-dlq=test_e2e_results.dlq",
        "llmbatch.ingest.allowed-queues=test_e2e_tasks",
        "llmbatch.ingest.inbox=target/test-inbox-e2e",
        "llmbatch.llm.endpoints=http://127.0.0.1:18621;slots=4,http://127.0.0.1:18622;slots=4;api=openai",
        "llmbatch.mongodb.uri=mongodb://127.0.0.1:18727",
        "llmbatch.collector.batch-timeout=500",
        "camel.server.port=18184",
        "camel.main.routesReloadEnabled=false" })
class EndToEndTest {

    static {
        Mongo.reset(18727);
    }

    final List<LlmSimulator> sims = new ArrayList<>();
    Broker broker;
    MongoClient client;
    MongoCollection<Document> docs;

    @BeforeEach
    void start() throws Exception {
        sims.add(LlmSimulator.start(18621, 0, 4));
        sims.add(LlmSimulator.start(18622, 0, 4));
        broker = new Broker().purge("test_e2e_tasks", "test_e2e_results", "test_e2e_tasks.dlq", "test_e2e_results.dlq");
        client = MongoClients.create("mongodb://127.0.0.1:18727");
        docs = client.getDatabase("llm").getCollection("company_intro");
        docs.deleteMany(new Document());
    }

    @AfterEach
    void stop() throws Exception {
        sims.forEach(LlmSimulator::close);
        client.close();
        broker.close();
    }

    static String seedPayload(int n) {
        StringBuilder list = new StringBuilder();
        for (int i = 0; i < n; i++) {
            list.append(i == 0 ? "" : ",").append("{\"reg_dt\": \"2015-03-02\", \"addr\": \"北京市海淀区").append(i)
                    .append("号\", \"ent_table_name\": \"北京测试科技有限公司").append(i).append("\"}");
        }
        return "{\"rabbit\": \"rabbit01\", \"routing_key\": \"test_e2e_tasks\", \"durable\": true, \"queue\": \"test_e2e_tasks\","
               + " \"message_list\": [" + list + "]}";
    }

    @Test
    void thousand_seed_tasks_become_exactly_a_thousand_documents_sent_again_skipped_and_forced() throws Exception {
        String payload = seedPayload(1000);
        assertThat(Http.post(18184, "/send_workq_message/", payload).json().get("published").asInt()).isEqualTo(1000);
        await().atMost(Duration.ofSeconds(90)).until(() -> docs.countDocuments() == 1000);

        Set<String> expected = new HashSet<>();
        for (int i = 0; i < 1000; i++) {
            expected.add(Collector.pid("北京测试科技有限公司" + i, "chatglm2_6b_int4"));
        }
        Set<String> stored = new HashSet<>();
        for (Document d : docs.find()) {
            stored.add(d.getString("pid"));
            assertThat(d.getString("intro")).isEqualTo(LlmSimulator.textFor("成立日期:2015-03-02\n注册地址:"
                    + d.get("task", Document.class).getString("addr") + "\n" + d.getString("company") + "简介,字数在100-200字之间"));
        }
        assertThat(stored).isEqualTo(expected);

        // the same 1,000 again: each result is stored from the same request, so none is generated again
        long calls = sims.stream().mapToLong(LlmSimulator::posts).sum();
        Http.Answer again = Http.post(18184, "/send_workq_message/", payload.getBytes(StandardCharsets.UTF_8));
        assertThat(again.status()).isEqualTo(200);
        assertThat(again.json().get("published").asInt()).isZero();
        assertThat(again.json().get("skipped").asInt()).isEqualTo(1000);
        assertThat(broker.count("test_e2e_tasks")).isZero();
        assertThat(sims.stream().mapToLong(LlmSimulator::posts).sum()).isEqualTo(calls);
        Http.Text job = Http.get(18184, "/api/jobs/company_intro");
        assertThat(job.status()).as(job.body()).isEqualTo(200);
        assertThat(job.json().get("skipped").asLong()).as(job.body()).isEqualTo(1000);
        assertThat(job.json().get("stored").asLong()).isEqualTo(1000);

        // forced: every document is generated again and updated, none added
        assertThat(Http.post(18184, "/send_workq_message/?force=true", payload.getBytes(StandardCharsets.UTF_8)).json()
                .get("published").asInt()).isEqualTo(1000);
        await().atMost(Duration.ofSeconds(90)).until(() -> broker.count("test_e2e_tasks") == 0 && broker.count("test_e2e_results") == 0
                                                            && docs.countDocuments(new Document("$expr",
                new Document("$gt", List.of("$updated_at", "$created_at")))) == 1000);
        assertThat(docs.countDocuments()).isEqualTo(1000);
        Document sample = docs.find(new Document("company", "北京测试科技有限公司7")).first();
        assertThat(sample.getDate("updated_at")).isAfter(sample.getDate("created_at"));
        assertThat(broker.count("test_e2e_tasks.dlq")).isZero();
        assertThat(broker.count("test_e2e_results.dlq")).isZero();
    }
}
