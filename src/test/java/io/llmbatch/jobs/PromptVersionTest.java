package io.llmbatch.jobs;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Instant;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The prompt version stored with each result, kept between tasks (an ingest asks for it once per task): it must still
 * follow every edit of the prompt file and every change of the system prompt, as the SHA-256 of both.
 */
class PromptVersionTest {

    @TempDir
    Path dir;

    @Test
    void the_kept_version_follows_the_prompt_file_and_the_system_prompt() throws Exception {
        Path file = dir.resolve("p.txt");
        Files.writeString(file, "写 {name}");
        PromptTemplate prompt = new PromptTemplate(file, "test");

        String first = prompt.version(null);
        assertThat(first).isEqualTo(JobDefinition.sha256("写 {name}\u0000").substring(0, 12));
        assertThat(prompt.version(null)).isSameAs(first);

        assertThat(prompt.version("be brief")).as("another system prompt, another version")
                .isEqualTo(JobDefinition.sha256("写 {name}\u0000be brief").substring(0, 12));
        assertThat(prompt.version(null)).isEqualTo(first);

        Files.writeString(file, "介绍 {name}");
        Files.setLastModifiedTime(file, FileTime.from(Instant.now().plusSeconds(5))); // a new mtime whatever its granularity
        assertThat(prompt.version(null)).as("the edited file").isEqualTo(JobDefinition.sha256("介绍 {name}\u0000").substring(0, 12));
    }
}
