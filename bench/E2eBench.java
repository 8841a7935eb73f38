import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import com.mongodb.client.MongoCollection;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.ConnectionFactory;
import org.bson.Document;

import io.llmbatch.llm.LlmSimulator;
import io.llmbatch.support.LatencyProxy;
import io.llmbatch.support.Mongo;

/**
 * bench/e2e.sh: N seed tasks through all three roles in one llm-batch process (target/llm-batch.jar) with
 * 0 ms simulated LLM backends (3 x 4 slots) and a MongoDB-wire server in this JVM. Time from the POST to the
 * N-th document stored ({@code -Dbench.jar=...}: another build's jar). {@code -Dbench.mongo.one-way-ms=M}: the llm-batch processes reach MongoDB through a
 * {@link LatencyProxy} that delays each way by M ms, as a MongoDB on another machine or in another zone would.
 */
public class E2eBench {
    public static void main(String[] args) throws Exception {
        String payloadFile = args[0];
        int n = Integer.parseInt(args[1]);
        int mongoPort = 18767;
        Mongo.reset(mongoPort);
        long oneWayMs = Long.getLong("bench.mongo.one-way-ms", 0);
        LatencyProxy proxy = oneWayMs == 0 ? null : LatencyProxy.start(new java.net.InetSocketAddress("127.0.0.1", 18768),
                new java.net.InetSocketAddress("127.0.0.1", mongoPort), oneWayMs, 0, 0);
        String jar = System.getProperty("bench.jar", "target/llm-batch.jar");
        String appMongo = "mongodb://127.0.0.1:" + (proxy == null ? mongoPort : 18768);
        List<LlmSimulator> sims = new ArrayList<>();
        for (int port : new int[] { 18771, 18772, 18773 }) {
            sims.add(LlmSimulator.start(port, 0, 4));
        }
        ConnectionFactory cf = new ConnectionFactory();
        cf.setUri("amqp://guest:guest@127.0.0.1:5672/%2f");
        try (Connection c = cf.newConnection("bench e2e"); Channel ch = c.createChannel()) {
            for (String q : new String[] { "bench_e2e_tasks", "bench_e2e_results" }) {
                ch.queueDeclare(q, true, false, false, null);
                ch.queuePurge(q);
            }
        }
        boolean again = args.length > 2 && "again".equals(args[2]);
        // inbox CSV: the N tasks as a CSV moved into the ingest node's inbox, timed until the file is in .done/ (every
        // row rendered, looked up, entered in the ledger and confirmed); nothing generated
        Path inboxCsv = args.length > 3 && "inbox".equals(args[2]) ? Path.of(args[3]) : null;
        // bench/skip.sh: the ingest node alone while it ingests (as in bench/ingest.sh), worker and collector started after
        String roles = again || inboxCsv != null ? "-Dllmbatch.roles=ingest" : "-Dllmbatch.roles=ingest,worker,collector";
        Process app = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-Xmx1g", "-jar",
                jar, "-Dllmbatch.rabbitmq.url=amqp://guest:guest@127.0.0.1:5672/", "-Dllmbatch.queue.tasks=bench_e2e_tasks", "-Dllmbatch.queue.results=bench_e2e_results",
                "-Dllmbatch.ingest.allowed-queues=bench_e2e_tasks", "-Dcamel.server.port=18780", "-Dcamel.management.port=0",
                "-Dllmbatch.ingest.inbox=bench/target/e2e-inbox", "-Dllmbatch.ingest.poll-delay=100",
                "-Dllmbatch.llm.endpoints=http://127.0.0.1:18771;slots=4,http://127.0.0.1:18772;slots=4,http://127.0.0.1:18773;slots=4",
                "-Dllmbatch.mongodb.uri=" + appMongo, "-Dcamel.main.routesReloadEnabled=false", roles)
                .redirectErrorStream(true).redirectOutput(Path.of("bench/target/e2e-app.log").toFile()).start();
        Process workers = null;
        try (MongoClient client = MongoClients.create("mongodb://127.0.0.1:" + mongoPort)) {
            MongoCollection<Document> docs = client.getDatabase("llm").getCollection("company_intro");
            HttpClient http = HttpClient.newHttpClient();
            for (int i = 0; i < 100; i++) { // wait for the app to listen
                try {
                    http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:18780/api/tasks")).GET().build(),
                            HttpResponse.BodyHandlers.discarding());
                    break;
                } catch (java.io.IOException e) {
                    Thread.sleep(200);
                }
            }
            Thread.sleep(2000);
            if (inboxCsv != null) {
                Path inbox = Path.of("bench/target/e2e-inbox");
                Files.deleteIfExists(inbox.resolve(".done/tasks.csv"));
                Path tmp = Files.copy(inboxCsv, inbox.resolve("tasks.csv.tmp"), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
                long t0 = System.nanoTime();
                Files.move(tmp, inbox.resolve("tasks.csv"));
                while (!Files.exists(inbox.resolve(".done/tasks.csv"))) {
                    Thread.sleep(20);
                }
                System.out.printf("| %d | inbox | %.2f s |%n", n, (System.nanoTime() - t0) / 1e9);
                return;
            }
            byte[] payload = Files.readAllBytes(Path.of(payloadFile));
            long t0 = System.nanoTime();
            HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:18780/send_workq_message/"))
                    .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofByteArray(payload)).build(),
                    HttpResponse.BodyHandlers.ofString());
            double postSecs = (System.nanoTime() - t0) / 1e9;
            if (r.statusCode() != 200) {
                throw new IllegalStateException("POST answered " + r.statusCode() + " " + r.body());
            }
            if (again) {
                workers = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-Xmx1g", "-jar",
                        jar, "-Dllmbatch.rabbitmq.url=amqp://guest:guest@127.0.0.1:5672/", "-Dllmbatch.queue.tasks=bench_e2e_tasks",
                        "-Dllmbatch.queue.results=bench_e2e_results", "-Dllmbatch.roles=worker,collector", "-Dcamel.server.port=18781",
                        "-Dcamel.management.port=0",
                        "-Dllmbatch.llm.endpoints=http://127.0.0.1:18771;slots=4,http://127.0.0.1:18772;slots=4,http://127.0.0.1:18773;slots=4",
                        "-Dllmbatch.mongodb.uri=" + appMongo, "-Dcamel.main.routesReloadEnabled=false")
                        .redirectErrorStream(true).redirectOutput(Path.of("bench/target/e2e-workers.log").toFile()).start();
            }
            long count;
            while ((count = docs.countDocuments()) < n) {
                Thread.sleep(100);
                if ((System.nanoTime() - t0) / 1e9 > 900) {
                    break;
                }
            }
            double secs = (System.nanoTime() - t0) / 1e9;
            if (again) {
                // bench/skip.sh: the same POST once every result is stored: every task skipped, no LLM call
                long calls = sims.stream().mapToLong(LlmSimulator::posts).sum();
                long t1 = System.nanoTime();
                HttpResponse<String> second = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:18780/send_workq_message/"))
                        .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofByteArray(payload)).build(),
                        HttpResponse.BodyHandlers.ofString());
                double againSecs = (System.nanoTime() - t1) / 1e9;
                Thread.sleep(2000);
                long callsAfter = sims.stream().mapToLong(LlmSimulator::posts).sum();
                System.out.printf("| %d | %d | %.2f s | %.2f s | %s | %d |%n", n, count, postSecs, againSecs,
                        second.body().replace("|", "/"), callsAfter - calls);
                return;
            }
            System.out.printf("| %d | %d | %.2f s | %.2f s | %.0f tasks/s |%n", n, count, postSecs, secs, count / secs);
        } finally {
            app.destroy();
            app.waitFor();
            if (workers != null) {
                workers.destroy();
                workers.waitFor();
            }
            sims.forEach(LlmSimulator::close);
            if (proxy != null) {
                proxy.close();
            }
            Mongo.stop();
        }
    }
}
