package io.llmbatch.faults;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import com.mongodb.client.MongoCollection;
import com.rabbitmq.client.GetResponse;
import org.apache.camel.util.FileUtil;
import org.bson.Document;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.llm.LlmSimulator;
import io.llmbatch.support.AppProcess;
import io.llmbatch.support.Broker;
import io.llmbatch.support.Http;
import io.llmbatch.support.CountingMongo;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * The fault suite: each scenario runs {@code faults.tasks} (default 10,000) seed-format tasks through a worker and a
 * collector running as separate processes of target/llm-batch.jar, with three LLM simulators and a MongoDB-wire
 * server in this JVM, injects its fault mid-run, and ends by counting: documents (= distinct tasks, none lost), dead
 * letters (only the poison sent on purpose), and the work done twice, which the unique pid index hides but which costs
 * GPU time: LLM completions beyond one per task (the simulators count them per prompt), results written beyond one per
 * task (the MongoDB server counts upserts per pid), and tasks the broker delivered again. Every scenario appends a row
 * to target/faults/results.md. {@code -Dfaults=all} runs every scenario (bench/faults.sh); the default, run by CI on
 * every change, is kill-worker, kill-collector and poison. {@code -Dfaults.queue-type=quorum} repeats them on
 * quorum queues; llm-all-down-quorum always runs on quorum queues.
 */
@ExtendWith(RabbitMQRequired.class)
class FaultSuiteIT {

    static final List<String> ALL = List.of("kill-worker", "kill-collector", "broker-restart", "mongo-down", "llm-hang",
                                            "llm-500", "llm-all-down", "llm-all-down-quorum", "poison", "consumer-timeout");
    /** llm-all-down-quorum: every backend gone this long, longer than the worker's hold, so the worker pauses. */
    static final int LONG_OUTAGE_SECONDS = Integer.getInteger("faults.long-outage-seconds", 150);
    /** consumer-timeout: LLM calls of 8 s, so 10,000 tasks would take two hours; this many show the same. */
    static final int LONG_CALL_TASKS = Integer.getInteger("faults.long-call-tasks", 150);
    static final int N = Integer.getInteger("faults.tasks", 10_000);
    static final String QUEUE_TYPE = System.getProperty("faults.queue-type", "classic");
    static final int MONGO_PORT = 18901;
    static final int[] LLM_PORTS = { 18911, 18912, 18913 };
    static final Path RESULTS_TABLE = Path.of("target/faults/results.md");

    @TestFactory
    Stream<DynamicTest> scenarios() throws IOException {
        String chosen = System.getProperty("faults", "kill-worker,kill-collector,poison");
        List<String> names = "all".equals(chosen) ? ALL : Arrays.stream(chosen.split(",")).map(String::trim).toList();
        assertThat(ALL).as("known scenarios").containsAll(names);
        Files.createDirectories(RESULTS_TABLE.getParent());
        if (!Files.exists(RESULTS_TABLE)) {
            Files.writeString(RESULTS_TABLE, "| scenario | queues | tasks | stored | lost | LLM calls | completions redone | "
                                             + "results rewritten | tasks redelivered | DLQ (poison sent) | recovery |\n"
                                             + "|---|---|---|---|---|---|---|---|---|---|---|\n");
        }
        return names.stream().map(name -> DynamicTest.dynamicTest(name, () -> {
            try (Run run = new Run(name)) {
                run.execute();
            } catch (Throwable failed) { // a scenario that fails before counting still gets its row
                String why = String.valueOf(failed.getMessage()).lines().map(String::trim).filter(l -> !l.isEmpty())
                        .reduce((a, b) -> a + " " + b).orElse(failed.getClass().getSimpleName()).replace('|', '/');
                Files.writeString(RESULTS_TABLE, String.format("| %s | %s | FAILED: %s ||||||||| %n", name, QUEUE_TYPE,
                        why.length() > 300 ? why.substring(0, 300) + "..." : why), StandardOpenOption.APPEND);
                throw failed;
            }
        }));
    }

    /** One scenario: its own queues, a fresh MongoDB, three simulators, a collector and a worker. */
    static final class Run implements AutoCloseable {

        final String name;
        final String tasks;
        final String results;
        final Broker broker;
        final MongoClient mongoClient;
        final MongoCollection<Document> docs;
        final List<LlmSimulator> sims = new ArrayList<>();
        /** Completions and calls of simulators already closed (llm-all-down restarts them). */
        final java.util.Map<String, Long> servedBefore = new java.util.HashMap<>();
        long postsBefore;
        final Path mongoDir;
        final String queueType;
        CountingMongo mongo;
        final List<AppProcess> processes = new ArrayList<>();
        final String[] common;
        final int n;
        int poisonSent;
        int heldBatch;
        String recovery = "-";

        Run(String name) throws Exception {
            this.name = name;
            this.n = name.equals("consumer-timeout") ? LONG_CALL_TASKS : N;
            this.queueType = name.equals("llm-all-down-quorum") ? "quorum" : QUEUE_TYPE;
            String prefix = "faults_" + name.replace('-', '_');
            tasks = prefix + "_tasks";
            results = prefix + "_results";
            broker = new Broker().reset(tasks, results, tasks + ".dlq", results + ".dlq");
            mongoDir = Path.of("target/faults", name + "-mongodb");
            FileUtil.removeDir(mongoDir.toFile());
            CountingMongo.reset();
            mongo = CountingMongo.start(mongoDir, MONGO_PORT); // H2 file: the data survives the server's restart
            mongoClient = MongoClients.create("mongodb://127.0.0.1:" + MONGO_PORT);
            docs = mongoClient.getDatabase("llm").getCollection("company_intro");
            startSimulators();
            List<String> endpoints = Arrays.stream(LLM_PORTS).mapToObj(p -> "http://127.0.0.1:" + p + ";slots=4").toList();
            common = new String[] { "llmbatch.queue.tasks=" + tasks, "llmbatch.queue.results=" + results,
                                    "llmbatch.queue.tasks-dlq=" + tasks + ".dlq", "llmbatch.queue.results-dlq=" + results + ".dlq",
                                    "llmbatch.queue.type=" + queueType, "llmbatch.mongodb.uri=mongodb://127.0.0.1:" + MONGO_PORT,
                                    "llmbatch.llm.endpoints=" + String.join(",", endpoints), "llmbatch.llm.response-timeout=5000",
                                    "llmbatch.llm.cooldown=2000", "llmbatch.llm.probe-interval=1000",
                                    "camel.main.routesReloadEnabled=false" };
        }

        void startSimulators() throws IOException {
            for (int port : LLM_PORTS) {
                sims.add(LlmSimulator.start(port, 20, 4));
            }
        }

        AppProcess start(String role, int n, String... more) throws IOException {
            String[] props = Arrays.copyOf(common, common.length + 1 + more.length);
            props[common.length] = "llmbatch.roles=" + role;
            System.arraycopy(more, 0, props, common.length + 1, more.length);
            AppProcess p = AppProcess.start("faults-" + name + "-" + role + "-" + n, props);
            processes.add(p);
            return p;
        }

        void execute() throws Exception {
            if (name.equals("consumer-timeout")) {
                // the broker gives up on a delivery unacknowledged for 5 s (checked about once a minute), while
                // every LLM call takes 8 s: channels are closed under the worker, tasks redelivered mid-call
                rabbitmqctl("eval", "application:set_env(rabbit, consumer_timeout, 5000).");
                sims.forEach(sim -> sim.latencyMs(8_000));
            }
            // the queues exist before anything is published to them (declared as the app declares them)
            AppProcess collector = start("collector", 1);
            AppProcess worker = name.equals("consumer-timeout")
                    ? start("worker", 1, "llmbatch.rabbitmq.consumer-timeout=5000", "llmbatch.llm.response-timeout=30000")
                    : name.equals("llm-all-down-quorum") ? start("worker", 1, "llmbatch.llm.hold=30000") : start("worker", 1);
            await().atMost(Duration.ofSeconds(60)).until(() -> logged(collector, "Routes startup") && logged(worker, "Routes startup"));
            if (name.equals("poison")) {
                publishPoison();
            }
            publishTasks();
            switch (name) {
                case "kill-worker" -> {
                    awaitStored(n / 5);
                    worker.kill9();
                    long at = System.nanoTime();
                    start("worker", 2, "camel.management.port=18930");
                    // the results the dead worker had published still reach MongoDB: time the new worker's first answer
                    await().atMost(Duration.ofMinutes(2)).pollInterval(Duration.ofMillis(100)).ignoreExceptions()
                            .until(() -> Http.get(18930, "/observe/metrics").body().contains("outcome=\"ok\""));
                    recovery = String.format("%.1f s (kill -9 to the first LLM answer of the worker started in its place)",
                            (System.nanoTime() - at) / 1e9);
                }
                case "kill-collector" -> {
                    awaitStored(n / 5);
                    // the next bulk write is applied and its answer held: the kill lands after MongoDB stored the batch
                    // and before the collector acknowledged any of it, so the whole batch comes back and is written again
                    CountingMongo.Hold hold = CountingMongo.holdNextWrite(5_000);
                    heldBatch = hold.awaitApplied(60);
                    collector.kill9();
                    long at = System.nanoTime();
                    start("collector", 2);
                    recovery = storingAgainAfter(at) + " (kill -9 to the first batch of the restarted collector)";
                }
                case "broker-restart" -> {
                    // an ingest node too, so that every role has to find the broker again
                    String[] ingest = Arrays.copyOf(common, common.length + 3);
                    ingest[common.length] = "llmbatch.roles=ingest";
                    ingest[common.length + 1] = "camel.server.port=18921";
                    ingest[common.length + 2] = "camel.management.port=18920";
                    processes.add(AppProcess.start("faults-" + name + "-ingest", ingest));
                    await().atMost(Duration.ofSeconds(60)).ignoreExceptions()
                            .until(() -> Http.get(18920, "/observe/health/ready").status() == 200);
                    awaitStored(n / 5);
                    rabbitmqctl("stop_app");
                    Thread.sleep(5_000);
                    assertThat(Http.get(18920, "/observe/health/ready").status()).as("not ready without a broker").isEqualTo(503);
                    long before = docs.countDocuments();
                    rabbitmqctl("start_app");
                    long at = System.nanoTime();
                    // each role on its own, timed from start_app: the worker and the collector consuming again (their
                    // consumers back on the queues), results stored again, the ingest node ready again
                    java.util.Map<String, Double> back = new java.util.LinkedHashMap<>();
                    while (back.size() < 4 && System.nanoTime() - at < 90_000_000_000L) {
                        double s = (System.nanoTime() - at) / 1e9;
                        if (!back.containsKey("worker consuming") && broker.consumers(tasks) > 0) {
                            back.put("worker consuming", s);
                        }
                        if (!back.containsKey("collector consuming") && broker.consumers(results) > 0) {
                            back.put("collector consuming", s);
                        }
                        if (!back.containsKey("results stored") && docs.countDocuments() > before) {
                            back.put("results stored", s);
                        }
                        if (!back.containsKey("ingest ready") && ready(18920)) {
                            back.put("ingest ready", s);
                        }
                        Thread.sleep(100);
                    }
                    recovery = "after start_app (broker down 5 s): " + String.join(", ", back.entrySet().stream()
                            .map(e -> String.format("%s %.1f s", e.getKey(), e.getValue())).toList());
                    assertThat(back).as("every role back by itself within 15 s of start_app").hasSize(4)
                            .allSatisfy((what, seconds) -> assertThat(seconds).as(what).isLessThanOrEqualTo(15.0));
                }
                case "mongo-down" -> {
                    awaitStored(n / 5);
                    mongo.close();
                    Thread.sleep(30_000);
                    mongo = CountingMongo.start(mongoDir, MONGO_PORT);
                    long at = System.nanoTime();
                    recovery = storingAgainAfter(at) + " (MongoDB back after 30 s down, to results stored again)";
                }
                case "llm-hang" -> {
                    sims.get(0).hangRate(1.0); // never answers; the response timeout (5 s) sends the task elsewhere
                    recovery = "no outage: the hung backend cools down, the other two carry on";
                }
                case "llm-500" -> {
                    sims.get(1).failRate(1.0);
                    recovery = "no outage: the failing backend cools down, the other two carry on";
                }
                case "llm-all-down", "llm-all-down-quorum" -> {
                    int seconds = name.equals("llm-all-down") ? 60 : LONG_OUTAGE_SECONDS;
                    awaitStored(n / 5);
                    closeSimulators();
                    Thread.sleep(seconds * 1000L);
                    startSimulators();
                    long at = System.nanoTime();
                    recovery = storingAgainAfter(at) + " (backends back after " + seconds + " s down"
                               + (name.equals("llm-all-down") ? ", shorter than the worker's hold of 300 s"
                                  : ", longer than the worker's hold of 30 s: it paused") + ", to results stored again)";
                }
                case "consumer-timeout" -> {
                    assertThat(Files.readString(worker.log())).as("the worker warns at start")
                            .contains("longer than the broker's consumer_timeout");
                    await().atMost(Duration.ofMinutes(3)).until(() -> logged(worker, "delivery acknowledgement on channel"));
                    recovery = "calls of 8 s under a 5 s consumer_timeout: the broker closed the worker's channels";
                }
                default -> {
                }
            }
            await().atMost(Duration.ofMinutes(8)).pollInterval(Duration.ofMillis(500))
                    .until(() -> docs.countDocuments() >= n && broker.count(tasks) == 0 && broker.count(results) == 0);
            Thread.sleep(2_000); // anything still arriving (a duplicate) would show now
            long stored = docs.countDocuments();
            Set<String> companies = new HashSet<>();
            long redelivered = 0;
            for (Document d : docs.find().projection(new Document("company", 1).append("redelivered", 1).append("delivery_count", 1))) {
                companies.add(d.getString("company"));
                // quorum queues count deliveries; classic ones only flag a task delivered before
                redelivered += d.get("delivery_count") instanceof Number c ? c.longValue() : Boolean.TRUE.equals(d.get("redelivered")) ? 1 : 0;
            }
            long lost = n - companies.stream().filter(c -> c.startsWith("故障测试公司")).count();
            long dead = broker.count(tasks + ".dlq") + broker.count(results + ".dlq");
            Map<String, Long> served = new java.util.HashMap<>(servedBefore);
            long posts = postsBefore;
            for (LlmSimulator sim : sims) {
                sim.servedPerPrompt().forEach((prompt, count) -> served.merge(prompt, count, Long::sum));
                posts += sim.posts();
            }
            served.remove("ping"); // the probes of backends coming back (LlmBackends.probeRequest), not a task
            long redone = served.values().stream().mapToLong(c -> Math.max(0, c - 1)).sum();
            long rewritten = CountingMongo.writesBeyondFirst();
            if (name.equals("consumer-timeout")) {
                long closed = Files.readString(processes.get(1).log()).lines()
                        .filter(l -> l.contains("delivery acknowledgement on channel")).count();
                recovery += " " + closed + " time(s), their tasks redelivered and done again; none lost, none stored twice";
            }
            if (name.equals("kill-collector")) {
                recovery += "; killed while a batch of " + heldBatch + " was written and not acknowledged";
            }
            Files.writeString(RESULTS_TABLE, String.format("| %s | %s | %,d | %,d | %d | %,d | %,d | %,d | %,d | %d (%d) | %s |%n", name,
                    queueType, n, stored, lost, posts, redone, rewritten, redelivered, dead, poisonSent, recovery), StandardOpenOption.APPEND);
            assertThat(lost).as(name + ": lost").isZero();
            assertThat(stored).as(name + ": documents").isEqualTo(n);
            assertThat(dead).as(name + ": dead letters (only the poison sent)").isEqualTo(poisonSent);
            if (name.equals("kill-collector")) {
                assertThat(rewritten).as("the batch written but not acknowledged is written again").isGreaterThanOrEqualTo(heldBatch);
            }
            if (name.equals("llm-all-down") || name.equals("llm-hang") || name.equals("llm-500") || name.equals("poison")) {
                assertThat(redelivered).as(name + ": no task goes back to the queue").isZero();
                assertThat(redone).as(name + ": no completion made twice").isZero();
            }
            if (name.equals("llm-all-down-quorum")) {
                // the outage outlasts the hold: each task the worker held or had prefetched goes back once, no more
                long held = 2L * 12 * 3; // concurrency (twice 12 slots) x prefetch 3
                assertThat(redelivered).as("returns stay near zero, whatever the outage's length").isLessThanOrEqualTo(held);
                assertThat(redone).isZero();
            }
            if (poisonSent > 0) {
                List<String> reasons = new ArrayList<>();
                for (GetResponse r : broker.drain(tasks + ".dlq")) {
                    reasons.add(String.valueOf(r.getProps().getHeaders().get("x-llmbatch-reason")));
                }
                assertThat(reasons).hasSize(poisonSent).allMatch(r -> !r.isBlank() && !"null".equals(r));
            }
        }

        void closeSimulators() {
            for (LlmSimulator sim : sims) {
                sim.close(); // first: an answer still being written when the counts are read would be missed
                sim.servedPerPrompt().forEach((prompt, count) -> servedBefore.merge(prompt, count, Long::sum));
                postsBefore += sim.posts();
            }
            sims.clear();
        }

        void publishTasks() throws Exception {
            List<byte[]> bodies = new ArrayList<>(n);
            for (int i = 0; i < n; i++) {
                bodies.add(("{\"reg_dt\":\"2015-03-02\",\"addr\":\"北京市海淀区\",\"ent_table_name\":\"故障测试公司" + i + "\"}")
                        .getBytes(StandardCharsets.UTF_8));
            }
            broker.publishAll(tasks, bodies);
        }

        /** What a careless producer sends: each must end in the dead-letter queue with a reason, once. */
        void publishPoison() throws Exception {
            List<byte[]> poison = new ArrayList<>();
            poison.add("{\"reg_dt\": \"2020-01-01\", \"addr\": ".getBytes(StandardCharsets.UTF_8)); // invalid JSON
            poison.add("{\"reg_dt\": 20200101, \"addr\": [\"x\"], \"ent_table_name\": \"类型错误\"}".getBytes(StandardCharsets.UTF_8));
            poison.add(("{\"reg_dt\":\"2020-01-01\",\"addr\":\"" + "很".repeat(10 * 1024 * 1024 / 3) + "\",\"ent_table_name\":\"十兆\"}")
                    .getBytes(StandardCharsets.UTF_8)); // 10 MB
            byte[] utf8 = "{\"reg_dt\":\"2020-01-01\",\"addr\":\"XX\",\"ent_table_name\":\"编码\"}".getBytes(StandardCharsets.UTF_8);
            int at = new String(utf8, StandardCharsets.UTF_8).indexOf("XX");
            utf8[at] = (byte) 0xff;
            utf8[at + 1] = (byte) 0xfe;
            poison.add(utf8); // invalid UTF-8
            poison.add("{\"ent_table_name\": \"缺字段\"}".getBytes(StandardCharsets.UTF_8)); // missing fields
            StringBuilder list = new StringBuilder("{\"rabbit\":\"rabbit01\",\"queue\":\"ent_intro_task\",\"message_list\":[");
            for (int i = 0; i < 100_000; i++) {
                list.append(i == 0 ? "" : ",").append("{\"reg_dt\":\"2015-03-02\",\"addr\":\"北京\",\"ent_table_name\":\"列表").append(i).append("\"}");
            }
            poison.add(list.append("]}").toString().getBytes(StandardCharsets.UTF_8)); // a whole 100,000-element payload as one task
            broker.publishAll(tasks, poison);
            poisonSent = poison.size();
        }

        /** Waits until {@code atLeast} documents are stored, and checks that the run is not over yet. */
        void awaitStored(long atLeast) {
            await().atMost(Duration.ofMinutes(2)).pollInterval(Duration.ofMillis(50)).until(() -> docs.countDocuments() >= atLeast);
            assertThat(docs.countDocuments()).as("the fault must land mid-run for the scenario to mean anything").isLessThan(n);
        }

        /** Seconds from {@code since} until the count of documents grows again. */
        String storingAgainAfter(long since) {
            long before = docs.countDocuments();
            await().atMost(Duration.ofMinutes(3)).pollInterval(Duration.ofMillis(100)).ignoreExceptions()
                    .until(() -> docs.countDocuments() > before);
            return String.format("%.1f s", (System.nanoTime() - since) / 1e9);
        }

        static boolean ready(int managementPort) {
            try {
                return Http.get(managementPort, "/observe/health/ready").status() == 200;
            } catch (Exception e) {
                return false;
            }
        }

        static boolean logged(AppProcess p, String text) throws IOException {
            return Files.readString(p.log()).contains(text);
        }

        static void rabbitmqctl(String... command) throws Exception {
            List<String> cmd = new ArrayList<>(List.of("rabbitmqctl"));
            cmd.addAll(List.of(command));
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            assertThat(p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0).as(cmd + ": " + out).isTrue();
        }

        @Override
        public void close() throws Exception {
            if (name.equals("consumer-timeout")) {
                rabbitmqctl("eval", "application:set_env(rabbit, consumer_timeout, 1800000)."); // RabbitMQ's default
            }
            for (AppProcess p : processes) {
                p.close();
            }
            sims.forEach(LlmSimulator::close);
            mongoClient.close();
            broker.reset(tasks, results, tasks + ".dlq", results + ".dlq");
            broker.close();
            mongo.close();
        }
    }
}
