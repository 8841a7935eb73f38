package io.llmbatch.rabbit;

/**
 * One JSON message to publish.
 *
 * @param body      UTF-8 JSON bytes, sent as they are
 * @param messageId AMQP {@code message_id} (the task's {@code task_id} or a hash of its canonical JSON)
 * @param source    where it came from ({@code http}, {@code file:name.csv:12}), sent as header {@code x-llmbatch-source}
 * @param position  position in its source (0-based record index), so a stream can resume after the last confirmed one
 */
public record OutboundMessage(byte[] body, String messageId, String source, long position) {
}
