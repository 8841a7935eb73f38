package io.llmbatch.rabbit;

/**
 * One message the broker cannot take, whatever is retried: its {@code message_id} is over AMQP's 255 bytes, it is
 * larger than {@code llmbatch.ingest.max-message-bytes} or than the broker's own limit, or the AMQP client refused to
 * encode it. Not a broker failure (that is {@link PublishException}): retrying the same message can never succeed, so
 * the caller rejects it (a 400, a rejects line, a dead letter) and goes on.
 *
 * <p>{@link ConfirmingPublisher#publish} throws it when it reaches such a message, after the messages sent before it
 * were settled; {@link #confirmed()} of them were confirmed (and reported to the position listener).
 */
public class MessageRefusedException extends RuntimeException {

    private final transient OutboundMessage refused;
    private final long confirmed;
    private final boolean byBroker;
    private final long unconfirmed;

    public MessageRefusedException(String reason, OutboundMessage refused, long confirmed, boolean byBroker) {
        this(reason, refused, confirmed, byBroker, 0);
    }

    public MessageRefusedException(String reason, OutboundMessage refused, long confirmed, boolean byBroker, long unconfirmed) {
        super(reason);
        this.refused = refused;
        this.confirmed = confirmed;
        this.byBroker = byBroker;
        this.unconfirmed = unconfirmed;
    }

    /**
     * Messages sent before the refused one whose confirm never came: the broker closed the channel at the refused
     * message, so each of them may or may not be stored (a caller that sends them again stores them at least once).
     */
    public long unconfirmed() {
        return unconfirmed;
    }

    /** The message refused (its {@link OutboundMessage#position()} says which of the source's). */
    public OutboundMessage message() {
        return refused;
    }

    /** Messages of the same publish the broker confirmed before the refusal. */
    public long confirmed() {
        return confirmed;
    }

    /**
     * True when the broker itself refused it (it closed the channel over its size: the messages sent after it were not
     * stored, those sent before it and not confirmed may have been, see {@link #unconfirmed()}); false when it was
     * refused before sending.
     */
    public boolean byBroker() {
        return byBroker;
    }
}
