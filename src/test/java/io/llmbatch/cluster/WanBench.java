package io.llmbatch.cluster;

import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import com.mongodb.client.MongoCollection;
import org.apache.camel.util.FileUtil;
import org.bson.Document;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.embedded.Embedded;
import io.llmbatch.llm.LlmSimulator;
import io.llmbatch.support.AppProcess;
import io.llmbatch.support.Broker;
import io.llmbatch.support.LatencyProxy;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * GPU hosts across a slow network (bench/wan.sh; not run by {@code mvn verify}, its name does not end in IT): workers
 * whose only way to the broker is a {@link LatencyProxy} (100 ms round trip ± 20 ms, every connection cut once a
 * minute), LLM calls of 2 s on 4 slots per worker, beside the same workers on the local network, every configuration
 * at the same time on the same broker. For each: the share of time the worker's 4 slots had a call in flight while
 * tasks were waiting, LLM calls per task, and the documents stored (every task once). Configurations: {@code before}
 * (the settings as given by -Dwan.before, default none: the shipped defaults) and {@code after} (-Dwan.after), each on
 * the WAN and on the LAN. Rows go to target/wan/results.md.
 */
@ExtendWith(RabbitMQRequired.class)
class WanBench {

    static final int N = Integer.getInteger("wan.tasks", 600);
    static final long LATENCY_MS = Long.getLong("wan.llm-latency", 2_000);
    static final int SLOTS = 4;
    static final long ONE_WAY_MS = Long.getLong("wan.one-way-ms", 50);
    static final long JITTER_MS = Long.getLong("wan.jitter-ms", 10);
    static final long CUT_EVERY_MS = Long.getLong("wan.cut-every-ms", 60_000);
    static final int PROXY_PORT = 20401;
    static final int MONGO_PORT = 20402;
    static final String RESULTS = "t15_wan_results";
    static final Path TABLE = Path.of("target/wan/results.md");

    record Config(String name, boolean wan, List<String> settings) {
        String tasks() {
            return "t15_wan_" + name.replace('-', '_') + "_tasks";
        }
    }

    static List<String> settings(String property) {
        String s = System.getProperty(property, "").trim();
        return s.isEmpty() ? List.of() : Arrays.stream(s.split(";")).map(String::trim).filter(x -> !x.isEmpty()).toList();
    }

    @Test
    void slots_stay_busy_behind_a_slow_network_that_drops_every_minute() throws Exception {
        List<Config> configs = new ArrayList<>();
        for (String side : List.of("before", "after")) {
            List<String> s = settings("wan." + side);
            if (side.equals("after") && !System.getProperties().containsKey("wan.after")) {
                continue; // nothing to compare
            }
            configs.add(new Config(side + "-wan", true, s));
            configs.add(new Config(side + "-lan", false, s));
        }
        URI broker = URI.create(RabbitMQRequired.URL);
        Path mongoDir = Path.of("target/wan/mongodb");
        FileUtil.removeDir(mongoDir.toFile());
        Files.createDirectories(TABLE.getParent());
        List<AppProcess> processes = new ArrayList<>();
        List<LlmSimulator> sims = new ArrayList<>();
        Embedded.Running mongo = Embedded.mongo(mongoDir, MONGO_PORT);
        try (Broker amqp = new Broker(); MongoClient client = MongoClients.create("mongodb://127.0.0.1:" + MONGO_PORT);
             LatencyProxy proxy = LatencyProxy.start(new InetSocketAddress("127.0.0.1", PROXY_PORT),
                     new InetSocketAddress(broker.getHost(), broker.getPort() > 0 ? broker.getPort() : 5672), ONE_WAY_MS, JITTER_MS,
                     CUT_EVERY_MS)) {
            for (Config c : configs) {
                amqp.reset(c.tasks(), c.tasks() + ".dlq");
            }
            amqp.reset(RESULTS, RESULTS + ".dlq");
            MongoCollection<Document> docs = client.getDatabase("llm").getCollection("company_intro");
            String viaProxy = RabbitMQRequired.URL.replaceFirst("@[^/]+", "@127.0.0.1:" + proxy.port());
            processes.add(AppProcess.startWithEnvironment("wan-collector", Map.of(), "llmbatch.rabbitmq.url=" + RabbitMQRequired.URL,
                    "llmbatch.roles=collector", "llmbatch.queue.results=" + RESULTS, "llmbatch.queue.results-dlq=" + RESULTS + ".dlq",
                    "llmbatch.mongodb.uri=mongodb://127.0.0.1:" + MONGO_PORT, "camel.management.port=20403",
                    "camel.main.routesReloadEnabled=false"));
            for (int i = 0; i < configs.size(); i++) {
                Config c = configs.get(i);
                LlmSimulator sim = LlmSimulator.start(20411 + i, LATENCY_MS, SLOTS);
                sims.add(sim);
                List<String> props = new ArrayList<>(List.of("llmbatch.rabbitmq.url=" + (c.wan() ? viaProxy : RabbitMQRequired.URL),
                        "llmbatch.roles=worker", "llmbatch.queue.tasks=" + c.tasks(), "llmbatch.queue.results=" + RESULTS,
                        "llmbatch.queue.tasks-dlq=" + c.tasks() + ".dlq", "llmbatch.llm.endpoints=" + sim.url() + ";slots=" + SLOTS,
                        "camel.management.port=" + (20421 + i), "camel.main.routesReloadEnabled=false"));
                props.addAll(c.settings());
                processes.add(AppProcess.startWithEnvironment("wan-worker-" + c.name(), Map.of(), props.toArray(String[]::new)));
            }
            for (Config c : configs) {
                await().atMost(Duration.ofSeconds(120)).until(() -> amqp.consumers(c.tasks()) > 0);
            }
            for (Config c : configs) {
                List<byte[]> bodies = new ArrayList<>(N);
                for (int t = 0; t < N; t++) {
                    bodies.add(("{\"reg_dt\":\"2015-03-02\",\"addr\":\"北京\",\"ent_table_name\":\"" + c.name() + "-广域网测试公司" + t + "\"}")
                            .getBytes(StandardCharsets.UTF_8));
                }
                amqp.publishAll(c.tasks(), bodies);
            }
            // the window: from 10 s in (the first calls under way) until a configuration's queue has no task waiting
            Thread.sleep(10_000);
            long start = System.nanoTime();
            Map<String, long[]> window = new LinkedHashMap<>(); // busy at start, busy at end, end time
            for (int i = 0; i < configs.size(); i++) {
                window.put(configs.get(i).name(), new long[] { sims.get(i).busyMillis(), -1, -1 });
            }
            long cutsAtStart = proxy.cuts();
            await().atMost(Duration.ofSeconds(N * LATENCY_MS / SLOTS / 1000 * 3 + 120)).pollInterval(Duration.ofMillis(250)).until(() -> {
                for (int i = 0; i < configs.size(); i++) {
                    long[] w = window.get(configs.get(i).name());
                    if (w[2] < 0 && amqp.count(configs.get(i).tasks()) == 0) {
                        w[1] = sims.get(i).busyMillis();
                        w[2] = System.nanoTime();
                    }
                }
                return window.values().stream().allMatch(w -> w[2] > 0);
            });
            long cutsInWindow = proxy.cuts() - cutsAtStart;
            await().atMost(Duration.ofMinutes(5)).pollInterval(Duration.ofSeconds(1))
                    .until(() -> docs.countDocuments() >= (long) N * configs.size() && amqp.count(RESULTS) == 0);
            Thread.sleep(3_000);
            if (!Files.exists(TABLE)) {
                Files.writeString(TABLE, "| configuration | network | settings | tasks | stored | lost | stored twice | LLM calls | redone | "
                                         + "window | cuts in window | slot utilisation | useful (redone calls left out) |\n"
                                         + "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
            }
            List<String> failures = new ArrayList<>();
            for (int i = 0; i < configs.size(); i++) {
                Config c = configs.get(i);
                LlmSimulator sim = sims.get(i);
                Set<String> companies = new HashSet<>();
                long stored = 0;
                for (Document d : docs.find(new Document("company", new Document("$regex", "^" + c.name() + "-")))
                        .projection(new Document("company", 1))) {
                    companies.add(d.getString("company"));
                    stored++;
                }
                long calls = sim.servedPerPrompt().values().stream().mapToLong(Long::longValue).sum();
                long redone = calls - sim.servedPerPrompt().size();
                long[] w = window.get(c.name());
                double seconds = (w[2] - start) / 1e9;
                double utilisation = (w[1] - w[0]) / (SLOTS * seconds * 1000);
                double useful = utilisation * (1 - (double) redone / calls);
                Files.writeString(TABLE, String.format("| %s | %s | %s | %d | %d | %d | %d | %d | %d | %.0f s | %s | %.1f%% | %.1f%% |%n",
                        c.name(), c.wan() ? String.format("WAN (%d ms RTT ± %d, cut every %d s)", 2 * ONE_WAY_MS, 2 * JITTER_MS,
                                CUT_EVERY_MS / 1000) : "LAN", c.settings().isEmpty() ? "defaults" : String.join(" ", c.settings()), N,
                        stored, N - companies.size(), stored - companies.size(), calls, redone, seconds,
                        c.wan() ? Long.toString(cutsInWindow) : "-", 100 * utilisation, 100 * useful), StandardOpenOption.APPEND);
                if (companies.size() != N || stored != companies.size()) {
                    failures.add(c.name() + ": " + companies.size() + " of " + N + " stored, " + (stored - companies.size()) + " twice");
                }
            }
            assertThat(failures).as("every task stored exactly once").isEmpty();
            for (Config c : configs) {
                amqp.reset(c.tasks(), c.tasks() + ".dlq");
            }
            amqp.reset(RESULTS, RESULTS + ".dlq");
        } finally {
            for (AppProcess p : processes) {
                p.close();
            }
            sims.forEach(LlmSimulator::close);
            mongo.stop().run();
        }
    }
}
