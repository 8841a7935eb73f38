package io.llmbatch.llm;

/** What the LLM gateway can fail with; the worker route decides per type what happens to the task. */
public final class LlmExceptions {

    private LlmExceptions() {
    }

    /** Base type: carries how many LLM calls were made for the task. */
    public static class LlmException extends RuntimeException {
        private final int attempts;

        LlmException(String message, int attempts, Throwable cause) {
            super(message, cause);
            this.attempts = attempts;
        }

        public int attempts() {
            return attempts;
        }
    }

    /** A backend refused the request itself (400, 401, 404, 422, ...): retrying cannot help, dead-letter the task. */
    public static class LlmRejectedException extends LlmException {
        LlmRejectedException(String message, int attempts) {
            super(message, attempts, null);
        }
    }

    /** Every attempt failed although some backend may be up (e.g. 500s for this prompt): dead-letter the task. */
    public static class LlmFailedException extends LlmException {
        LlmFailedException(String message, int attempts, Throwable cause) {
            super(message, attempts, cause);
        }
    }

    /** Every backend is down: the task goes back to the queue and the worker pauses until one returns. */
    public static class BackendsUnavailableException extends LlmException {
        BackendsUnavailableException(String message, int attempts) {
            super(message, attempts, null);
        }
    }
}
