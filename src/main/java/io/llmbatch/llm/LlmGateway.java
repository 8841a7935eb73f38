package io.llmbatch.llm;

import io.llmbatch.ops.Meters;
import java.io.IOException;
import java.net.ConnectException;
import java.net.http.HttpClient;
import java.net.http.HttpConnectTimeoutException;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.time.Duration;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.llmbatch.llm.LlmExceptions.BackendsUnavailableException;
import io.llmbatch.llm.LlmExceptions.LlmFailedException;
import io.llmbatch.llm.LlmExceptions.LlmRejectedException;

/**
 * Sends a prompt to one of several LLM servers and returns the completion.
 *
 * <ul>
 * <li><b>Least-busy</b>: the backend with the most free capacity (fewest requests in flight relative to its
 * slots) gets the request; ties rotate. Camel's load balancers have no such strategy, and the backend list comes
 * from configuration, so it lives here. {@code round-robin} is available for comparison.</li>
 * <li><b>Failover</b>: a connect error, timeout, 5xx, 429 or 503 sends the task to another backend; the failing
 * one cools down (is skipped for {@code cooldown} ms, then gets one probe request). Connection failures, timeouts,
 * 429 and 503 cool a backend at once; other 5xx after three in a row (a ChatGLM 500 can be one bad prompt).</li>
 * <li>At most {@code maxAttempts} calls per task, with exponential backoff once every backend was tried.</li>
 * <li>400, 401, 403, 404, 422 (and other 4xx) are the request's fault: {@link LlmRejectedException}, no retry.</li>
 * <li>When every backend cools down: {@link BackendsUnavailableException}, so the worker requeues the task and
 * pauses; {@link #probe()} tells when one is back.</li>
 * </ul>
 */
public class LlmGateway {

    private static final Logger LOG = LoggerFactory.getLogger(LlmGateway.class);
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int FAILURES_BEFORE_COOLDOWN = 3;

    /** How requests are spread over the backends. */
    public enum Balance { LEAST_BUSY, ROUND_ROBIN }

    /** A completion and how it was obtained. */
    public record Completion(String text, String backend, String model, Integer promptTokens, Integer completionTokens,
                             int attempts, double seconds) {
    }

    public record Settings(String model, int maxTokens, double temperature, int chatglmMaxLength, Duration connectTimeout,
                           Duration responseTimeout, int maxAttempts, long cooldownMillis, long backoffMillis, Balance balance) {
    }

    private final List<Backend> backends;
    private final Settings settings;
    private final HttpClient http;
    private int rotation;

    public LlmGateway(List<Backend> backends, Settings settings) {
        this.backends = List.copyOf(backends);
        this.settings = settings;
        this.http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(settings.connectTimeout()).build();
        for (Backend b : this.backends) {
            Meters.inFlight(b.url, b.inFlight::get);
        }
    }

    public List<Backend> backends() {
        return backends;
    }

    /** Requests the backends can serve at once: the worker's default concurrency. */
    public int totalSlots() {
        return backends.stream().mapToInt(Backend::slots).sum();
    }

    public Completion complete(String prompt) {
        Set<Backend> tried = new HashSet<>();
        long backoff = settings.backoffMillis();
        Exception last = null;
        int attempt = 0;
        while (attempt < settings.maxAttempts()) {
            Backend backend = chooseOrWait(tried);
            if (backend == null) {
                break;
            }
            attempt++;
            long start = System.nanoTime();
            try {
                Completion c = call(backend, prompt, attempt, start);
                succeeded(backend);
                Meters.llmCall(backend.url, "ok", System.nanoTime() - start);
                Meters.tokens(backend.url, "prompt", c.promptTokens());
                Meters.tokens(backend.url, "completion", c.completionTokens());
                return c;
            } catch (LlmRejectedException e) {
                backend.failures.incrementAndGet();
                Meters.llmCall(backend.url, "refused", System.nanoTime() - start);
                throw e;
            } catch (RetryableException e) {
                last = e;
                Meters.llmCall(backend.url, e.getCause() instanceof java.net.http.HttpTimeoutException ? "timeout" : "error",
                        System.nanoTime() - start);
                Meters.retried("llm");
                failed(backend, e);
                tried.add(backend);
                if (tried.size() >= backends.size()) { // every backend had its chance: wait before the next round
                    tried.clear();
                    sleep(backoff);
                    backoff = Math.min(backoff * 2, 30_000);
                }
            } finally {
                backend.inFlight.decrementAndGet();
                slotFreed();
            }
        }
        if (allCooling()) {
            throw new BackendsUnavailableException("every LLM backend is down or cooling down ("
                                                   + backends + ")" + (last == null ? "" : "; last error: " + last.getMessage()), attempt);
        }
        throw new LlmFailedException("no LLM backend answered after " + attempt + " attempt(s): "
                                     + (last == null ? "none tried" : last.getMessage()), attempt, last);
    }

    /**
     * Picks a backend and counts the request in flight on it; {@code null} when every backend cools down, is
     * full (least-busy never sends a backend more requests than its slots), or is being probed after its cool-down.
     */
    synchronized Backend choose(Set<Backend> avoid) {
        long now = System.currentTimeMillis();
        Backend best = null;
        double bestLoad = Double.MAX_VALUE;
        int n = backends.size();
        rotation = (rotation + 1) % n;
        for (int i = 0; i < n; i++) {
            Backend b = backends.get((rotation + i) % n);
            if (b.coolingAt(now) || (b.consecutiveFailures > 0 && b.inFlight.get() > 0 && b.coolUntil > 0)) {
                continue; // cooling down, or its single probe request is in flight
            }
            if (settings.balance() == Balance.LEAST_BUSY && b.inFlight.get() >= b.slots) {
                continue; // full: the task waits here rather than in the server's queue
            }
            double load = settings.balance() == Balance.ROUND_ROBIN ? 0 : (b.inFlight.get() + 1.0) / b.slots;
            if (avoid.contains(b)) {
                load += 1_000; // only when nothing else is left
            }
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

    /**
     * A backend for the next call, waiting while every slot is busy (or a backend back from cool-down is answering
     * its probe); {@code null} when every backend cools down.
     */
    synchronized Backend chooseOrWait(Set<Backend> avoid) {
        while (true) {
            Backend b = choose(avoid);
            if (b != null || allCooling()) {
                return b;
            }
            try {
                wait(200); // woken by slotFreed(); the timeout notices cool-downs ending
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted while waiting for a free LLM slot", e);
            }
        }
    }

    private synchronized void slotFreed() {
        notifyAll();
    }

    public boolean allCooling() {
        long now = System.currentTimeMillis();
        return backends.stream().allMatch(b -> b.coolingAt(now));
    }

    /**
     * Asks every backend that failed lately whether it is up again (an HTTP GET; any answer below 500 counts):
     * those that answer are healthy again, the others cool down anew. Returns whether any backend can take
     * requests now.
     */
    public boolean probe() {
        boolean anyUp = false;
        for (Backend b : backends) {
            if (b.coolUntil == 0) {
                anyUp = true; // never failed since its last success
                continue;
            }
            try {
                HttpResponse<Void> r = http.send(HttpRequest.newBuilder(b.probeUri).timeout(settings.connectTimeout()).GET().build(),
                        HttpResponse.BodyHandlers.discarding());
                if (r.statusCode() < 500) {
                    LOG.info("LLM backend {} is back (probe answered {})", b, r.statusCode());
                    succeeded(b);
                    anyUp = true;
                    continue;
                }
            } catch (IOException e) {
                LOG.debug("LLM backend {} still down: {}", b, e.toString());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return false;
            }
            b.coolUntil = System.currentTimeMillis() + settings.cooldownMillis();
        }
        return anyUp;
    }

    private Completion call(Backend b, String prompt, int attempt, long start) {
        byte[] body = requestBody(b, prompt);
        HttpRequest request = HttpRequest.newBuilder(b.completionUri).timeout(settings.responseTimeout())
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofByteArray(body)).build();
        HttpResponse<String> response;
        try {
            response = http.send(request, HttpResponse.BodyHandlers.ofString());
        } catch (HttpConnectTimeoutException | ConnectException e) {
            throw new RetryableException(b + ": cannot connect (" + e.getClass().getSimpleName() + ")", true, e);
        } catch (HttpTimeoutException e) {
            throw new RetryableException(b + ": no answer within " + settings.responseTimeout().toMillis() + " ms", true, e);
        } catch (IOException e) {
            throw new RetryableException(b + ": " + e, true, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new RetryableException(b + ": interrupted", false, e);
        }
        int status = response.statusCode();
        if (status == 429 || status == 503) {
            throw new RetryableException(b + ": busy (" + status + ")", true, null);
        }
        if (status >= 500) {
            throw new RetryableException(b + ": HTTP " + status + " " + abbreviate(response.body()), false, null);
        }
        if (status != 200) {
            throw new LlmRejectedException(b + " refused the request: HTTP " + status + " " + abbreviate(response.body()), attempt);
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        try {
            JsonNode answer = JSON.readTree(response.body());
            if (b.api == Backend.Api.OPENAI) {
                JsonNode text = answer.path("choices").path(0).path("message").path("content");
                if (!text.isTextual()) {
                    throw new RetryableException(b + ": answer has no choices[0].message.content", false, null);
                }
                JsonNode usage = answer.path("usage");
                return new Completion(text.asText(), b.url, settings.model(),
                        usage.has("prompt_tokens") ? usage.get("prompt_tokens").asInt() : null,
                        usage.has("completion_tokens") ? usage.get("completion_tokens").asInt() : null, attempt, seconds);
            }
            JsonNode text = answer.path("response");
            if (!text.isTextual()) {
                throw new RetryableException(b + ": answer has no 'response'", false, null);
            }
            return new Completion(text.asText(), b.url, settings.model(), null, null, attempt, seconds);
        } catch (IOException e) {
            throw new RetryableException(b + ": answer is not JSON: " + abbreviate(response.body()), false, e);
        }
    }

    private byte[] requestBody(Backend b, String prompt) {
        Map<String, Object> body = new LinkedHashMap<>();
        if (b.api == Backend.Api.OPENAI) {
            body.put("model", settings.model());
            body.put("messages", List.of(Map.of("role", "user", "content", prompt)));
            body.put("max_tokens", settings.maxTokens());
            body.put("temperature", settings.temperature());
        } else {
            body.put("prompt", prompt);
            body.put("history", List.of());
            body.put("max_length", settings.chatglmMaxLength());
            body.put("top_p", 0.7);
            body.put("temperature", settings.temperature());
        }
        try {
            return JSON.writeValueAsBytes(body);
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    private void succeeded(Backend b) {
        b.consecutiveFailures = 0;
        b.coolUntil = 0;
    }

    private void failed(Backend b, RetryableException e) {
        b.failures.incrementAndGet();
        int inARow = ++b.consecutiveFailures;
        if (e.coolNow || inARow >= FAILURES_BEFORE_COOLDOWN) {
            b.coolUntil = System.currentTimeMillis() + settings.cooldownMillis();
            LOG.warn("LLM backend {} cools down for {} ms: {}", b, settings.cooldownMillis(), e.getMessage());
        } else {
            LOG.warn("LLM backend {} failed ({} in a row): {}", b, inARow, e.getMessage());
        }
    }

    private static void sleep(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static String abbreviate(String s) {
        String oneLine = s == null ? "" : s.replaceAll("\\s+", " ").trim();
        return oneLine.length() > 300 ? oneLine.substring(0, 300) + "..." : oneLine;
    }

    /** A failure another backend (or a later attempt) may not have; {@code coolNow} when the backend looks down. */
    static final class RetryableException extends RuntimeException {
        final boolean coolNow;

        RetryableException(String message, boolean coolNow, Throwable cause) {
            super(message, cause);
            this.coolNow = coolNow;
        }
    }
}
