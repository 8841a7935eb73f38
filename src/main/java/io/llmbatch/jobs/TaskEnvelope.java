package io.llmbatch.jobs;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import io.llmbatch.ingest.Tasks;
import io.llmbatch.rabbit.OutboundMessage;

/**
 * Where a rendered task carries its job: in the task message's body, as the member {@code "_llmbatch"} beside the task's
 * own fields ({@code {"reg_dt": ..., "ent_table_name": ..., "_llmbatch": {"job": ..., "request": ..., "pid": ...}}}),
 * not in AMQP headers. Two reasons, both measured: a message's properties, headers included, must fit in one AMQP
 * frame (RabbitMQ's frame_max, 128 KiB by default), so a long prompt in a header could not be published at all
 * (TaskMessageTest), while a body is split over as many frames as it takes; and RabbitMQ 3.10 spends about 35 µs of CPU
 * per message on headers of this size and almost nothing on the same bytes in the body (bench/RESULTS.md, issue 14).
 * The worker takes the member out again, so the task it answers and stores is the task as it came. A task message
 * without the member is read from its headers as before (messages queued by an older ingest node), or, without either,
 * as a task in the seed's form.
 */
public final class TaskEnvelope {

    /** The body member; a task may not have a field of this name. */
    public static final String FIELD = "_llmbatch";

    /** The job's fields a task message carries, under the names of the headers that carried them before. */
    public static final List<String> HEADERS = List.of(Jobs.JOB, Jobs.REQUEST, Jobs.REQUEST_HASH, Jobs.PROMPT_VERSION, Jobs.PID,
            Jobs.COLLECTION, Jobs.MODEL, Jobs.OUTPUT_FIELD, Jobs.COMPANY_FIELD, Jobs.CHECKS, Jobs.BATCH, Jobs.CUSTOM_ID, Jobs.LINE);

    private static final String PREFIX = "x-llmbatch-";
    /** Each of {@link #HEADERS} and its name in the envelope, worked out once rather than for every task sent. */
    private static final Map<String, String> MEMBERS = HEADERS.stream().collect(
            java.util.stream.Collectors.toUnmodifiableMap(h -> h, TaskEnvelope::memberName));
    /**
     * What {@link #wrap} moves into the envelope: the job's fields and the task's {@code x-llmbatch-source} (as
     * {@code source}), so that a job's task message has no header table at all, which RabbitMQ handles with less CPU
     * (bench/HeaderCost.java).
     */
    private static final Map<String, String> MOVED = java.util.stream.Stream.concat(MEMBERS.entrySet().stream(),
                    java.util.stream.Stream.of(Map.entry(io.llmbatch.rabbit.ConfirmingPublisher.SOURCE_HEADER, "source")))
            .collect(java.util.stream.Collectors.toUnmodifiableMap(Map.Entry::getKey, Map.Entry::getValue));
    private static final byte[] MEMBER = (",\"" + FIELD + "\":").getBytes(StandardCharsets.UTF_8);

    private TaskEnvelope() {
    }

    /** {@code x-llmbatch-request-hash} is {@code request_hash} in the envelope. */
    static String memberName(String header) {
        return header.substring(PREFIX.length()).replace('-', '_');
    }

    /**
     * The message with its job headers ({@link #HEADERS}) and its source header moved into its body; any other header
     * stays. A message without job headers, or whose body is not a JSON object, is returned as it is.
     */
    public static OutboundMessage wrap(OutboundMessage m) {
        byte[] body = m.body();
        int first = 0;
        while (first < body.length && isSpace(body[first])) {
            first++;
        }
        int last = body.length - 1;
        while (last > first && isSpace(body[last])) {
            last--;
        }
        if (first >= last || body[first] != '{' || body[last] != '}' || MEMBERS.keySet().stream().noneMatch(m.headers()::containsKey)) {
            return m;
        }
        int inside = first + 1;
        while (inside < last && isSpace(body[inside])) {
            inside++;
        }
        boolean empty = inside == last;
        Map<String, Object> rest = new LinkedHashMap<>();
        ByteArrayOutputStream out = new ByteArrayOutputStream(body.length + 1024);
        out.write(body, 0, last); // all of the object but its closing brace
        out.write(MEMBER, empty ? 1 : 0, MEMBER.length - (empty ? 1 : 0));
        try (JsonGenerator g = Tasks.JSON.getFactory().createGenerator(out)) {
            g.writeStartObject();
            for (Map.Entry<String, Object> h : m.headers().entrySet()) {
                String member = MOVED.get(h.getKey());
                if (member != null) {
                    if (h.getValue() != null) {
                        g.writeStringField(member, h.getValue().toString());
                    }
                } else {
                    rest.put(h.getKey(), h.getValue());
                }
            }
            g.writeEndObject();
        } catch (IOException e) {
            throw new UncheckedIOException(e); // writes to memory
        }
        out.write('}');
        return new OutboundMessage(out.toByteArray(), m.messageId(), rest, m.position());
    }

    /** Where a message came from: its {@code x-llmbatch-source} header, or the source {@link #wrap} moved into its body. */
    public static String source(OutboundMessage m) {
        Object header = m.headers().get(io.llmbatch.rabbit.ConfirmingPublisher.SOURCE_HEADER);
        if (header != null) {
            return header.toString();
        }
        try {
            JsonNode source = Tasks.JSON.readTree(m.body()).path(FIELD).path("source");
            return source.isTextual() ? source.asText() : null;
        } catch (IOException notJson) {
            return null;
        }
    }

    /**
     * Takes the envelope out of a task read from a message: its job's fields under their header names, or null when the
     * task has none (the task is then as it came).
     *
     * @throws IllegalArgumentException when the member is there but is not an object of text values
     */
    public static Map<String, Object> unwrap(ObjectNode task) {
        JsonNode envelope = task.remove(FIELD);
        if (envelope == null) {
            return null;
        }
        if (!envelope.isObject()) {
            throw new IllegalArgumentException("the task's '" + FIELD + "' is " + Tasks.typeOf(envelope) + ", not the object of "
                                               + "its job's fields the ingest node writes");
        }
        Map<String, Object> headers = new LinkedHashMap<>();
        for (String h : HEADERS) {
            JsonNode v = envelope.get(MEMBERS.get(h));
            if (v != null && !v.isNull()) {
                if (!v.isTextual()) {
                    throw new IllegalArgumentException("the task's " + FIELD + "." + MEMBERS.get(h) + " is " + Tasks.typeOf(v)
                                                       + ", not text");
                }
                headers.put(h, v.asText());
            }
        }
        return headers;
    }

    private static boolean isSpace(byte b) {
        return b == ' ' || b == '\n' || b == '\r' || b == '\t';
    }
}
