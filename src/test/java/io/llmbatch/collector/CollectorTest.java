package io.llmbatch.collector;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Date;
import java.util.List;

import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import com.mongodb.client.MongoCollection;
import com.mongodb.client.model.Filters;
import com.rabbitmq.client.GetResponse;
import org.apache.camel.test.main.junit5.CamelMainTest;
import org.bson.Document;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.Broker;
import io.llmbatch.support.Mongo;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/** The collector route on the real broker with an in-process MongoDB-wire server. */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=collector",
        "llmbatch.queue.results=test_collector_results",
        "llmbatch.queue.results-dlq=test_collector_results.dlq",
        "llmbatch.mongodb.uri=mongodb://127.0.0.1:18717/?serverSelectionTimeoutMS=1000&connectTimeoutMS=1000",
        "llmbatch.collector.batch-size=100",
        "llmbatch.collector.batch-timeout=500",
        "camel.main.routesReloadEnabled=false" })
class CollectorTest {

    static final int MONGO_PORT = 18717;
    static final String RESULTS = "test_collector_results";
    static final String DLQ = "test_collector_results.dlq";

    static {
        Mongo.reset(MONGO_PORT); // up before the collector starts
    }

    Broker broker;
    MongoClient client;
    MongoCollection<Document> docs;

    @BeforeEach
    void start() throws Exception {
        Mongo.start(MONGO_PORT);
        broker = new Broker().purge(RESULTS, DLQ);
        client = MongoClients.create("mongodb://127.0.0.1:" + MONGO_PORT);
        docs = client.getDatabase("llm").getCollection("company_intro");
        docs.deleteMany(new Document());
    }

    @AfterEach
    void stop() throws Exception {
        Mongo.start(MONGO_PORT);
        client.close();
        broker.close();
    }

    static String result(String company, String intro) {
        return "{\"company\": \"" + company + "\", \"intro\": \"" + intro + "\", \"spends\": 1.5,"
               + " \"task\": {\"reg_dt\": \"2015-03-02\", \"addr\": \"北京\", \"ent_table_name\": \"" + company + "\"},"
               + " \"worker_host\": \"gpu-1\", \"attempts\": 1}";
    }

    void publish(String body) throws Exception {
        broker.publish(RESULTS, body.getBytes(StandardCharsets.UTF_8), null);
    }

    void awaitCount(long n) {
        await().atMost(Duration.ofSeconds(30)).until(() -> docs.countDocuments() == n);
    }

    @Test
    void results_are_upserted_by_pid_and_a_resend_keeps_one_document_and_its_created_at() throws Exception {
        for (int i = 0; i < 5; i++) {
            publish(result("北京测试科技有限公司" + i, "第一版"));
        }
        awaitCount(5); // 5 < batch size: flushed by the batch timeout
        Document first = docs.find(Filters.eq("company", "北京测试科技有限公司0")).first();
        assertThat(first.getString("pid")).isEqualTo(Collector.pid("北京测试科技有限公司0", "chatglm2_6b_int4"));
        assertThat(first.getString("model_name")).isEqualTo("chatglm2_6b_int4");
        assertThat(first.getString("intro")).isEqualTo("第一版");
        assertThat(first.get("task", Document.class).getString("addr")).isEqualTo("北京");
        Date created = first.getDate("created_at");
        assertThat(first.getDate("updated_at")).isEqualTo(created);

        Thread.sleep(20);
        for (int i = 0; i < 5; i++) {
            publish(result("北京测试科技有限公司" + i, "第二版"));
        }
        await().atMost(Duration.ofSeconds(30)).until(() -> docs.countDocuments(Filters.eq("intro", "第二版")) == 5);
        assertThat(docs.countDocuments()).isEqualTo(5);
        Document again = docs.find(Filters.eq("company", "北京测试科技有限公司0")).first();
        assertThat(again.getDate("created_at")).isEqualTo(created);
        assertThat(again.getDate("updated_at")).isAfter(created);
        assertThat(broker.count(RESULTS)).isZero();
    }

    @Test
    void model_name_of_the_result_is_part_of_the_pid() throws Exception {
        publish("{\"company\": \"Acme Ltd\", \"intro\": \"x\", \"model_name\": \"qwen2.5-7b\"}");
        publish("{\"company\": \"Acme Ltd\", \"intro\": \"y\"}");
        awaitCount(2);
        assertThat(docs.find(Filters.eq("model_name", "qwen2.5-7b")).first().getString("pid"))
                .isEqualTo("eb05ac0a6f100d61ca5fa31ce8306905");
        assertThat(docs.find(Filters.eq("model_name", "chatglm2_6b_int4")).first().getString("pid"))
                .isEqualTo("9e468e9cacb0238a5ec85eee83ee436d");
    }

    @Test
    void malformed_results_go_to_the_dead_letter_queue_and_the_rest_of_the_batch_is_stored() throws Exception {
        publish(result("甲公司", "a"));
        publish("not json at all");
        publish("{\"intro\": \"no company\"}");
        publish(result("乙公司", "b"));
        awaitCount(2);
        List<GetResponse> dead = new ArrayList<>();
        await().atMost(Duration.ofSeconds(10)).until(() -> {
            dead.addAll(broker.drain(DLQ));
            return dead.size() >= 2;
        });
        assertThat(dead).extracting(d -> d.getProps().getHeaders().get("x-llmbatch-reason").toString())
                .containsExactlyInAnyOrder("result is not valid JSON: expected an object, found 'not json at all'",
                        "result has no 'company' (a non-empty string)");
        assertThat(broker.count(RESULTS)).isZero();
    }

    @Test
    void mongodb_down_then_back_loses_nothing() throws Exception {
        Mongo.stop();
        for (int i = 0; i < 30; i++) {
            publish(result("公司" + i, "intro"));
        }
        Thread.sleep(3_000); // the collector retries the batch with backoff, acknowledging nothing
        assertThat(broker.count(DLQ)).isLessThanOrEqualTo(0);
        Mongo.start(MONGO_PORT);
        awaitCount(30);
        await().atMost(Duration.ofSeconds(10)).until(() -> broker.count(RESULTS) == 0);
    }

    @Test
    void pid_index_is_unique() {
        // created at startup in the background
        await().atMost(Duration.ofSeconds(10)).until(() -> docs.listIndexes().into(new ArrayList<>()).size() > 1);
        List<Document> indexes = docs.listIndexes().into(new ArrayList<>());
        assertThat(indexes).anySatisfy(ix -> {
            assertThat(ix.get("key", Document.class).keySet()).containsExactly("pid");
            assertThat(ix.getBoolean("unique")).isTrue();
        });
    }

    static boolean uniquePidIndex(MongoCollection<Document> docs) {
        return docs.listIndexes().into(new ArrayList<>()).stream()
                .anyMatch(ix -> ix.get("key", Document.class).keySet().equals(java.util.Set.of("pid")) && ix.getBoolean("unique", false));
    }

    @Test
    void indexes_are_checked_again_when_mongodb_is_reachable_again() {
        await().atMost(Duration.ofSeconds(10)).until(() -> uniquePidIndex(docs));
        String name = docs.listIndexes().into(new ArrayList<>()).stream()
                .filter(ix -> ix.get("key", Document.class).containsKey("pid")).findFirst().orElseThrow().getString("name");
        docs.dropIndex(name); // e.g. restored from a dump without its indexes
        assertThat(uniquePidIndex(docs)).isFalse();
        Mongo.stop();
        Mongo.start(MONGO_PORT);
        // no write needed: the collector sees MongoDB come back and checks its indexes
        await().atMost(Duration.ofSeconds(30)).until(() -> uniquePidIndex(docs));
    }

    @Test
    void a_document_mongodb_cannot_take_is_dead_lettered_and_does_not_block_the_collector() throws Exception {
        publish(result("甲公司", "a"));
        publish(result("超大文档公司", "x".repeat(17 * 1024 * 1024))); // over MongoDB's 16 MB document limit
        publish(result("乙公司", "b"));
        awaitCount(2);
        List<GetResponse> dead = new ArrayList<>();
        await().atMost(Duration.ofSeconds(20)).until(() -> {
            dead.addAll(broker.drain(DLQ));
            return !dead.isEmpty();
        });
        assertThat(dead.get(0).getProps().getHeaders().get("x-llmbatch-reason").toString())
                .startsWith("cannot write the document to MongoDB");
        assertThat(new String(dead.get(0).getBody(), StandardCharsets.UTF_8)).contains("超大文档公司");
        // over the broker's limit too (llmbatch.ingest.max-message-bytes, 16 MiB): its first 64 KiB, with its size
        assertThat(dead.get(0).getBody()).hasSize(64 * 1024);
        assertThat((Long) dead.get(0).getProps().getHeaders().get("x-llmbatch-truncated-from")).isGreaterThan(17L * 1024 * 1024);
        await().atMost(Duration.ofSeconds(10)).until(() -> broker.count(RESULTS) == 0);
        publish(result("丙公司", "c")); // the collector goes on
        awaitCount(3);
        assertThat(docs.countDocuments(Filters.eq("company", "超大文档公司"))).isZero();
    }
}
