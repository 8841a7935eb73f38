package io.llmbatch.ingest;

import java.util.List;

/** Input refused, as a rule before anything was published ({@link #published()}); {@link #status()} is the HTTP answer. */
public class IngestException extends RuntimeException {

    private final int status;
    private final List<String> details;
    private final Long published;
    private final long unconfirmed;

    public IngestException(int status, String message) {
        this(status, message, List.of());
    }

    public IngestException(int status, String message, List<String> details) {
        this(status, message, details, null);
    }

    /** Refused after {@code published} messages of the request were stored (the broker refused a later one). */
    public IngestException(int status, String message, List<String> details, Long published) {
        this(status, message, details, published, 0);
    }

    /** As above, with {@code unconfirmed} messages sent before the refused one that may or may not be stored. */
    public IngestException(int status, String message, List<String> details, Long published, long unconfirmed) {
        super(message);
        this.status = status;
        this.details = List.copyOf(details);
        this.published = published;
        this.unconfirmed = unconfirmed;
    }

    /** Messages sent before the refusal whose confirm never came: each may be stored or not. */
    public long unconfirmed() {
        return unconfirmed;
    }

    /** Messages of the request the broker confirmed before the refusal; {@code null} when nothing was published. */
    public Long published() {
        return published;
    }

    public int status() {
        return status;
    }

    /** The individual problems (first few) behind the message, e.g. one per bad task. */
    public List<String> details() {
        return details;
    }
}
