package io.llmbatch.llm;

import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Semaphore;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;

/**
 * A stand-in LLM server for tests, benchmarks and trying the pipeline without a GPU. It speaks both
 * protocols the worker supports: ChatGLM's {@code api.py} ({@code POST /} → {@code response}) and the
 * OpenAI-compatible {@code POST /v1/chat/completions} (with {@code usage}). Its text is <b>simulated</b>:
 * deterministic for a prompt, and says so.
 *
 * <p>Knobs: latency per request, slots (requests served at once; more wait, as on a real GPU server),
 * failure rate (answers 500), hang rate (never answers until the server stops), and the manners of real servers: an
 * API key it requires (401 without it, as vLLM {@code --api-key}), the models it serves (404 for another, as vLLM and
 * Ollama; listed on {@code GET /v1/models}), answers that stall after their headers, 429 with Retry-After. A GET of
 * any other path answers 200, as a health endpoint does even while completions fail. It records the requests it got
 * (headers and body) and counts completions per prompt. Run it alone with
 * {@code java -cp target/llm-batch.jar io.llmbatch.llm.LlmSimulator --port 10000 --latency-ms 100 --slots 4}.
 */
public final class LlmSimulator implements AutoCloseable {

    private static final ObjectMapper JSON = new ObjectMapper();

    static {
        // answer without Nagle's delay, as real servers (uvicorn, vLLM) do; the JDK server otherwise adds ~40 ms
        // per request (headers and body leave in two packets, the second waits for the client's delayed ACK)
        if (System.getProperty("sun.net.httpserver.nodelay") == null) {
            System.setProperty("sun.net.httpserver.nodelay", "true");
        }
    }

    private final HttpServer server;
    private final ExecutorService executor = Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r, "llm-simulator");
        t.setDaemon(true);
        return t;
    });
    private final Semaphore slots;
    private final CountDownLatch stopped = new CountDownLatch(1);
    private volatile long latencyMs;
    private volatile double failRate;
    private volatile double hangRate;
    private final AtomicLong served = new AtomicLong();
    private final AtomicLong failed = new AtomicLong();
    private final AtomicLong hung = new AtomicLong();
    private final AtomicLong posts = new AtomicLong();
    private volatile String apiKey;
    private volatile List<String> models;
    private volatile double stallRate;
    private final AtomicLong busyLeft = new AtomicLong();
    private volatile String retryAfter;
    private volatile java.util.function.Predicate<String> specialPrompt = p -> false;
    private volatile int specialStatus;
    private volatile String specialBody;
    private final Map<String, AtomicLong> perPrompt = new ConcurrentHashMap<>();
    private volatile java.util.function.Function<JsonNode, Reply> replies;
    // for benchmarks: the time slots were held by a request (slot utilisation at the GPU's side)
    private long busyNanos;
    private int busyNow;
    private long busySince;
    private final Deque<Request> recent = new ArrayDeque<>();

    /** A request the simulator got: when (epoch ms), its path, its headers (lower-case names) and its JSON body. */
    public record Request(long at, String path, Map<String, String> headers, JsonNode body) {
    }

    private LlmSimulator(int port, long latencyMs, int slots, double failRate, double hangRate) throws IOException {
        this.latencyMs = latencyMs;
        this.slots = new Semaphore(slots, true);
        this.failRate = failRate;
        this.hangRate = hangRate;
        this.server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 512);
        server.setExecutor(executor);
        server.createContext("/", this::handle);
        server.start();
    }

    /** Starts a simulator on 127.0.0.1:{@code port} (0 picks a free port). */
    public static LlmSimulator start(int port, long latencyMs, int slots) throws IOException {
        return new LlmSimulator(port, latencyMs, slots, 0, 0);
    }

    public int port() {
        return server.getAddress().getPort();
    }

    public String url() {
        return "http://127.0.0.1:" + port();
    }

    public LlmSimulator failRate(double rate) {
        this.failRate = rate;
        return this;
    }

    public LlmSimulator hangRate(double rate) {
        this.hangRate = rate;
        return this;
    }

    public LlmSimulator latencyMs(long ms) {
        this.latencyMs = ms;
        return this;
    }

    /** Requires {@code Authorization: Bearer key} on completions (401 otherwise); null: no key. */
    public LlmSimulator apiKey(String key) {
        this.apiKey = key;
        return this;
    }

    /** Serves only these models: a completion naming another gets 404; {@code GET /v1/models} lists them. */
    public LlmSimulator models(String... names) {
        this.models = List.of(names);
        return this;
    }

    /** This share of completions send their headers and then never their body (until the server stops). */
    public LlmSimulator stallAfterHeadersRate(double rate) {
        this.stallRate = rate;
        return this;
    }

    /** The next {@code count} completions answer 429 with {@code Retry-After: retryAfter} (null: no header). */
    public LlmSimulator tooManyRequests(int count, String retryAfter) {
        this.retryAfter = retryAfter;
        this.busyLeft.set(count);
        return this;
    }

    /**
     * Completions whose prompt matches get this answer instead (500 for a prompt that crashes the model, 400 with a
     * context-length message for one that is too long), after the usual latency.
     */
    public LlmSimulator answerWhen(java.util.function.Predicate<String> prompt, int status, String body) {
        this.specialStatus = status;
        this.specialBody = body;
        this.specialPrompt = prompt;
        return this;
    }

    /** An answer of {@link #replies}: its text and finish reason (null: {@code stop}, or {@code length} when cut). */
    public record Reply(String text, String finishReason) {
    }

    /**
     * Answers each completion request with what {@code reply} makes of its JSON body (either protocol), instead of
     * {@link #textFor}: answers that vary per request, as sampling does (null: back to {@link #textFor}).
     */
    public LlmSimulator replies(java.util.function.Function<JsonNode, Reply> reply) {
        this.replies = reply;
        return this;
    }

    /** Completion requests received (POSTs), whatever they were answered. */
    public long posts() {
        return posts.get();
    }

    /** Completions answered with 200 for this exact prompt (the last user message, or api.py's prompt). */
    public long servedFor(String prompt) {
        AtomicLong n = perPrompt.get(prompt);
        return n == null ? 0 : n.get();
    }

    /** Completions answered with 200 per prompt. */
    public Map<String, Long> servedPerPrompt() {
        Map<String, Long> copy = new java.util.HashMap<>();
        perPrompt.forEach((k, v) -> copy.put(k, v.get()));
        return copy;
    }

    /** The last requests received (up to 1,000), oldest first. */
    public List<Request> requests() {
        synchronized (recent) {
            return new ArrayList<>(recent);
        }
    }

    /** Completions answered with 200. */
    /** Slot-milliseconds spent with a request holding a slot, including the requests in progress now. */
    public synchronized long busyMillis() {
        return (busyNanos + (busyNow == 0 ? 0 : busyNow * (System.nanoTime() - busySince))) / 1_000_000;
    }

    private synchronized void busy(int delta) {
        long now = System.nanoTime();
        busyNanos += busyNow * (now - busySince);
        busySince = now;
        busyNow += delta;
    }

    /** {@code GET /stats}: the counters. */
    private Map<String, Object> stats() {
        return Map.of("posts", posts(), "served", served(), "failed", failed(), "hung", hung(),
                "distinct_prompts", perPrompt.size(), "busy_ms", busyMillis());
    }

    public long served() {
        return served.get();
    }

    public long failed() {
        return failed.get();
    }

    public long hung() {
        return hung.get();
    }

    /** The text the simulator answers for a prompt: deterministic, and marked as simulated. */
    public static String textFor(String prompt) {
        String last = prompt.strip();
        last = last.substring(last.lastIndexOf('\n') + 1);
        int cut = last.indexOf("简介");
        String subject = cut > 0 ? last.substring(0, cut) : "该公司";
        String digest;
        try {
            digest = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256")
                    .digest(prompt.getBytes(StandardCharsets.UTF_8))).substring(0, 12);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
        return "[模拟输出 SIMULATED " + digest + "] " + subject + "是一家依法登记注册的企业，主要从事相关领域的经营活动，"
               + "秉持诚信经营、客户至上的理念，为客户提供优质的产品与服务。本段文字由 llm-batch 的 LLM 模拟器生成，并非真实模型输出。";
    }

    private void handle(HttpExchange ex) throws IOException {
        try (ex) {
            String path = ex.getRequestURI().getPath();
            boolean openai = path.startsWith("/v1/chat/completions");
            if ("GET".equals(ex.getRequestMethod())) {
                if (path.startsWith("/v1/models")) {
                    if (!authorized(ex)) {
                        send(ex, 401, "{\"error\":{\"message\":\"Unauthorized\",\"type\":\"invalid_request_error\"}}");
                        return;
                    }
                    List<Map<String, Object>> data = new ArrayList<>();
                    for (String m : models == null ? List.<String>of() : models) {
                        data.add(Map.of("id", m, "object", "model", "owned_by", "llm-batch-simulator"));
                    }
                    send(ex, 200, JSON.writeValueAsString(Map.of("object", "list", "data", data)));
                    return;
                }
                // a health probe: the server is up; /stats: the counters, for a simulator running as its own process
                send(ex, 200, "/stats".equals(path) ? JSON.writeValueAsString(stats()) : "{\"status\":\"ok\",\"simulated\":true}");
                return;
            }
            if (!openai && !"/".equals(path)) {
                send(ex, 404, "{\"detail\":\"Not Found\"}");
                return;
            }
            if (!"POST".equals(ex.getRequestMethod())) {
                send(ex, 405, "{\"detail\":\"Method Not Allowed\"}");
                return;
            }
            posts.incrementAndGet();
            JsonNode request;
            try {
                request = JSON.readTree(ex.getRequestBody());
            } catch (IOException e) {
                send(ex, openai ? 400 : 500, "{\"error\":{\"message\":\"invalid JSON\"}}");
                return;
            }
            record(path, ex, request);
            if (!authorized(ex)) {
                send(ex, 401, "{\"error\":{\"message\":\"Unauthorized\",\"type\":\"invalid_request_error\",\"code\":401}}");
                return;
            }
            if (openai && models != null && !models.contains(request.path("model").asText())) {
                send(ex, 404, "{\"error\":{\"message\":\"The model `" + request.path("model").asText()
                              + "` does not exist.\",\"type\":\"NotFoundError\",\"code\":404}}");
                return;
            }
            String prompt = openai ? lastMessage(request) : request.path("prompt").asText(null);
            if (prompt == null) {
                send(ex, openai ? 400 : 500, "{\"error\":{\"message\":\"no prompt\"}}");
                return;
            }
            if (busyLeft.getAndUpdate(n -> Math.max(0, n - 1)) > 0) {
                if (retryAfter != null) {
                    ex.getResponseHeaders().set("Retry-After", retryAfter);
                }
                send(ex, 429, "{\"error\":{\"message\":\"Too many requests\",\"type\":\"rate_limit_error\"}}");
                return;
            }
            slots.acquireUninterruptibly();
            busy(+1);
            boolean released = false;
            try {
                double dice = ThreadLocalRandom.current().nextDouble();
                if (dice < hangRate) {
                    hung.incrementAndGet();
                    stopped.await(); // never answers while the server runs
                    return;
                }
                if (latencyMs > 0) {
                    Thread.sleep(latencyMs);
                }
                if (dice < hangRate + failRate) {
                    failed.incrementAndGet();
                    send(ex, 500, "Internal Server Error");
                    return;
                }
                if (specialPrompt.test(prompt)) {
                    failed.incrementAndGet();
                    send(ex, specialStatus, specialBody);
                    return;
                }
                if (dice < hangRate + failRate + stallRate) {
                    hung.incrementAndGet();
                    ex.getResponseHeaders().set("Content-Type", "application/json");
                    ex.sendResponseHeaders(200, 1000); // the headers promise a body that never comes
                    ex.getResponseBody().write('{');
                    ex.getResponseBody().flush();
                    busy(-1);
                    slots.release(); // the model is done, the answer stalls on its way (a proxy, the network)
                    released = true;
                    stopped.await();
                    return;
                }
                java.util.function.Function<JsonNode, Reply> reply = replies;
                Reply r = reply == null ? null : reply.apply(request);
                String text = r == null ? textFor(prompt) : r.text();
                AtomicLong forPrompt = perPrompt.computeIfAbsent(prompt, k -> new AtomicLong());
                served.incrementAndGet(); // counted before the client can read it, taken back if it cannot be written
                forPrompt.incrementAndGet();
                try {
                    send(ex, 200, openai ? openaiAnswer(request, prompt, text, r == null ? null : r.finishReason()) : chatglmAnswer(text));
                } catch (IOException e) { // cut off (close(), as a server dying mid-answer): never delivered
                    served.decrementAndGet();
                    forPrompt.decrementAndGet();
                    throw e;
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } finally {
                if (!released) {
                    busy(-1);
                    slots.release();
                }
            }
        }
    }

    private boolean authorized(HttpExchange ex) {
        String key = apiKey;
        return key == null || ("Bearer " + key).equals(ex.getRequestHeaders().getFirst("Authorization"));
    }

    private void record(String path, HttpExchange ex, JsonNode body) {
        Map<String, String> headers = new java.util.TreeMap<>();
        ex.getRequestHeaders().forEach((k, v) -> headers.put(k.toLowerCase(java.util.Locale.ROOT), String.join(",", v)));
        synchronized (recent) {
            recent.addLast(new Request(System.currentTimeMillis(), path, headers, body));
            while (recent.size() > 1000) {
                recent.removeFirst();
            }
        }
    }

    private static String lastMessage(JsonNode request) {
        JsonNode messages = request.path("messages");
        return messages.isArray() && !messages.isEmpty() ? messages.get(messages.size() - 1).path("content").asText(null) : null;
    }

    private static String chatglmAnswer(String text) throws IOException {
        return JSON.writeValueAsString(Map.of("response", text, "history", List.of(), "status", 200,
                "time", LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss"))));
    }

    private static String openaiAnswer(JsonNode request, String prompt, String text, String finishReason) throws IOException {
        int promptTokens = prompt.length();
        String finish = finishReason != null ? finishReason : "stop";
        if (request.hasNonNull("max_tokens") && text.length() > request.get("max_tokens").asInt()) {
            text = text.substring(0, Math.max(0, request.get("max_tokens").asInt())); // one character a token
            finish = "length";
        }
        int completionTokens = text.length();
        return JSON.writeValueAsString(Map.of(
                "id", "chatcmpl-sim", "object", "chat.completion", "created", System.currentTimeMillis() / 1000,
                "model", request.path("model").asText("simulated"),
                "choices", List.of(Map.of("index", 0, "finish_reason", finish,
                        "message", Map.of("role", "assistant", "content", text))),
                "usage", Map.of("prompt_tokens", promptTokens, "completion_tokens", completionTokens,
                        "total_tokens", promptTokens + completionTokens)));
    }

    private static void send(HttpExchange ex, int status, String body) throws IOException {
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", body.startsWith("{") ? "application/json" : "text/plain");
        ex.sendResponseHeaders(status, bytes.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(bytes);
        }
    }

    /** Stops listening; hanging requests are cut off. */
    @Override
    public void close() {
        stopped.countDown();
        server.stop(0);
        executor.shutdownNow();
        try {
            executor.awaitTermination(2, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** {@code --port P --latency-ms L --slots S --fail-rate F --hang-rate H}; several ports: {@code --port 10000,10001}. */
    public static void main(String[] args) throws Exception {
        Map<String, String> opts = new java.util.HashMap<>();
        for (int i = 0; i + 1 < args.length; i += 2) {
            opts.put(args[i].replaceFirst("^--", ""), args[i + 1]);
        }
        int slots = Integer.parseInt(opts.getOrDefault("slots", "1"));
        String[] ports = opts.getOrDefault("port", "10000").split(",");
        String[] latencies = opts.getOrDefault("latency-ms", "100").split(",");
        for (int i = 0; i < ports.length; i++) {
            long l = Long.parseLong(latencies[Math.min(i, latencies.length - 1)].trim());
            LlmSimulator sim = new LlmSimulator(Integer.parseInt(ports[i].trim()), l, slots,
                    Double.parseDouble(opts.getOrDefault("fail-rate", "0")), Double.parseDouble(opts.getOrDefault("hang-rate", "0")));
            System.out.println("LLM simulator (SIMULATED output) on " + sim.url() + " latency " + l + " ms, " + slots + " slot(s)");
        }
        Thread.currentThread().join();
    }
}
