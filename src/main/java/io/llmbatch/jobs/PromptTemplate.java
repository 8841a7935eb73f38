package io.llmbatch.jobs;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import com.fasterxml.jackson.databind.JsonNode;
import org.slf4j.LoggerFactory;

/**
 * A prompt file with named placeholders, {@code {field}}, filled from the task's fields. The file is read
 * again when it changes, so a running worker picks up an edited prompt without a restart. While it cannot be read
 * (an editor replacing it, a deploy renaming it into place) the last version read is used; a file never read is
 * {@link PromptUnavailableException}: the worker's configuration, not the task, so the task is never dead-lettered.
 */
public class PromptTemplate {

    private static final Pattern PLACEHOLDER = Pattern.compile("\\{([A-Za-z_][A-Za-z0-9_]*)}");

    private final Path path;
    private final String setting;
    private volatile Loaded loaded;
    private volatile boolean warned;
    /** The last {@link #version}: computed again only when the text or the system prompt changed. */
    private volatile Version version;

    private record Version(String text, String system, String hash) {
    }

    private record Loaded(FileTime modified, String text, List<String> fields) {
    }

    public PromptTemplate(Path path) {
        this(path, "llmbatch.worker.prompt");
    }

    public PromptTemplate(Path path, String setting) {
        this.path = path;
        this.setting = setting;
    }

    public Path path() {
        return path;
    }

    /** The placeholder names, in order. */
    public List<String> fields() {
        return current().fields();
    }

    /** The text as it is (no placeholders filled). */
    public String text() {
        return current().text();
    }

    /**
     * The version of this text with {@code system} (the system prompt, or null): 12 hex digits of the SHA-256 of both.
     * Asked for every task of an ingest, so the hash is kept until either changes.
     */
    public String version(String system) {
        String text = current().text();
        Version v = version;
        if (v == null || !v.text().equals(text) || !Objects.equals(v.system(), system)) {
            v = new Version(text, system, JobDefinition.sha256(text + "\u0000" + (system == null ? "" : system)).substring(0, 12));
            version = v;
        }
        return v.hash();
    }

    /** Whether the file can be used now (read at least once). */
    public boolean readable() {
        try {
            current();
            return true;
        } catch (PromptUnavailableException e) {
            return false;
        }
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
        Loaded t = loaded;
        try {
            FileTime modified = Files.getLastModifiedTime(path);
            if (t == null || !t.modified().equals(modified)) {
                String text = Files.readString(path, StandardCharsets.UTF_8).stripTrailing();
                List<String> fields = new ArrayList<>();
                Matcher m = PLACEHOLDER.matcher(text);
                while (m.find()) {
                    fields.add(m.group(1));
                }
                t = new Loaded(modified, text, List.copyOf(fields));
                loaded = t;
                warned = false;
            }
            return t;
        } catch (IOException e) {
            String why = "cannot read " + path.toAbsolutePath() + " (" + setting + "): " + e;
            if (t == null) {
                throw new PromptUnavailableException(why);
            }
            if (!warned) {
                warned = true;
                LoggerFactory.getLogger(PromptTemplate.class).warn("{}; using the version read before", why);
            }
            return t;
        }
    }

    /** The prompt file was never readable: the worker cannot make prompts (the task goes back to the queue). */
    public static class PromptUnavailableException extends RuntimeException {
        public PromptUnavailableException(String message) {
            super(message);
        }
    }

    /** The task cannot be turned into a prompt: a poison task, dead-lettered with this reason. */
    public static class MissingFieldException extends RuntimeException {
        public MissingFieldException(String message) {
            super(message);
        }
    }
}
