package io.llmbatch.cluster;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;

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
 * A GPU host that takes no inbound connection (bench/outbound.sh, as root; not run by {@code mvn verify}): a network
 * namespace {@code t15gpu} joined to this machine by a veth pair (10.203.0.1 here, 10.203.0.2 there), no default
 * route in it, and a firewall (nftables) that drops every packet entering it except replies to connections it opened.
 * Its worker and its LLM simulator run inside; the worker reaches the broker through 10.203.0.1:20431 (a plain TCP
 * relay to the broker on 127.0.0.1). A second worker on this machine shares the job. The test proves the namespace
 * refuses a connection from outside (to a server listening in it) and that its worker completes its share.
 */
@ExtendWith(RabbitMQRequired.class)
class OutboundBench {

    static final String NS = "t15gpu";
    static final String HOST_IP = "10.203.0.1";
    static final String GPU_IP = "10.203.0.2";
    static final int RELAY_PORT = 20431;
    static final int GPU_LLM_PORT = 20432;
    static final int HOST_LLM_PORT = 20433;
    static final int MONGO_PORT = 20434;
    static final int PROBE_PORT = 20435;
    static final int N = Integer.getInteger("outbound.tasks", 2_000);
    static final String TASKS = "t15_outbound_tasks";
    static final String RESULTS = "t15_outbound_results";
    static final Path OUT = Path.of("target/outbound/results.md");

    @Test
    void a_worker_without_an_inbound_route_completes_its_share() throws Exception {
        List<AppProcess> processes = new ArrayList<>();
        List<Process> inside = new ArrayList<>();
        StringBuilder report = new StringBuilder();
        Path mongoDir = Path.of("target/outbound/mongodb");
        FileUtil.removeDir(mongoDir.toFile());
        Files.createDirectories(OUT.getParent());
        Embedded.Running mongo = null;
        try {
            network();
            report.append("namespace ").append(NS).append(": routes `").append(sh("ip", "netns", "exec", NS, "ip", "-4", "route").strip()
                    .replace('\n', ';')).append("`, firewall input policy drop, only established/related and lo accepted\n\n");
            // something listens inside, on the namespace's address: reachable from inside, not from this machine
            inside.add(new ProcessBuilder("ip", "netns", "exec", NS, "python3", "-m", "http.server", Integer.toString(PROBE_PORT),
                    "--bind", GPU_IP).redirectErrorStream(true).redirectOutput(Path.of("target/outbound/probe-server.log").toFile()).start());
            await().atMost(Duration.ofSeconds(20)).ignoreExceptions()
                    .until(() -> sh("ip", "netns", "exec", NS, "python3", "-c", "import socket; socket.create_connection(('" + GPU_IP
                                                                                  + "', " + PROBE_PORT + "), 2); print('inside: connected')").contains("connected"));
            String fromOutside;
            try (Socket s = new Socket()) {
                s.connect(new InetSocketAddress(GPU_IP, PROBE_PORT), 3_000);
                fromOutside = "CONNECTED";
            } catch (IOException e) {
                fromOutside = e.getClass().getSimpleName() + ": " + e.getMessage();
            }
            report.append("- connect from inside the namespace to ").append(GPU_IP).append(':').append(PROBE_PORT).append(": connected\n");
            report.append("- connect from this machine to ").append(GPU_IP).append(':').append(PROBE_PORT).append(": ").append(fromOutside).append('\n');
            assertThat(fromOutside).as("a connection from outside into the namespace").isNotEqualTo("CONNECTED");

            URI broker = URI.create(RabbitMQRequired.URL);
            try (Broker amqp = new Broker().reset(TASKS, RESULTS, TASKS + ".dlq", RESULTS + ".dlq");
                 LatencyProxy relay = LatencyProxy.start(new InetSocketAddress(HOST_IP, RELAY_PORT),
                         new InetSocketAddress(broker.getHost(), broker.getPort() > 0 ? broker.getPort() : 5672), 0, 0, 0);
                 LlmSimulator hostLlm = LlmSimulator.start(HOST_LLM_PORT, 50, 4)) {
                mongo = Embedded.mongo(mongoDir, MONGO_PORT);
                String jar = Path.of("target/llm-batch.jar").toAbsolutePath().toString();
                inside.add(new ProcessBuilder("ip", "netns", "exec", NS, Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                        "-Xmx128m", "-cp", jar, "io.llmbatch.llm.LlmSimulator", "--port", Integer.toString(GPU_LLM_PORT), "--latency-ms", "50",
                        "--slots", "4").redirectErrorStream(true).redirectOutput(Path.of("target/outbound/gpu-llm.log").toFile()).start());
                String[] common = { "llmbatch.queue.tasks=" + TASKS, "llmbatch.queue.results=" + RESULTS,
                                    "llmbatch.queue.tasks-dlq=" + TASKS + ".dlq", "llmbatch.queue.results-dlq=" + RESULTS + ".dlq",
                                    "camel.main.routesReloadEnabled=false" };
                processes.add(AppProcess.startWith(List.of(), Path.of("."), "outbound-collector", Map.of(),
                        concat(common, "llmbatch.rabbitmq.url=" + RabbitMQRequired.URL, "llmbatch.roles=collector",
                                "llmbatch.mongodb.uri=mongodb://127.0.0.1:" + MONGO_PORT, "camel.management.port=20436")));
                processes.add(AppProcess.startWith(List.of(), Path.of("."), "outbound-host-worker", Map.of(),
                        concat(common, "llmbatch.rabbitmq.url=" + RabbitMQRequired.URL, "llmbatch.roles=worker",
                                "llmbatch.llm.endpoints=" + hostLlm.url() + ";slots=4", "camel.management.port=20437")));
                String viaRelay = RabbitMQRequired.URL.replaceFirst("@[^/]+", "@" + HOST_IP + ":" + RELAY_PORT);
                AppProcess gpuWorker = AppProcess.startWith(List.of("ip", "netns", "exec", NS), Path.of("."), "outbound-gpu-worker", Map.of(),
                        concat(common, "llmbatch.rabbitmq.url=" + viaRelay, "llmbatch.roles=worker",
                                "llmbatch.llm.endpoints=http://127.0.0.1:" + GPU_LLM_PORT + ";slots=4", "camel.management.port=20438"));
                processes.add(gpuWorker);
                await().atMost(Duration.ofSeconds(120)).until(() -> amqp.consumers(TASKS) >= 16); // both workers, 8 consumers each
                List<byte[]> bodies = new ArrayList<>(N);
                for (int i = 0; i < N; i++) {
                    bodies.add(("{\"reg_dt\":\"2015-03-02\",\"addr\":\"北京\",\"ent_table_name\":\"出站测试公司" + i + "\"}")
                            .getBytes(StandardCharsets.UTF_8));
                }
                amqp.publishAll(TASKS, bodies);
                try (MongoClient client = MongoClients.create("mongodb://127.0.0.1:" + MONGO_PORT)) {
                    MongoCollection<Document> docs = client.getDatabase("llm").getCollection("company_intro");
                    await().atMost(Duration.ofMinutes(5)).pollInterval(Duration.ofSeconds(1))
                            .until(() -> docs.countDocuments() >= N && amqp.count(TASKS) == 0 && amqp.count(RESULTS) == 0);
                    Thread.sleep(2_000);
                    Map<String, Integer> byBackend = new HashMap<>();
                    Set<String> companies = new HashSet<>();
                    long stored = 0;
                    for (Document d : docs.find()) {
                        stored++;
                        companies.add(d.getString("company"));
                        byBackend.merge(d.getString("backend"), 1, Integer::sum);
                    }
                    int gpuShare = byBackend.getOrDefault("http://127.0.0.1:" + GPU_LLM_PORT, 0);
                    int hostShare = byBackend.getOrDefault(hostLlm.url(), 0);
                    report.append("- ").append(N).append(" tasks: ").append(stored).append(" stored, ").append(N - companies.size())
                            .append(" lost, ").append(stored - companies.size()).append(" stored twice; the namespace's worker did ")
                            .append(gpuShare).append(", the worker on this machine ").append(hostShare).append('\n');
                    report.append("- the namespace's worker connected to the broker through ").append(relay.accepted())
                            .append(" outbound connection(s) to ").append(HOST_IP).append(':').append(RELAY_PORT).append('\n');
                    assertThat(companies).hasSize(N);
                    assertThat(stored).isEqualTo(N);
                    assertThat(gpuShare).as("the worker without an inbound route did its share").isPositive();
                    assertThat(gpuShare + hostShare).isEqualTo(N);
                }
                amqp.reset(TASKS, RESULTS, TASKS + ".dlq", RESULTS + ".dlq");
            }
        } finally {
            for (AppProcess p : processes) {
                p.close();
            }
            for (Process p : inside) {
                p.destroy();
                p.waitFor(10, TimeUnit.SECONDS);
            }
            if (mongo != null) {
                mongo.stop().run();
            }
            removeNetwork();
            Files.writeString(OUT, report.toString());
            System.out.println(report);
        }
    }

    /** The namespace, the veth pair, the addresses and the namespace's firewall. */
    static void network() throws Exception {
        removeNetwork();
        sh("ip", "netns", "add", NS);
        sh("ip", "link", "add", "t15veth0", "type", "veth", "peer", "name", "t15veth1");
        sh("ip", "link", "set", "t15veth1", "netns", NS);
        sh("ip", "addr", "add", HOST_IP + "/24", "dev", "t15veth0");
        sh("ip", "link", "set", "t15veth0", "up");
        sh("ip", "netns", "exec", NS, "ip", "addr", "add", GPU_IP + "/24", "dev", "t15veth1");
        sh("ip", "netns", "exec", NS, "ip", "link", "set", "t15veth1", "up");
        sh("ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up");
        // what a vendor's NAT or firewall does: nothing gets in unless this side opened the connection
        sh("ip", "netns", "exec", NS, "nft", "add table inet t15; add chain inet t15 input { type filter hook input priority 0; policy drop; }; "
                                             + "add rule inet t15 input ct state established,related accept; add rule inet t15 input iifname lo accept");
    }

    static void removeNetwork() throws Exception {
        if (sh("ip", "netns", "list").lines().anyMatch(l -> l.startsWith(NS))) {
            sh("ip", "netns", "del", NS); // takes the veth pair with it
        }
    }

    static String sh(String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!p.waitFor(30, TimeUnit.SECONDS) || p.exitValue() != 0) {
            throw new IllegalStateException(String.join(" ", cmd) + " failed: " + out.strip()
                                            + (cmd[cmd.length - 1].contains("nft") || String.join(" ", cmd).contains(" nft ")
                                                    ? " (nftables: apt-get install -y nftables)" : ""));
        }
        return out;
    }

    static String[] concat(String[] a, String... b) {
        String[] all = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, all, a.length, b.length);
        return all;
    }
}
