package io.llmbatch.support;

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** target/llm-batch.jar started as its own process, as on a real machine, so a test can kill -9 it. */
public final class AppProcess implements AutoCloseable {

    private final Process process;
    private final Path log;

    private final Thread reaper;

    private AppProcess(Process process, Path log) {
        this.process = process;
        this.log = log;
        // a test JVM that is ended (Ctrl-C, a killed bench) takes its processes with it instead of orphaning them
        this.reaper = new Thread(process::destroyForcibly, "app-process-reaper");
        Runtime.getRuntime().addShutdownHook(reaper);
    }

    /** The jar on the tests' broker (RabbitMQRequired.URL), with the given settings. */
    public static AppProcess start(String name, String... properties) throws IOException {
        String[] all = java.util.Arrays.copyOf(properties, properties.length + 1);
        all[properties.length] = "llmbatch.rabbitmq.url=" + RabbitMQRequired.URL;
        return startWithEnvironment(name, Map.of(), all);
    }

    /**
     * The jar with exactly the given settings and environment additions; RABBITMQ_URL, MONGODB_URI and
     * LLM_ENDPOINTS are removed from the inherited environment unless given, so "nothing configured" means it.
     */
    public static AppProcess startWithEnvironment(String name, Map<String, String> env, String... properties) throws IOException {
        return startIn(Path.of("."), name, env, properties);
    }

    /** The jar on the tests' broker with a heap of {@code xmx} (e.g. {@code "128m"}) instead of 256 MB. */
    public static AppProcess startWithHeap(String xmx, String name, String... properties) throws IOException {
        String[] all = java.util.Arrays.copyOf(properties, properties.length + 1);
        all[properties.length] = "llmbatch.rabbitmq.url=" + RabbitMQRequired.URL;
        return start(Path.of("."), xmx, name, Map.of(), all);
    }

    /** Like {@link #startWithEnvironment}, with {@code workDir} as working directory (its routes/, application.properties). */
    public static AppProcess startIn(Path workDir, String name, Map<String, String> env, String... properties) throws IOException {
        return startWith(List.of(), workDir, "256m", name, env, properties);
    }

    /**
     * Like {@link #startIn}, the java command run through {@code prefix}, e.g. {@code ip netns exec gpu} to start it in a
     * network namespace.
     */
    public static AppProcess startWith(List<String> prefix, Path workDir, String name, Map<String, String> env, String... properties)
            throws IOException {
        return startWith(prefix, workDir, "256m", name, env, properties);
    }

    private static AppProcess start(Path workDir, String xmx, String name, Map<String, String> env, String... properties) throws IOException {
        return startWith(List.of(), workDir, xmx, name, env, properties);
    }

    private static AppProcess startWith(List<String> prefix, Path workDir, String xmx, String name, Map<String, String> env,
                                        String... properties) throws IOException {
        Path jar = Path.of("target/llm-batch.jar").toAbsolutePath();
        if (!Files.exists(jar)) {
            throw new IllegalStateException("target/llm-batch.jar is missing: run the *IT tests with `mvn verify` (after package)");
        }
        List<String> cmd = new ArrayList<>(prefix);
        cmd.addAll(List.of(
                Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-Xmx" + xmx, "-jar", jar.toString()));
        for (String p : properties) {
            cmd.add("-D" + p);
        }
        if (java.util.Arrays.stream(properties).noneMatch(p -> p.startsWith("camel.management.port="))) {
            cmd.add("-Dcamel.management.port=0"); // several processes of one test each get a management port
        }
        Path log = Path.of("target", name + ".log").toAbsolutePath();
        ProcessBuilder builder = new ProcessBuilder(cmd).directory(workDir.toFile()).redirectErrorStream(true)
                .redirectOutput(log.toFile());
        for (String var : List.of("RABBITMQ_URL", "MONGODB_URI", "LLM_ENDPOINTS", "CAMEL_MAIN_PROFILE")) {
            builder.environment().remove(var);
        }
        builder.environment().putAll(env);
        Process process = builder.start();
        return new AppProcess(process, log);
    }

    /** SIGKILL: no shutdown hook, no graceful stop, like a rented machine vanishing. */
    public void kill9() throws InterruptedException {
        process.destroyForcibly().waitFor();
    }

    /** The process id of the JVM (to find its sockets). */
    public long pid() {
        return process.pid();
    }

    public boolean isAlive() {
        return process.isAlive();
    }

    /** Waits for the process to end by itself; its exit code. */
    public int exitCode(java.time.Duration within) throws InterruptedException {
        if (!process.waitFor(within.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS)) {
            throw new AssertionError("still running after " + within + "; see " + log);
        }
        return process.exitValue();
    }

    public Path log() {
        return log;
    }

    @Override
    public void close() throws InterruptedException {
        if (process.isAlive()) {
            process.destroy();
            process.waitFor();
        }
        try {
            Runtime.getRuntime().removeShutdownHook(reaper);
        } catch (IllegalStateException shuttingDown) {
            // the hook runs anyway
        }
    }
}
