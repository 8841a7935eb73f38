package io.llmbatch.llm;

import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;

import com.fasterxml.jackson.databind.JsonNode;
import org.apache.camel.AsyncCallback;
import org.apache.camel.AsyncProcessor;
import org.apache.camel.CamelContext;
import org.apache.camel.Exchange;
import org.apache.camel.processor.loadbalancer.LoadBalancerSupport;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.llmbatch.llm.LlmExceptions.BackendsUnavailableException;
import io.llmbatch.llm.LlmExceptions.LlmCallFailedException;
import io.llmbatch.ops.Meters;

/**
 * The gateway route's load balancer ({@code loadBalance: customLoadBalancer: llmBalancer}): Camel has no least-busy
 * strategy, and the backends come from configuration, so this picks the backend and the route's {@code toD} calls its
 * {@code llm-backend-N} route.
 *
 * <ul>
 * <li><b>least-busy</b>: the usable backend with the most free capacity, (in flight + 1) / slots, never more requests
 * than its slots (the task waits for a free slot here rather than in the server's queue); {@code round-robin} for
 * comparison. Usable: its circuit breaker closed, not taken out as misconfigured, not asked to wait (Retry-After),
 * within its requests and tokens per minute.</li>
 * <li>A retry (the gateway route redelivers a failed call) prefers a backend this task has not failed on this round;
 * once every usable backend failed it, the next round waits {@code backoff} ms, doubling.</li>
 * <li><b>No usable backend</b> (all down, misconfigured or busy): the task is held here, waiting for a probe to bring
 * one back, for up to {@code hold} ms; only then {@link BackendsUnavailableException} sends it back to the queue and
 * the worker pauses. An outage shorter than the hold costs no redelivery at all.</li>
 * </ul>
 */
public final class LlmBalancer extends LoadBalancerSupport {

    /** Exchange property with the task's {@link Attempts}. */
    public static final String ATTEMPTS = "llmbatchAttempts";
    /** Exchange property: System.nanoTime() when the current call started. */
    public static final String CALL_STARTED = "llmbatchCallStarted";
    private static final Logger LOG = LoggerFactory.getLogger(LlmBalancer.class);
    private static final long MAX_BACKOFF_MILLIS = 30_000;
    private static final long SLOT_WAIT_MILLIS = 200;

    /** How requests are spread. */
    public enum Balance {
        LEAST_BUSY, ROUND_ROBIN;

        public static Balance parse(String value) {
            try {
                return valueOf(value.trim().toUpperCase(Locale.ROOT).replace('-', '_'));
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("llmbatch.llm.balance: unknown strategy '" + value + "' (least-busy or round-robin)");
            }
        }
    }

    /** One task's calls: which backends it failed on, this round and ever, and the next backoff. */
    public static final class Attempts {
        final Set<String> failedOn = new HashSet<>();
        final Set<String> thisRound = new HashSet<>();
        int calls;
        long backoff;

        /** LLM calls made for the task so far. */
        public int calls() {
            return calls;
        }

        /** Whether the task already failed on this backend (its breaker counted that failure). */
        public boolean failedOn(String backend) {
            return failedOn.contains(backend);
        }
    }

    private final CamelContext camelContext;
    private final LlmBackends backends;
    private final Balance balance;
    private final long maxTokens;
    private int rotation;
    private volatile long holdingSince;
    /** A hold expired and no backend became usable since: the worker is pausing, the next tasks go back at once. */
    private volatile boolean outage;

    public LlmBalancer(CamelContext camelContext, LlmBackends backends, Balance balance, long maxTokens) {
        this.camelContext = camelContext;
        this.backends = backends;
        this.balance = balance;
        this.maxTokens = maxTokens;
    }

    /** The task's attempts, created on its first call. */
    public static Attempts attempts(Exchange exchange) {
        Attempts a = exchange.getProperty(ATTEMPTS, Attempts.class);
        if (a == null) {
            a = new Attempts();
            exchange.setProperty(ATTEMPTS, a);
        }
        return a;
    }

    /**
     * The gateway route's one step (the {@code toD} to the chosen backend's route). This bean outlives the route: when
     * the route file is edited, the new route's step replaces the old one.
     */
    @Override
    public void addProcessor(AsyncProcessor processor) {
        for (AsyncProcessor old : getProcessors()) {
            removeProcessor(old);
        }
        super.addProcessor(processor);
    }

    @Override
    public boolean process(Exchange exchange, AsyncCallback callback) {
        AsyncProcessor target = doGetProcessors()[0];
        Attempts a = attempts(exchange);
        Backend b;
        RateWindow.Call rate;
        try {
            long estimate = estimateTokens(exchange);
            b = acquire(a, estimate);
            rate = b.window.limited() ? b.window.reserve(System.currentTimeMillis(), estimate) : null;
        } catch (RuntimeException e) {
            exchange.setException(e);
            callback.done(true);
            return true;
        }
        a.calls++;
        exchange.setProperty(LlmBackends.BACKEND, b.id);
        exchange.setProperty(LlmBackends.MODEL, backends.modelFor(b, requestModel(exchange)));
        long start = System.nanoTime();
        exchange.setProperty(CALL_STARTED, start);
        return target.process(exchange, doneSync -> {
            release(exchange, a, b, rate, start);
            callback.done(doneSync);
        });
    }

    /**
     * Records the call's outcome, then frees its slot: freed first, another task could take the slot of a backend that
     * just refused the connection before its breaker opened, and call a dead server a second time.
     */
    private void release(Exchange exchange, Attempts a, Backend b, RateWindow.Call rate, long start) {
        try {
            record(exchange, a, b, rate, start);
        } finally {
            b.inFlight.decrementAndGet();
            backends.changed();
        }
    }

    private void record(Exchange exchange, Attempts a, Backend b, RateWindow.Call rate, long start) {
        long nanos = System.nanoTime() - start;
        Throwable e = exchange.getException();
        if (e == null) {
            backends.succeeded(b);
            Completion c = exchange.getMessage().getBody(Completion.class);
            Meters.llmCall(b.url(), "ok", nanos);
            if (c != null) {
                Meters.tokens(b.url(), "prompt", c.promptTokens());
                Meters.tokens(b.url(), "completion", c.completionTokens());
                if (rate != null && c.promptTokens() != null && c.completionTokens() != null) {
                    b.window.settle(rate, (long) c.promptTokens() + c.completionTokens());
                }
            }
        } else {
            LlmCallFailedException failure = backends.failed(b, e, nanos / 1_000_000);
            if (failure == null) {
                Meters.llmCall(b.url(), "refused", nanos);
            } else {
                exchange.setException(failure);
                a.failedOn.add(b.id);
                a.thisRound.add(b.id);
                Meters.llmCall(b.url(), failure.getCause() instanceof java.util.concurrent.TimeoutException
                                        || failure.getCause() instanceof java.net.SocketTimeoutException ? "timeout" : "error", nanos);
                Meters.retried("llm");
                LOG.warn("LLM call {} of a task failed on {}: {}", a.calls, b.id, failure.getMessage());
            }
        }
    }

    /**
     * A backend for the next call with its slot taken, waiting while every usable backend is full, rate-limited or
     * backing off, and holding the task (up to {@code hold} ms) while none is usable at all.
     */
    Backend acquire(Attempts a, long estimate) {
        long holdUntil = 0;
        while (true) {
            if (!camelContext.getStatus().isStarted() || camelContext.isStopping()) {
                throw new BackendsUnavailableException("stopping: the task goes back to the queue");
            }
            long seen = backends.changes(); // before looking: a slot freed after this wakes the wait below at once
            long now = System.currentTimeMillis();
            List<Backend> usable = backends.all().stream().filter(b -> b.usable(now)).toList();
            long wait;
            if (usable.isEmpty()) {
                if (outage) {
                    throw new BackendsUnavailableException("no LLM backend usable (" + describeStates(now) + ")");
                }
                if (holdUntil == 0) {
                    holdUntil = now + backends.settings().holdMillis();
                    if (holdingSince == 0) {
                        holdingSince = now;
                        LOG.warn("Every LLM backend is out ({}): tasks wait up to {} s for one to come back before they return to "
                                 + "the queue", describeStates(now), backends.settings().holdMillis() / 1000);
                    }
                }
                if (now >= holdUntil) {
                    outage = true;
                    throw new BackendsUnavailableException("no LLM backend usable for " + backends.settings().holdMillis() / 1000
                                                           + " s (" + describeStates(now) + ")");
                }
                wait = Math.min(holdUntil - now, backends.settings().probeIntervalMillis());
            } else {
                holdingSince = 0;
                outage = false;
                if (a.thisRound.containsAll(usable.stream().map(Backend::id).toList())) {
                    // every usable backend failed this task: wait before the next round
                    a.backoff = a.backoff == 0 ? backends.settings().backoffMillis() : Math.min(a.backoff * 2, MAX_BACKOFF_MILLIS);
                    a.thisRound.clear();
                    sleep(a.backoff);
                    continue;
                }
                Backend chosen = choose(usable, a.thisRound, now, estimate);
                if (chosen != null) {
                    return chosen;
                }
                wait = SLOT_WAIT_MILLIS; // full or over its per-minute limits: woken when a slot frees
                for (Backend b : usable) {
                    long w = b.window.limited() ? b.window.waitMillis(now, estimate) : 0;
                    if (w > 0) {
                        wait = Math.min(wait, w);
                    }
                }
            }
            try {
                backends.awaitChange(seen, wait);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new BackendsUnavailableException("interrupted while waiting for an LLM backend");
            }
        }
    }

    /**
     * Picks among the usable backends this task has not failed on this round and counts the request in flight on it;
     * null when each of them is full or over its per-minute limits (the task then waits for a slot there rather than
     * going back to a backend that just failed it).
     */
    synchronized Backend choose(List<Backend> usable, Set<String> avoid, long now, long estimate) {
        int n = usable.size();
        rotation = (rotation + 1) % Math.max(1, n);
        Backend best = null;
        double bestLoad = Double.MAX_VALUE;
        for (int i = 0; i < n; i++) {
            Backend b = usable.get((rotation + i) % n);
            if (avoid.contains(b.id)) {
                continue;
            }
            if (balance == Balance.LEAST_BUSY && b.inFlight.get() >= b.slots()) {
                continue;
            }
            if (b.window.limited() && b.window.waitMillis(now, estimate) > 0) {
                continue;
            }
            double load = balance == Balance.ROUND_ROBIN ? 0 : (b.inFlight.get() + 1.0) / b.slots();
            if (load < bestLoad) {
                best = b;
                bestLoad = load;
            }
        }
        if (best != null) {
            best.inFlight.incrementAndGet();
            best.requests.incrementAndGet();
        }
        return best;
    }

    /** The model the task's request names (its job's), or null. */
    private static String requestModel(Exchange exchange) {
        return exchange.getVariable(LlmBackends.REQUEST) instanceof JsonNode r && r.path("model").isTextual() ? r.get("model").asText() : null;
    }

    /** Tokens a call may take, for tokens-per-minute limits: the prompt's characters (a generous count) plus max_tokens. */
    private long estimateTokens(Exchange exchange) {
        Object request = exchange.getVariable(LlmBackends.REQUEST);
        if (!(request instanceof JsonNode r)) {
            return maxTokens;
        }
        long prompt = r.path("prompt").asText("").length() + r.path("system").asText("").length();
        return prompt + r.path("params").path("max_tokens").asLong(maxTokens);
    }

    private String describeStates(long now) {
        StringBuilder s = new StringBuilder();
        for (Backend b : backends.all()) {
            s.append(s.length() == 0 ? "" : "; ").append(b).append(": ").append(b.state(now));
        }
        return s.toString();
    }

    private static void sleep(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new BackendsUnavailableException("interrupted while backing off");
        }
    }
}
