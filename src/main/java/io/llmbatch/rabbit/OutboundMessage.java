package io.llmbatch.rabbit;

import java.util.Map;

/**
 * One JSON message to publish.
 *
 * @param body      UTF-8 JSON bytes (or, for a dead letter, the bytes as received), sent as they are
 * @param messageId AMQP {@code message_id} (the task's {@code task_id} or a hash of its canonical JSON)
 * @param headers   AMQP headers, e.g. {@code x-llmbatch-source} ({@code http}, {@code file:name.csv:12})
 * @param position  position in its source (0-based record index), so a stream can resume after the last confirmed one
 */
public record OutboundMessage(byte[] body, String messageId, Map<String, Object> headers, long position) {

    /** A message whose only header names where it came from. */
    public static OutboundMessage fromSource(byte[] body, String messageId, String source, long position) {
        return new OutboundMessage(body, messageId, Map.of(ConfirmingPublisher.SOURCE_HEADER, source), position);
    }
}
