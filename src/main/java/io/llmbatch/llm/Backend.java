package io.llmbatch.llm;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

import io.github.resilience4j.circuitbreaker.CircuitBreaker;

/**
 * One LLM server at run time: its route ({@code llm-backend-N}), its circuit breaker (the route's circuitBreaker EIP
 * uses this instance, the balancer reads its state), requests in flight against its slots, and why it may be out:
 * misconfigured (until a probe succeeds), busy (until its Retry-After), or over its per-minute limits.
 */
public final class Backend {

    final String id;
    final Endpoint endpoint;
    final CircuitBreaker breaker;
    final RateWindow window;
    final AtomicInteger inFlight = new AtomicInteger();
    final AtomicLong requests = new AtomicLong();
    final AtomicLong failures = new AtomicLong();
    /** Why the backend is taken out (401, 404, ...), or null. */
    volatile String misconfigured;
    /** Not before this time (Retry-After of a 429/503). */
    volatile long notBefore;
    /** When it was last probed. */
    volatile long lastProbe;
    /** The last failure, for health and logs. */
    volatile String lastError;

    Backend(String id, Endpoint endpoint, CircuitBreaker breaker) {
        this.id = id;
        this.endpoint = endpoint;
        this.breaker = breaker;
        this.window = new RateWindow(endpoint.rpm(), endpoint.tpm());
    }

    public String id() {
        return id;
    }

    public String url() {
        return endpoint.url();
    }

    public Endpoint endpoint() {
        return endpoint;
    }

    public int slots() {
        return endpoint.slots();
    }

    public int inFlight() {
        return inFlight.get();
    }

    public long requests() {
        return requests.get();
    }

    public long failures() {
        return failures.get();
    }

    public String misconfigured() {
        return misconfigured;
    }

    public String lastError() {
        return lastError;
    }

    /** Its circuit breaker, the instance its route's circuitBreaker EIP uses. */
    public CircuitBreaker breaker() {
        return breaker;
    }

    public CircuitBreaker.State breakerState() {
        return breaker.getState();
    }

    /** Can take a task now (slots and rate limits aside): its breaker closed, not misconfigured, not asked to wait. */
    public boolean usable(long now) {
        return misconfigured == null && breaker.getState() == CircuitBreaker.State.CLOSED && now >= notBefore;
    }

    /** A readable state for health checks and logs. */
    public String state(long now) {
        if (misconfigured != null) {
            return "taken out, misconfigured: " + misconfigured;
        }
        return switch (breaker.getState()) {
            case CLOSED -> now < notBefore ? "busy, asked to wait " + (notBefore - now) + " ms" : "up, " + inFlight() + "/" + slots() + " in flight";
            case OPEN, HALF_OPEN -> "down, circuit breaker " + breaker.getState().name().toLowerCase(java.util.Locale.ROOT)
                                    + (lastError == null ? "" : ": " + lastError);
            default -> "circuit breaker " + breaker.getState();
        };
    }

    @Override
    public String toString() {
        return endpoint.url();
    }
}
