package io.llmbatch.ingest;

import java.util.List;

/** Input refused before anything was published; {@link #status()} is the HTTP answer. */
public class IngestException extends RuntimeException {

    private final int status;
    private final List<String> details;

    public IngestException(int status, String message) {
        this(status, message, List.of());
    }

    public IngestException(int status, String message, List<String> details) {
        super(message);
        this.status = status;
        this.details = List.copyOf(details);
    }

    public int status() {
        return status;
    }

    /** The individual problems (first few) behind the message, e.g. one per bad task. */
    public List<String> details() {
        return details;
    }
}
