package io.llmbatch.llm;

import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
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
 * failure rate (answers 500), hang rate (never answers until the server stops). Run it alone with
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
    // counters for benchmarks: completion requests per prompt (redone calls), and the time slots were held
    private final Map<String, AtomicLong> requestsByPrompt = new java.util.concurrent.ConcurrentHashMap<>();
    private long busyNanos;
    private int busyNow;
    private long busySince;

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

    /** Completions answered with 200. */
    public long served() {
        return served.get();
    }

    public long failed() {
        return failed.get();
    }

    public long hung() {
        return hung.get();
    }

    /** Completion requests received per prompt (keyed by a digest of the prompt), answered or not. */
    public Map<String, Long> requestsPerPrompt() {
        Map<String, Long> copy = new java.util.HashMap<>();
        requestsByPrompt.forEach((k, v) -> copy.put(k, v.get()));
        return copy;
    }

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

    /** {@code GET /stats}: the counters, for a simulator running as its own process. */
    private Map<String, Object> stats() {
        long requests = requestsByPrompt.values().stream().mapToLong(AtomicLong::get).sum();
        return Map.of("served", served(), "failed", failed(), "hung", hung(), "requests", requests,
                "distinct_prompts", requestsByPrompt.size(), "busy_ms", busyMillis());
    }

    private static String digest(String prompt) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(prompt.getBytes(StandardCharsets.UTF_8)));
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
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
            if ("GET".equals(ex.getRequestMethod())) { // health probe: the server is up; /stats: the counters
                send(ex, 200, "/stats".equals(path) ? JSON.writeValueAsString(stats())
                        : "{\"status\":\"ok\",\"simulated\":true}");
                return;
            }
            boolean openai = path.startsWith("/v1/chat/completions");
            if (!openai && !"/".equals(path)) {
                send(ex, 404, "{\"detail\":\"Not Found\"}");
                return;
            }
            JsonNode request;
            try {
                request = JSON.readTree(ex.getRequestBody());
            } catch (IOException e) {
                send(ex, openai ? 400 : 500, "{\"error\":{\"message\":\"invalid JSON\"}}");
                return;
            }
            String prompt = openai ? lastMessage(request) : request.path("prompt").asText(null);
            if (prompt == null) {
                send(ex, openai ? 400 : 500, "{\"error\":{\"message\":\"no prompt\"}}");
                return;
            }
            requestsByPrompt.computeIfAbsent(digest(prompt), k -> new AtomicLong()).incrementAndGet();
            slots.acquireUninterruptibly();
            busy(+1);
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
                String text = textFor(prompt);
                served.incrementAndGet();
                send(ex, 200, openai ? openaiAnswer(request, prompt, text) : chatglmAnswer(text));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } finally {
                busy(-1);
                slots.release();
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

    private static String openaiAnswer(JsonNode request, String prompt, String text) throws IOException {
        int promptTokens = prompt.length();
        int completionTokens = text.length();
        return JSON.writeValueAsString(Map.of(
                "id", "chatcmpl-sim", "object", "chat.completion", "created", System.currentTimeMillis() / 1000,
                "model", request.path("model").asText("simulated"),
                "choices", List.of(Map.of("index", 0, "finish_reason", "stop",
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
