package io.llmbatch.rabbit;

/**
 * The broker did not confirm every message: it was unreachable, closed the channel, refused (nacked) or
 * could not route a message, or no confirm came in time. {@link #confirmed()} messages are known to be stored.
 * Sending again may succeed; a message that never can is a {@link MessageRefusedException} instead.
 */
public class PublishException extends RuntimeException {

    private final String queue;
    private final long confirmed;
    private final long sent;

    public PublishException(String queue, long confirmed, long sent, String message, Throwable cause) {
        super(message, cause);
        this.queue = queue;
        this.confirmed = confirmed;
        this.sent = sent;
    }

    public String queue() {
        return queue;
    }

    /** Messages the broker confirmed before the failure. */
    public long confirmed() {
        return confirmed;
    }

    /** Messages handed to the broker (confirmed or not) before the failure. */
    public long sent() {
        return sent;
    }
}
