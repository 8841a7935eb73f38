package io.llmbatch.support;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** A working directory for a jobs test: emptied, with jobs/, prompts/ and inbox/, and the seed's job as shipped. */
public final class JobsDir {

    private JobsDir() {
    }

    public static Path fresh(Path base) throws IOException {
        if (Files.exists(base)) {
            try (var files = Files.walk(base)) {
                files.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
            }
        }
        Files.createDirectories(base.resolve("jobs"));
        Files.createDirectories(base.resolve("prompts"));
        Files.createDirectories(base.resolve("inbox"));
        Files.copy(Path.of("jobs/company_intro.yaml"), base.resolve("jobs/company_intro.yaml"));
        Files.copy(Path.of("prompts/company_intro.txt"), base.resolve("prompts/company_intro.txt"));
        return base;
    }
}
