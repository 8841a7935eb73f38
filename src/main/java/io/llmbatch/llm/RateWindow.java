package io.llmbatch.llm;

import java.util.ArrayDeque;
import java.util.Deque;

/**
 * Requests and tokens a backend took over the last minute, for servers sold by requests and tokens per minute
 * ({@code ;rpm=N;tpm=N}). A call reserves its estimated tokens when it starts and settles them with what the
 * server reports when it ends, so the limit holds while calls are in flight.
 */
final class RateWindow {

    static final long MINUTE_MILLIS = 60_000;

    /** One call: when it started and the tokens it counts for. */
    static final class Call {
        final long at;
        long tokens;

        Call(long at, long tokens) {
            this.at = at;
            this.tokens = tokens;
        }
    }

    private final int rpm;
    private final long tpm;
    private final Deque<Call> calls = new ArrayDeque<>();
    private long tokens;

    RateWindow(int rpm, long tpm) {
        this.rpm = rpm;
        this.tpm = tpm;
    }

    boolean limited() {
        return rpm > 0 || tpm > 0;
    }

    /** Millis until a call of {@code estimate} tokens fits (0: now). A call bigger than the whole limit fits an empty minute. */
    synchronized long waitMillis(long now, long estimate) {
        expire(now);
        long wait = 0;
        if (rpm > 0 && calls.size() >= rpm) {
            wait = calls.peekFirst().at + MINUTE_MILLIS - now;
        }
        if (tpm > 0 && tokens > 0 && tokens + estimate > tpm) {
            long freed = 0;
            for (Call c : calls) { // the minute must forget enough calls for this one to fit
                freed += c.tokens;
                if (tokens - freed + estimate <= tpm) {
                    wait = Math.max(wait, c.at + MINUTE_MILLIS - now);
                    break;
                }
            }
            if (tokens - freed + estimate > tpm) {
                wait = Math.max(wait, calls.peekLast().at + MINUTE_MILLIS - now);
            }
        }
        return Math.max(0, wait);
    }

    /** Counts a call starting now. */
    synchronized Call reserve(long now, long estimate) {
        Call c = new Call(now, estimate);
        calls.addLast(c);
        tokens += estimate;
        return c;
    }

    /** The call ended: it counts for the tokens the server reported (or stays at the estimate when it did not say). */
    synchronized void settle(Call c, Long actual) {
        if (actual != null && calls.contains(c)) {
            tokens += actual - c.tokens;
            c.tokens = actual;
        }
    }

    private void expire(long now) {
        while (!calls.isEmpty() && calls.peekFirst().at + MINUTE_MILLIS <= now) {
            tokens -= calls.removeFirst().tokens;
        }
    }
}
