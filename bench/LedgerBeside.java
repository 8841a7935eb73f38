import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;

import io.llmbatch.ingest.Tasks;
import io.llmbatch.jobs.JobDefinition;
import io.llmbatch.jobs.JobStore;
import io.llmbatch.jobs.Jobs;
import io.llmbatch.support.Mongo;

/**
 * bench/skip.sh (a2): what publishing N messages costs on this machine when the MongoDB work of a POST with the jobs
 * ledger runs beside it, the yardstick for (b) on a machine whose MongoDB shares the cores. RabbitMQ PerfTest (the same
 * command as (a)) runs as a child process while this JVM does, on a fresh mongo-java-server of its own, the MongoDB work
 * of (b): the skip lookup of the N tasks' pids (nothing stored) and the ledger's N upserts, through llm-batch's own
 * JobStore. The tasks are rendered before the clock starts. Prints "| wall s | PerfTest s | MongoDB work s |".
 *
 * usage: java -cp test-classes:classes:deps bench/LedgerBeside.java payload.json N perftest-classpath amqp-uri queue
 */
public class LedgerBeside {
    public static void main(String[] args) throws Exception {
        Path payload = Path.of(args[0]);
        int n = Integer.parseInt(args[1]);
        int port = 18766;
        Mongo.reset(port);
        Jobs jobs = new Jobs(Path.of("jobs"), "company_intro", "chatglm2_6b_int4");
        JobDefinition job = jobs.defaultJob();
        List<Jobs.Rendered> tasks = new ArrayList<>(n);
        for (JsonNode t : Tasks.JSON.readTree(Files.readAllBytes(payload)).get("message_list")) {
            tasks.add(jobs.render(job, (ObjectNode) t));
        }
        try (MongoClient client = MongoClients.create("mongodb://127.0.0.1:" + port)) {
            JobStore store = new JobStore(client.getDatabase("llm"));
            client.getDatabase("llm").runCommand(new org.bson.Document("ping", 1));
            long t0 = System.nanoTime();
            Process perfTest = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-cp", args[2],
                    "com.rabbitmq.perf.PerfTest", "-h", args[3], "-u", args[4], "-ad", "false", "-f", "persistent", "-c", "1000",
                    "-s", "1000", "-x", "1", "-y", "0", "-C", String.valueOf(n))
                    .redirectErrorStream(true).redirectOutput(Path.of("bench/target/skip-perftest-beside.log").toFile()).start();
            java.util.concurrent.CompletableFuture<Long> perfTestEnd = perfTest.onExit().thenApply(p -> System.nanoTime());
            long m0 = System.nanoTime();
            JobStore.Admission admission = store.decide(job, tasks, false); // the skip lookup
            store.enter(admission); // the ledger's upserts
            double mongoSecs = (System.nanoTime() - m0) / 1e9;
            if (admission.publish().size() != n) {
                throw new IllegalStateException("expected nothing stored, " + (n - admission.publish().size()) + " skipped");
            }
            int exit = perfTest.waitFor();
            double perfTestSecs = (perfTestEnd.get() - t0) / 1e9;
            if (exit != 0) {
                throw new IllegalStateException("PerfTest exited with " + exit + " (bench/target/skip-perftest-beside.log)");
            }
            System.out.printf("| %.2f | %.2f | %.2f |%n", (System.nanoTime() - t0) / 1e9, perfTestSecs, mongoSecs);
        } finally {
            Mongo.stop();
        }
    }
}
