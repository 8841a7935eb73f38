package io.llmbatch.worker;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import com.fasterxml.jackson.databind.JsonNode;

/**
 * A prompt file with named placeholders, {@code {field}}, filled from the task's fields. The file is read
 * again when it changes, so a running worker picks up an edited prompt without a restart.
 */
public class PromptTemplate {

    private static final Pattern PLACEHOLDER = Pattern.compile("\\{([A-Za-z_][A-Za-z0-9_]*)}");

    private final Path path;
    private volatile Loaded loaded;

    private record Loaded(FileTime modified, String text, List<String> fields) {
    }

    public PromptTemplate(Path path) {
        this.path = path;
    }

    public Path path() {
        return path;
    }

    /** The placeholder names, in order. */
    public List<String> fields() {
        return current().fields();
    }

    /**
     * The prompt for a task.
     *
     * @throws MissingFieldException when the task lacks a field (or has a non-text value) the template needs
     */
    public String render(JsonNode task) {
        Loaded t = current();
        Matcher m = PLACEHOLDER.matcher(t.text());
        StringBuilder out = new StringBuilder(t.text().length() + 128);
        while (m.find()) {
            String field = m.group(1);
            JsonNode value = task.get(field);
            if (value == null || value.isNull() || value.isContainerNode()) {
                throw new MissingFieldException("task lacks field '" + field + "' used by the prompt " + path
                                                + (value == null || value.isNull() ? "" : " (it is not text)"));
            }
            m.appendReplacement(out, Matcher.quoteReplacement(value.asText()));
        }
        m.appendTail(out);
        return out.toString();
    }

    private Loaded current() {
        try {
            FileTime modified = Files.getLastModifiedTime(path);
            Loaded t = loaded;
            if (t == null || !t.modified().equals(modified)) {
                String text = Files.readString(path, StandardCharsets.UTF_8).stripTrailing();
                List<String> fields = new ArrayList<>();
                Matcher m = PLACEHOLDER.matcher(text);
                while (m.find()) {
                    fields.add(m.group(1));
                }
                t = new Loaded(modified, text, List.copyOf(fields));
                loaded = t;
            }
            return t;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read the prompt file " + path.toAbsolutePath()
                                           + " (llmbatch.worker.prompt)", e);
        }
    }

    /** The task cannot be turned into a prompt: a poison task, dead-lettered with this reason. */
    public static class MissingFieldException extends RuntimeException {
        public MissingFieldException(String message) {
            super(message);
        }
    }
}
