package io.llmbatch.worker;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.TimeUnit;

/** What GPU this worker runs on, for the result message: from nvidia-smi, else configured, else "none". */
public final class Gpu {

    private Gpu() {
    }

    /** GPUs in a description from {@link #describe}: one per nvidia-smi line, else 1 (a machine counts as one). */
    public static int count(String description) {
        return "none".equals(description) ? 1 : Math.max(1, description.split("; ").length);
    }

    public static String describe(String configured) {
        try {
            Process p = new ProcessBuilder("nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader")
                    .redirectErrorStream(true).start();
            if (p.waitFor(5, TimeUnit.SECONDS) && p.exitValue() == 0) {
                String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
                if (!out.isEmpty()) {
                    return String.join("; ", out.lines().map(String::strip).toList());
                }
            } else {
                p.destroyForcibly();
            }
        } catch (IOException e) {
            // no nvidia-smi on this machine
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        return configured == null || configured.isBlank() ? "none" : configured.strip();
    }
}
