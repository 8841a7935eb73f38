import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Date;
import java.util.List;

import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import com.mongodb.client.MongoCollection;
import com.mongodb.client.model.BulkWriteOptions;
import com.mongodb.client.model.Filters;
import com.mongodb.client.model.IndexOptions;
import com.mongodb.client.model.Indexes;
import com.mongodb.client.model.UpdateOneModel;
import com.mongodb.client.model.UpdateOptions;
import com.mongodb.client.model.WriteModel;
import com.rabbitmq.client.AMQP;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.ConnectionFactory;
import org.bson.Document;

import io.llmbatch.collector.Collector;
import io.llmbatch.support.Mongo;

/**
 * bench/collector.sh: on one MongoDB-wire server (mongo-java-server in this JVM; no real mongod here), (1) the raw
 * driver upserting N ~1 KB documents by pid ($set + $setOnInsert), unordered bulks of 100, as the collector does; (2) the collector
 * route (target/llm-batch.jar, its own process) draining N ~1 KB results from the queue. Prints both rates.
 */
public class CollectorBench {
    static final int PORT = 18757;

    public static void main(String[] args) throws Exception {
        int n = Integer.parseInt(args[0]);
        String intro = "这是一段用于基准测试的公司简介文字，长度大约三百个汉字。".repeat(15); // ~1 KB in UTF-8
        Mongo.reset(PORT);
        try (MongoClient client = MongoClients.create("mongodb://127.0.0.1:" + PORT)) {
            // (1) raw driver
            MongoCollection<Document> raw = client.getDatabase("bench").getCollection("raw");
            raw.createIndex(Indexes.ascending("pid"), new IndexOptions().unique(true));
            long t0 = System.nanoTime();
            for (int start = 0; start < n; start += 100) {
                List<WriteModel<Document>> bulk = new ArrayList<>(100);
                Date now = new Date();
                for (int i = start; i < Math.min(n, start + 100); i++) {
                    String company = "基准测试公司" + i;
                    String pid = Collector.pid(company, "chatglm2_6b_int4");
                    Document set = new Document("company", company).append("intro", intro).append("spends", 1.234)
                            .append("model_name", "chatglm2_6b_int4").append("pid", pid).append("updated_at", now);
                    Document update = new Document("$set", set).append("$setOnInsert", new Document("created_at", now));
                    bulk.add(new UpdateOneModel<>(Filters.eq("pid", pid), update, new UpdateOptions().upsert(true)));
                }
                raw.bulkWrite(bulk, new BulkWriteOptions().ordered(false));
            }
            double rawSecs = (System.nanoTime() - t0) / 1e9;

            // (2) the collector route
            MongoCollection<Document> docs = client.getDatabase("llm").getCollection("company_intro");
            ConnectionFactory cf = new ConnectionFactory();
            cf.setUri("amqp://guest:guest@127.0.0.1:5672/%2f");
            try (Connection c = cf.newConnection("bench collector"); Channel ch = c.createChannel()) {
                ch.queueDeclare("bench_collector_results", true, false, false, null);
                ch.queuePurge("bench_collector_results");
                ch.confirmSelect();
                AMQP.BasicProperties props = new AMQP.BasicProperties.Builder().deliveryMode(2).contentType("application/json").build();
                for (int i = 0; i < n; i++) {
                    String result = "{\"company\":\"基准测试公司" + i + "\",\"intro\":\"" + intro + "\",\"spends\":1.234}";
                    ch.basicPublish("", "bench_collector_results", props, result.getBytes(StandardCharsets.UTF_8));
                }
                ch.waitForConfirmsOrDie(120_000);
            }
            List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString()));
            String opts = System.getenv("APP_JAVA_OPTS"); // e.g. a JFR recording of the collector process
            if (opts != null && !opts.isBlank()) {
                cmd.addAll(List.of(opts.trim().split("\\s+")));
            }
            cmd.addAll(List.of("-jar", "target/llm-batch.jar", "-Dllmbatch.rabbitmq.url=amqp://guest:guest@127.0.0.1:5672/", "-Dllmbatch.roles=collector", "-Dllmbatch.queue.results=bench_collector_results",
                    "-Dllmbatch.mongodb.uri=mongodb://127.0.0.1:" + PORT, "-Dcamel.main.routesReloadEnabled=false"));
            for (int i = 1; i < args.length; i++) {
                cmd.add("-D" + args[i]); // extra settings, e.g. llmbatch.collector.consumers=1
            }
            Process app = new ProcessBuilder(cmd)
                    .redirectErrorStream(true).redirectOutput(Path.of("bench/target/collector-app.log").toFile()).start();
            try (Connection c = cf.newConnection("bench collector watch"); Channel ch = c.createChannel()) {
                while (docs.countDocuments() == 0) {
                    Thread.sleep(5);
                }
                long first = docs.countDocuments();
                long t1 = System.nanoTime();
                // counting documents scans the collection in mongo-java-server: watch the (cheap) queue depth
                // until it is drained, and count documents only for the last few hundred in flight
                while (ch.queueDeclarePassive("bench_collector_results").getMessageCount() > 0) {
                    Thread.sleep(20);
                }
                long count;
                while ((count = docs.countDocuments()) < n) {
                    Thread.sleep(20);
                }
                double secs = (System.nanoTime() - t1) / 1e9;
                double rawRate = n / rawSecs;
                double routeRate = (count - first) / secs;
                System.out.printf("| %d | %.2f s | %.0f docs/s | %.2f s | %.0f docs/s | %.2f |%n", n, rawSecs, rawRate, secs,
                        routeRate, routeRate / rawRate);
            } finally {
                app.destroy();
                app.waitFor();
            }
        } finally {
            Mongo.stop();
        }
    }
}
