package io.llmbatch.support;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.IntStream;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

/**
 * Three nodes of the installed RabbitMQ, clustered, beside the machine's own broker (which is never touched):
 * each node has its own name ({@code <prefix>1@localhost} ...), AMQP port, distribution port, config file and data
 * directories under {@code dir}, owned by the {@code rabbitmq} user (the server script drops to it). Needs root or
 * the rabbitmq user, as {@code rabbitmqctl} does. {@link #close()} stops every node and removes the directories;
 * a shutdown hook does the same if the JVM is ended first.
 */
public final class RabbitCluster implements AutoCloseable {

    private static final ObjectMapper JSON = new ObjectMapper();

    private final String prefix;
    private final int firstAmqpPort;
    private final int firstDistPort;
    private final Path dir;
    private final int size;
    private final Thread hook = new Thread(this::stopAllQuietly, "rabbit-cluster-stop");

    /**
     * @param prefix        node names: {@code <prefix>1@localhost} ...
     * @param firstAmqpPort AMQP port of node 1 (node i listens on firstAmqpPort + i - 1, on 127.0.0.1)
     * @param firstDistPort Erlang distribution port of node 1, likewise
     */
    public RabbitCluster(String prefix, int size, int firstAmqpPort, int firstDistPort, Path dir) {
        this.prefix = prefix;
        this.size = size;
        this.firstAmqpPort = firstAmqpPort;
        this.firstDistPort = firstDistPort;
        this.dir = dir.toAbsolutePath();
    }

    /** Starts every node, joins nodes 2.. to node 1, and waits until the cluster lists them all as running. */
    public RabbitCluster start() throws Exception {
        stopAllQuietly(); // leftovers of a run that was killed
        deleteDir();
        Runtime.getRuntime().addShutdownHook(hook);
        for (int i = 1; i <= size; i++) {
            Path d = nodeDir(i);
            Files.createDirectories(d.resolve("mnesia"));
            Files.createDirectories(d.resolve("log"));
            Files.createDirectories(d.resolve("plugins-expand"));
            // the machine's rabbitmq.conf pins 127.0.0.1:5672 (the shared broker): each node gets its own file
            Files.writeString(d.resolve("rabbitmq.conf"), "listeners.tcp.local = 127.0.0.1:" + amqpPort(i) + "\n"
                                                          + "loopback_users = none\n");
            Files.writeString(d.resolve("enabled_plugins"), "[].\n");
        }
        run(Duration.ofSeconds(30), "chown", "-R", "rabbitmq:rabbitmq", dir.toString());
        for (int i = 1; i <= size; i++) {
            startNode(i, false);
        }
        for (int i = 1; i <= size; i++) {
            awaitNode(i);
        }
        for (int i = 2; i <= size; i++) {
            ctl(i, "stop_app");
            ctl(i, "join_cluster", node(1));
            ctl(i, "start_app");
        }
        for (int i = 1; i <= size; i++) {
            awaitNode(i);
        }
        return this;
    }

    public String node(int i) {
        return prefix + i + "@localhost";
    }

    public int amqpPort(int i) {
        return firstAmqpPort + i - 1;
    }

    public int size() {
        return size;
    }

    /** Node number (1..size) whose AMQP port is {@code port}, or -1. */
    public int nodeOfPort(int port) {
        return IntStream.rangeClosed(1, size).filter(i -> amqpPort(i) == port).findFirst().orElse(-1);
    }

    /** Node number of a node name, or -1. */
    public int nodeNumber(String nodeName) {
        return IntStream.rangeClosed(1, size).filter(i -> node(i).equals(nodeName)).findFirst().orElse(-1);
    }

    /** The URL list of every node, as {@code llmbatch.rabbitmq.url} takes it. */
    public String url() {
        return IntStream.rangeClosed(1, size).mapToObj(i -> "amqp://guest:guest@127.0.0.1:" + amqpPort(i) + "/")
                .collect(Collectors.joining(","));
    }

    /** One node's URL. */
    public String url(int i) {
        return "amqp://guest:guest@127.0.0.1:" + amqpPort(i) + "/";
    }

    /** {@code kill -9} of the node's Erlang VM: no goodbye to its peers or clients. */
    public void kill9(int i) throws Exception {
        String pid = ownPid(i);
        if (pid == null) {
            throw new IllegalStateException(node(i) + " is not running");
        }
        run(Duration.ofSeconds(10), "kill", "-9", pid);
        for (int t = 0; t < 100 && listening(amqpPort(i)); t++) {
            Thread.sleep(100);
        }
    }

    /** Graceful stop of the node ({@code rabbitmqctl stop}): its clients are told the connection is closing. */
    public void stop(int i) throws Exception {
        ctl(i, "stop");
    }

    /** Starts a node again with its data (it rejoins the cluster) and waits until it runs. */
    public void restart(int i) throws Exception {
        startNode(i, true);
        awaitNode(i);
    }

    /** The node leading a quorum queue now, asked of a running node; null while there is none. */
    public String leader(String queue) throws Exception {
        JsonNode q = queueInfo(queue, "leader");
        String leader = q == null ? "" : q.path("leader").asText("");
        return leader.isEmpty() ? null : leader;
    }

    /** Members of a quorum queue that are online now, asked of a running node (empty when none answers). */
    public List<String> online(String queue) throws Exception {
        JsonNode q = queueInfo(queue, "online");
        List<String> nodes = new ArrayList<>();
        if (q != null) {
            q.path("online").forEach(n -> nodes.add(n.asText()));
        }
        return nodes;
    }

    /**
     * Unacknowledged deliveries per client connection, keyed by the client's port (its socket's local port), from the
     * channel names ({@code 127.0.0.1:<client port> -> 127.0.0.1:<node port> (<n>)}) of every running node.
     */
    public Map<Integer, Long> unacknowledgedByClientPort() throws Exception {
        Map<Integer, Long> byPort = new LinkedHashMap<>();
        java.util.Set<String> seen = new java.util.HashSet<>();
        for (int i = 1; i <= size; i++) {
            String out = listening(amqpPort(i)) ? ctlOutput(i, "list_channels", "name", "messages_unacknowledged", "--formatter", "json") : null;
            if (out == null) {
                continue;
            }
            for (JsonNode c : JSON.readTree(out.substring(out.indexOf('[')))) {
                String name = c.path("name").asText();
                java.util.regex.Matcher m = java.util.regex.Pattern.compile(":(\\d+) -> ").matcher(name);
                if (seen.add(name) && m.find()) {
                    byPort.merge(Integer.parseInt(m.group(1)), c.path("messages_unacknowledged").asLong(), Long::sum);
                }
            }
        }
        return byPort;
    }

    private JsonNode queueInfo(String queue, String... items) throws Exception {
        List<String> args = new ArrayList<>(List.of("list_queues", "name"));
        args.addAll(List.of(items));
        args.addAll(List.of("--formatter", "json"));
        String out = anyCtlOutput(args.toArray(String[]::new));
        if (out != null) {
            for (JsonNode q : JSON.readTree(out.substring(out.indexOf('[')))) {
                if (queue.equals(q.path("name").asText())) {
                    return q;
                }
            }
        }
        return null;
    }

    /** The output of {@code rabbitmqctl args...} on the first running node that answers, or a line saying none did. */
    public String anyCtl(String... args) throws Exception {
        String out = anyCtlOutput(args);
        return out == null ? "(no node answered rabbitmqctl " + String.join(" ", args) + ")" : out;
    }

    /** The output of a rabbitmqctl command run against the first node that answers; null when none does. */
    private String anyCtlOutput(String... args) throws Exception {
        for (int i = 1; i <= size; i++) {
            if (listening(amqpPort(i))) {
                String out = ctlOutput(i, args);
                if (out != null) {
                    return out;
                }
            }
        }
        return null;
    }

    public static boolean listening(int port) {
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress("127.0.0.1", port), 500);
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    /** {@code rabbitmqctl -n <node i> args...}; fails with its output when it fails. */
    public void ctl(int i, String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of("rabbitmqctl", "-n", node(i)));
        cmd.addAll(List.of(args));
        run(Duration.ofSeconds(120), cmd.toArray(String[]::new));
    }

    private String ctlOutput(int i, String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of("rabbitmqctl", "-q", "-n", node(i)));
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(false).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        p.getErrorStream().transferTo(java.io.OutputStream.nullOutputStream());
        boolean ok = p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0 && out.contains("[");
        return ok ? out : null;
    }

    private void startNode(int i, boolean again) throws Exception {
        Path d = nodeDir(i);
        ProcessBuilder pb = new ProcessBuilder("rabbitmq-server", "-detached").redirectErrorStream(true)
                .redirectOutput(d.resolve("log").resolve(again ? "detached-restart.out" : "detached.out").toFile());
        Map<String, String> env = pb.environment();
        env.put("RABBITMQ_NODENAME", node(i));
        env.put("RABBITMQ_CONFIG_FILE", d.resolve("rabbitmq.conf").toString());
        env.put("RABBITMQ_DIST_PORT", Integer.toString(firstDistPort + i - 1));
        env.put("RABBITMQ_MNESIA_BASE", d.resolve("mnesia").toString());
        env.put("RABBITMQ_LOG_BASE", d.resolve("log").toString());
        env.put("RABBITMQ_FEATURE_FLAGS_FILE", d.resolve("feature_flags").toString());
        env.put("RABBITMQ_ENABLED_PLUGINS_FILE", d.resolve("enabled_plugins").toString());
        env.put("RABBITMQ_PLUGINS_EXPAND_DIR", d.resolve("plugins-expand").toString());
        env.put("RABBITMQ_PID_FILE", d.resolve("pid").toString());
        Process p = pb.start();
        if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) {
            throw new IllegalStateException("rabbitmq-server -detached for " + node(i) + " failed (root or the rabbitmq user "
                                            + "is needed); see " + d.resolve("log"));
        }
    }

    /** Waits for the AMQP port, then for the app ({@code await_startup} can answer before the node registered). */
    private void awaitNode(int i) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        while (!listening(amqpPort(i))) {
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException(node(i) + " did not open 127.0.0.1:" + amqpPort(i) + " within 120 s; see "
                                                + nodeDir(i).resolve("log"));
            }
            Thread.sleep(200);
        }
        ctl(i, "await_startup", "--timeout", "120");
    }

    /** The pid in the node's pid file if that process is this node's Erlang VM (a pid may be reused), else null. */
    private String ownPid(int i) throws IOException {
        Path file = nodeDir(i).resolve("pid");
        if (!Files.exists(file)) {
            return null;
        }
        String pid = Files.readString(file).trim();
        Path environ = Path.of("/proc", pid, "environ"); // the node name reaches the VM in its environment
        return Files.exists(environ) && new String(Files.readAllBytes(environ), StandardCharsets.UTF_8)
                .contains("RABBITMQ_NODENAME=" + node(i) + "\0") ? pid : null;
    }

    private Path nodeDir(int i) {
        return dir.resolve("n" + i);
    }

    private void run(Duration within, String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!p.waitFor(within.toMillis(), TimeUnit.MILLISECONDS) || p.exitValue() != 0) {
            throw new IllegalStateException(String.join(" ", cmd) + " failed: " + out.strip());
        }
    }

    /** Stops every node that still runs: {@code rabbitmqctl stop}, else {@code kill -9} of its pid. */
    private void stopAllQuietly() {
        for (int i = size; i >= 1; i--) {
            try {
                if (listening(amqpPort(i))) {
                    ctl(i, "stop");
                }
            } catch (Exception e) {
                // fall through to the pid
            }
            try {
                String pid = ownPid(i);
                if (pid != null) { // rabbitmqctl could not stop it
                    new ProcessBuilder("kill", "-9", pid).start().waitFor(5, TimeUnit.SECONDS);
                }
            } catch (Exception e) {
                // already gone
            }
        }
    }

    private void deleteDir() throws IOException {
        if (Files.exists(dir)) {
            try (var paths = Files.walk(dir)) {
                for (Path p : paths.sorted(java.util.Comparator.reverseOrder()).toList()) {
                    Files.deleteIfExists(p);
                }
            }
        }
    }

    @Override
    public void close() throws IOException {
        stopAllQuietly();
        deleteDir();
        try {
            Runtime.getRuntime().removeShutdownHook(hook);
        } catch (IllegalStateException shuttingDown) {
            // the hook is running or has run
        }
    }
}
