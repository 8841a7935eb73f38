package io.llmbatch.ingest;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.List;

import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.ObjectReader;
import com.fasterxml.jackson.databind.cfg.JsonNodeFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;

import io.llmbatch.rabbit.ConfirmingPublisher;
import io.llmbatch.rabbit.OutboundMessage;

/** Task JSON: strict parsing, validation and the {@code message_id} rule, shared by every ingest path. */
public final class Tasks {

    /** Strict: duplicate keys and trailing garbage are errors; decimals keep their exact digits. */
    public static final ObjectMapper JSON = new ObjectMapper()
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .enable(DeserializationFeature.USE_BIG_DECIMAL_FOR_FLOATS);

    /** For values read one at a time from a stream (a .json file's array), where more content follows each value. */
    public static final ObjectReader STREAM = JSON.reader().without(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);

    /** Sorted keys, no whitespace: the form hashed into a {@code message_id}. */
    private static final ObjectMapper CANONICAL = JSON.copy().configure(JsonNodeFeature.WRITE_PROPERTIES_SORTED, true);

    public static final String TASK_ID = "task_id";

    private Tasks() {
    }

    /**
     * The AMQP {@code message_id} of a task: its {@code task_id} when present, else the lowercase hex SHA-256 of
     * its canonical JSON (keys sorted at every level, no whitespace, UTF-8), so the same task sent twice gets
     * the same id.
     */
    public static String messageId(ObjectNode task) {
        JsonNode id = task.get(TASK_ID);
        if (id != null && !id.isNull()) {
            return id.asText();
        }
        try {
            return io.llmbatch.jobs.JobDefinition.sha256(CANONICAL.writeValueAsBytes(task));
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    /**
     * What is wrong with one task, or {@code null} when it can be published: it must be a JSON object, its
     * {@code task_id} (if any) a non-empty string or an integer, each required field a non-blank string or a number,
     * and no field named {@code _llmbatch} ({@link io.llmbatch.jobs.TaskEnvelope}).
     */
    public static String problem(JsonNode task, List<String> requiredFields) {
        if (!task.isObject()) {
            return "expected a JSON object, got " + typeOf(task);
        }
        if (task.has(io.llmbatch.jobs.TaskEnvelope.FIELD)) {
            return "field '" + io.llmbatch.jobs.TaskEnvelope.FIELD + "' is reserved: llm-batch writes a task's job there (a task "
                   + "copied from a task or dead-letter queue: leave the field out, or re-drive the dead letters)";
        }
        JsonNode id = task.get(TASK_ID);
        if (id != null && !(id.isIntegralNumber() || id.isTextual() && !id.asText().isBlank())) {
            return "task_id must be a non-empty string or an integer, got " + typeOf(id);
        }
        for (String field : requiredFields) {
            JsonNode value = task.get(field);
            if (value == null) {
                return "missing required field '" + field + "'";
            }
            if (!(value.isTextual() || value.isNumber())) {
                return "field '" + field + "' must be a string, got " + typeOf(value);
            }
            if (value.asText().isBlank()) {
                return "required field '" + field + "' is empty";
            }
        }
        return unstorable(task, "", 1);
    }

    /**
     * Deepest nesting of a task, counting the task itself as 1: MongoDB stores at most 100 levels
     * (BSONDepth::getMaxDepthForUserStorage; empty objects and arrays add none), and the result document the worker
     * writes holds the task one level down, under {@code task}.
     */
    public static final int MAX_TASK_DEPTH = 99;

    /**
     * What in this value MongoDB could not store once the collector has parsed the result holding it
     * ({@code org.bson.Document.parse}), or {@code null}: an integer beyond 64 bits (the parse fails), a decimal a
     * 64-bit double cannot hold (it would turn into Infinity or 0; other decimals round to the nearest double, as in
     * any JSON reader), a field name with a NUL character (BSON names are C strings), nesting beyond
     * {@link #MAX_TASK_DEPTH}.
     */
    private static String unstorable(JsonNode node, String path, int level) {
        if (node.isContainerNode()) {
            if (!node.isEmpty() && level > MAX_TASK_DEPTH) {
                return "nested more than " + MAX_TASK_DEPTH + " levels deep (at '" + path + "'): MongoDB stores 100 levels and "
                       + "the result document holds the task one level down, so a task may nest at most " + MAX_TASK_DEPTH;
            }
            var fields = node.fields();
            int i = 0;
            while (node.isArray() ? i < node.size() : fields.hasNext()) {
                String childPath;
                JsonNode child;
                if (node.isArray()) {
                    childPath = path + "[" + i + "]";
                    child = node.get(i++);
                } else {
                    var field = fields.next();
                    if (field.getKey().indexOf('\u0000') >= 0) {
                        return "field name '" + (path + "." + field.getKey()).replace("\u0000", "\\u0000").substring(path.isEmpty() ? 1 : 0)
                               + "' has a NUL character, which MongoDB cannot store in a field name";
                    }
                    childPath = path.isEmpty() ? field.getKey() : path + "." + field.getKey();
                    child = field.getValue();
                }
                String problem = unstorable(child, childPath, level + 1);
                if (problem != null) {
                    return problem;
                }
            }
            return null;
        }
        if (node.isIntegralNumber() && !node.canConvertToLong()) {
            return "field '" + path + "' is " + node.asText() + ", beyond a 64-bit integer: MongoDB cannot store it";
        }
        if (node.isFloatingPointNumber()) {
            double d = node.doubleValue();
            if (Double.isInfinite(d) || d == 0 && node.decimalValue().signum() != 0) {
                return "field '" + path + "' is " + node.asText() + ", beyond what MongoDB can store as a 64-bit double (it would "
                       + "become " + (d == 0 ? "0" : "Infinity") + ")";
            }
        }
        return null;
    }

    /**
     * Why the broker cannot take a task's message ({@link ConfirmingPublisher#refusal}), or {@code null}; a message_id
     * that is too long is named as the task's {@code task_id} when it is one.
     */
    public static String refusal(ConfirmingPublisher publisher, OutboundMessage message, JsonNode task) {
        String refusal = publisher.refusal(message);
        if (refusal != null && refusal.startsWith("message_id") && task.hasNonNull(TASK_ID)) {
            return "task_id becomes the AMQP message_id: " + refusal;
        }
        return refusal;
    }

    /** A checked task as the message to publish (compact JSON, fields in their original order). */
    public static OutboundMessage toMessage(ObjectNode task, String source, long position) {
        try {
            return OutboundMessage.fromSource(JSON.writeValueAsBytes(task), messageId(task), source, position);
        } catch (JsonProcessingException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** "malformed JSON at line 3, column 7: Unexpected character ..." without Jackson's source dump. */
    public static String describe(IOException e) {
        if (e instanceof JsonProcessingException jpe) {
            JsonLocation loc = jpe.getLocation();
            String where = loc == null ? "" : " at line " + loc.getLineNr() + ", column " + loc.getColumnNr();
            String what = jpe.getOriginalMessage().replaceAll("\\[Source: [^;\\]]*; ", "[");
            int nl = what.indexOf('\n');
            return "malformed JSON" + where + ": " + (nl > 0 ? what.substring(0, nl) : what);
        }
        return "cannot read input: " + e.getMessage();
    }

    public static String typeOf(JsonNode node) {
        return switch (node.getNodeType()) {
            case OBJECT -> "an object";
            case ARRAY -> "an array";
            case STRING -> "a string";
            case NUMBER -> "a number";
            case BOOLEAN -> "a boolean";
            case NULL -> "null";
            default -> node.getNodeType().name().toLowerCase();
        };
    }
}
