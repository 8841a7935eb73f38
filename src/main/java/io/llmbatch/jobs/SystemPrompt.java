package io.llmbatch.jobs;

import java.nio.file.Path;

/**
 * The system prompt sent with every task: {@code llmbatch.llm.system-prompt} as text, or the file
 * {@code llmbatch.llm.system-prompt-file} (read again when it changes, like the prompt template); none when both are
 * empty. OpenAI-compatible servers get it as the system message; ChatGLM's api.py, which has no system role, before
 * the prompt.
 */
public final class SystemPrompt {

    private final String text;
    private final PromptTemplate file;

    private SystemPrompt(String text, PromptTemplate file) {
        this.text = text;
        this.file = file;
    }

    public static SystemPrompt of(String text, String file) {
        if (file != null && !file.isBlank()) {
            if (text != null && !text.isBlank()) {
                throw new IllegalArgumentException("set llmbatch.llm.system-prompt or llmbatch.llm.system-prompt-file, not both");
            }
            PromptTemplate t = new PromptTemplate(Path.of(file.trim()), "llmbatch.llm.system-prompt-file");
            t.fields(); // read now: a missing file stops the start
            return new SystemPrompt(null, t);
        }
        return new SystemPrompt(text == null || text.isBlank() ? null : text.strip(), null);
    }

    /** The system prompt now, or null. */
    public String text() {
        return file != null ? file.text() : text;
    }

    @Override
    public String toString() {
        return file != null ? file.path().toString() : text == null ? "none" : "\"" + text + "\"";
    }
}
