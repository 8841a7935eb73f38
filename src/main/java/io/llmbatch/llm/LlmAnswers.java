package io.llmbatch.llm;

import java.io.IOException;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.regex.Pattern;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.camel.Exchange;
import org.apache.camel.Message;

import io.llmbatch.llm.Endpoint.Api;
import io.llmbatch.llm.LlmExceptions.BackendMisconfiguredException;
import io.llmbatch.llm.LlmExceptions.LlmBusyException;
import io.llmbatch.llm.LlmExceptions.LlmRejectedException;
import io.llmbatch.llm.LlmExceptions.LlmServerException;

/**
 * Reads an LLM server's HTTP answer, in two steps of the backend route, and decides whose fault a failure is.
 *
 * <p>{@link #answer} runs inside the circuit breaker: a 200 becomes the {@link Completion}; a failure of the server
 * (5xx, an unreadable 200) is thrown, so the breaker counts it, but only the first time a task fails on that backend:
 * one prompt that makes a server fail cannot take a healthy server out of service. {@link #check} runs after the
 * breaker, where a throw does not count against the server: a repeated server failure, a busy server (429, 503 with
 * Retry-After), a misconfigured backend (401, 403, 404, 405, other 4xx, a request the server cannot parse) and a
 * request the server blames on the prompt (413; 400/422 saying the prompt is too long or not allowed).
 */
public final class LlmAnswers {

    /** Property set when a task's repeated server failure was left for {@link #check} (not counted by the breaker). */
    static final String SERVER_FAILURE = "llmbatchServerFailure";
    private static final ObjectMapper JSON = new ObjectMapper();
    /** How servers say that a request failed because of its prompt (vLLM, llama.cpp, OpenAI, TGI, Ollama wording). */
    private static final Pattern BLAMES_PROMPT = Pattern.compile(
            "context[ _]length|context size|maximum context|context window|exceed_context|too many tokens|prompt is too long"
            + "|input is too long|too long|reduce the length|maximum (input|prompt) length|content[ _](filter|policy|management)"
            + "|invalid_prompt|flagged|safety", Pattern.CASE_INSENSITIVE);
    /** Longest Retry-After honoured: a server asking for more is retried then, or by then taken out by its failures. */
    private static final long MAX_RETRY_AFTER_MILLIS = 300_000;

    private final LlmBackends backends;

    public LlmAnswers(LlmBackends backends) {
        this.backends = backends;
    }

    /** Inside the breaker: the completion of a 200, a counted failure for a server fault; anything else passes on. */
    public void answer(Exchange exchange) {
        Backend b = backend(exchange);
        Message msg = exchange.getMessage();
        int status = status(msg);
        boolean counted = !LlmBalancer.attempts(exchange).failedOn(b.id);
        String failure = null;
        if (status == 200) {
            String body = msg.getBody(String.class);
            try {
                msg.setBody(completion(b, body, exchange));
                return;
            } catch (IOException | IllegalStateException e) {
                failure = b + ": unreadable answer (" + e.getMessage() + "): " + abbreviate(body);
            }
        } else if (status >= 500 && status != 501 && !(status == 503 && msg.getHeader("Retry-After") != null)) {
            failure = b + ": HTTP " + status + " " + abbreviate(msg.getBody(String.class));
        }
        if (failure != null) {
            if (counted) {
                throw new LlmServerException(b.id, failure, false, null);
            }
            exchange.setProperty(SERVER_FAILURE, failure);
        }
    }

    /** After the breaker: returns the completion, or throws what the answer means (nothing here counts against the server). */
    public Completion check(Exchange exchange) {
        Message msg = exchange.getMessage();
        if (msg.getBody() instanceof Completion c) {
            return c;
        }
        Backend b = backend(exchange);
        String repeated = exchange.getProperty(SERVER_FAILURE, String.class);
        if (repeated != null) {
            exchange.removeProperty(SERVER_FAILURE);
            throw new LlmServerException(b.id, repeated + " (again for this task: not counted against the server)", false, null);
        }
        int status = status(msg);
        String body = abbreviate(msg.getBody(String.class));
        String http = b + " answered HTTP " + status + " " + body;
        int attempts = LlmBalancer.attempts(exchange).calls();
        switch (status) {
            case 429, 503 -> throw new LlmBusyException(b.id, http, retryAfter(msg.getHeader("Retry-After", String.class)));
            case 401, 403 -> throw new BackendMisconfiguredException(b.id, http + ": it wants an API key, or another one: set "
                    + "LLM_API_KEY (llmbatch.llm.api-key) or ;api-key-env=NAME on its endpoint", null);
            case 404 -> throw new BackendMisconfiguredException(b.id, http + ": " + (b.endpoint.api() == Api.OPENAI
                    ? "no model '" + backends.modelFor(b) + "' there (llmbatch.llm.model, or ;model= on its endpoint: the name this server "
                      + "knows it by; GET " + b.endpoint.modelsUrl() + " lists them) or no /v1/chat/completions (is it api=chatglm?)"
                    : "no such path: is it an OpenAI-compatible server (;api=openai)?"), null);
            case 405, 501 -> throw new BackendMisconfiguredException(b.id, http + ": it does not take this request at "
                    + b.endpoint.completionUrl() + ": check ;api=" + (b.endpoint.api() == Api.OPENAI ? "chatglm" : "openai"), null);
            case 413 -> throw new LlmRejectedException(http + ": the request is too large for it", attempts);
            case 400, 422 -> {
                if (BLAMES_PROMPT.matcher(body).find()) {
                    throw new LlmRejectedException(http, attempts);
                }
                throw new BackendMisconfiguredException(b.id, http + ": it cannot use the request llm-batch sends (the same for "
                        + "every task): check the request route (routes/llm-gateway.camel.yaml) and its protocol (;api=)", null);
            }
            default -> throw new BackendMisconfiguredException(b.id, http, null);
        }
    }

    private Completion completion(Backend b, String body, Exchange exchange) throws IOException {
        JsonNode answer = JSON.readTree(body == null ? "" : body);
        if (answer == null || !answer.isObject()) {
            throw new IllegalStateException("not a JSON object");
        }
        Long started = exchange.getProperty(LlmBalancer.CALL_STARTED, Long.class);
        double seconds = started == null ? 0 : (System.nanoTime() - started) / 1e9;
        int attempts = LlmBalancer.attempts(exchange).calls();
        if (b.endpoint.api() == Api.OPENAI) {
            JsonNode choice = answer.path("choices").path(0);
            JsonNode text = choice.path("message").path("content");
            if (!text.isTextual()) {
                throw new IllegalStateException("no choices[0].message.content");
            }
            JsonNode usage = answer.path("usage");
            return new Completion(text.asText(), choice.path("finish_reason").asText(null), answer.path("model").asText(null), b.url(),
                    usage.has("prompt_tokens") ? usage.get("prompt_tokens").asInt() : null,
                    usage.has("completion_tokens") ? usage.get("completion_tokens").asInt() : null, attempts, seconds, answer);
        }
        JsonNode text = answer.path("response");
        if (!text.isTextual()) {
            throw new IllegalStateException("no 'response'");
        }
        return new Completion(text.asText(), null, null, b.url(), null, null, attempts, seconds);
    }

    private Backend backend(Exchange exchange) {
        return backends.get(exchange.getProperty(LlmBackends.BACKEND, String.class));
    }

    private static int status(Message msg) {
        Integer status = msg.getHeader(Exchange.HTTP_RESPONSE_CODE, Integer.class);
        return status == null ? 0 : status;
    }

    /** Retry-After in seconds or as an HTTP date; 1 s when absent or unreadable. */
    static long retryAfter(String header) {
        long millis = 1_000;
        if (header != null && !header.isBlank()) {
            String h = header.trim();
            try {
                millis = Math.round(Double.parseDouble(h) * 1000);
            } catch (NumberFormatException notSeconds) {
                try {
                    millis = ZonedDateTime.parse(h, DateTimeFormatter.RFC_1123_DATE_TIME).toInstant().toEpochMilli()
                             - System.currentTimeMillis();
                } catch (RuntimeException notADate) {
                    millis = 1_000;
                }
            }
        }
        return Math.max(0, Math.min(millis, MAX_RETRY_AFTER_MILLIS));
    }

    static String abbreviate(String s) {
        String oneLine = s == null ? "" : s.replaceAll("\\s+", " ").trim();
        return oneLine.length() > 300 ? oneLine.substring(0, 300) + "..." : oneLine;
    }
}
