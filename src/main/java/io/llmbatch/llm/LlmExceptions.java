package io.llmbatch.llm;

/**
 * What an LLM call can fail with, sorted by whose fault it is: the routes decide on the type. One call failing
 * ({@link LlmCallFailedException} and its kinds) is retried by the gateway route on another backend; a request the
 * server blames on the prompt ({@link LlmRejectedException}) dead-letters the task; no usable backend at all
 * ({@link BackendsUnavailableException}) sends the task back to the queue and pauses the worker.
 */
public final class LlmExceptions {

    private LlmExceptions() {
    }

    /** One call to one backend failed; another backend, or the same one later, may answer. */
    public static class LlmCallFailedException extends RuntimeException {
        private final String backend;

        public LlmCallFailedException(String backend, String message, Throwable cause) {
            super(message, cause);
            this.backend = backend;
        }

        /** The route id of the backend that failed. */
        public String backend() {
            return backend;
        }
    }

    /** The server failed: 5xx, an unreadable answer, no connection, no answer in time. Counts against its breaker. */
    public static class LlmServerException extends LlmCallFailedException {
        private final boolean down;

        public LlmServerException(String backend, String message, boolean down, Throwable cause) {
            super(backend, message, cause);
            this.down = down;
        }

        /** The server looks down (refused, timed out): its breaker opens at once instead of after a few failures. */
        public boolean down() {
            return down;
        }
    }

    /** The server is busy (429, or 503 with Retry-After): it is skipped until {@link #retryAfterMillis()} has passed. */
    public static class LlmBusyException extends LlmCallFailedException {
        private final long retryAfterMillis;

        public LlmBusyException(String backend, String message, long retryAfterMillis) {
            super(backend, message, null);
            this.retryAfterMillis = retryAfterMillis;
        }

        public long retryAfterMillis() {
            return retryAfterMillis;
        }
    }

    /**
     * The backend is misconfigured, the same for every task (401/403: API key; 404: model or path; 405: protocol; a
     * request the server does not understand): it is taken out until a probe succeeds, the task goes elsewhere.
     */
    public static class BackendMisconfiguredException extends LlmCallFailedException {
        public BackendMisconfiguredException(String backend, String message, Throwable cause) {
            super(backend, message, cause);
        }
    }

    /** The server refused the request for its content (prompt too long, 413, content policy): dead-letter the task. */
    public static class LlmRejectedException extends RuntimeException {
        private final int attempts;

        public LlmRejectedException(String message, int attempts) {
            super(message);
            this.attempts = attempts;
        }

        public int attempts() {
            return attempts;
        }
    }

    /** No backend can take requests (all down, misconfigured or busy) for longer than the hold: requeue, pause. */
    public static class BackendsUnavailableException extends RuntimeException {
        public BackendsUnavailableException(String message) {
            super(message);
        }
    }
}
