package io.llmbatch.support;

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** target/llm-batch.jar started as its own process, as on a real machine, so a test can kill -9 it. */
public final class AppProcess implements AutoCloseable {

    private final Process process;
    private final Path log;

    private AppProcess(Process process, Path log) {
        this.process = process;
        this.log = log;
    }

    public static AppProcess start(String name, String... properties) throws IOException {
        Path jar = Path.of("target/llm-batch.jar");
        if (!Files.exists(jar)) {
            throw new IllegalStateException("target/llm-batch.jar is missing: run the *IT tests with `mvn verify` (after package)");
        }
        List<String> cmd = new ArrayList<>(List.of(
                Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-Xmx256m", "-jar", jar.toString()));
        for (String p : properties) {
            cmd.add("-D" + p);
        }
        Path log = Path.of("target", name + ".log");
        Process process = new ProcessBuilder(cmd).directory(new File(".")).redirectErrorStream(true)
                .redirectOutput(log.toFile()).start();
        return new AppProcess(process, log);
    }

    /** SIGKILL: no shutdown hook, no graceful stop, like a rented machine vanishing. */
    public void kill9() throws InterruptedException {
        process.destroyForcibly().waitFor();
    }

    public boolean isAlive() {
        return process.isAlive();
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
    }
}
