package io.llmbatch.support;

import java.io.File;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.WebSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.camel.util.FileUtil;

import static org.junit.jupiter.api.Assertions.fail;

/**
 * Debian's headless Chromium driven over the DevTools protocol (a WebSocket, no npm, no driver binary): open a
 * page, run JavaScript in it, take a screenshot. Started with the flags this machine needs (no sandbox as root, no
 * background networking: the network is closed) and a fresh profile.
 */
public final class Chromium implements AutoCloseable {

    public static final Path BINARY = Path.of("/usr/bin/chromium");
    private static final ObjectMapper JSON = new ObjectMapper();

    private final Process process;
    private final WebSocket socket;
    private final AtomicInteger ids = new AtomicInteger();
    private final Map<Integer, CompletableFuture<JsonNode>> pending = new ConcurrentHashMap<>();
    private final List<Consumer<JsonNode>> listeners = new CopyOnWriteArrayList<>();

    private Chromium(Process process, WebSocket socket) {
        this.process = process;
        this.socket = socket;
    }

    /** Fails the test (never skips) when Debian's Chromium is not installed. */
    public static void requireInstalled() {
        if (!Files.isExecutable(BINARY)) {
            fail("Chromium is not installed at " + BINARY + ": this test drives a real browser. Install Debian's package: "
                 + "`apt-get update && apt-get install -y chromium` (.ci/run does it).");
        }
    }

    /** Chromium with one blank page of width x height CSS pixels, its DevTools on 127.0.0.1:debugPort. */
    public static Chromium start(Path profile, int debugPort, int width, int height, Path log) throws Exception {
        requireInstalled();
        FileUtil.removeDir(profile.toFile());
        Files.createDirectories(profile);
        List<String> cmd = new ArrayList<>(List.of(BINARY.toString(), "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars", "--user-data-dir=" + profile.toAbsolutePath(),
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=" + debugPort,
                "--window-size=" + width + "," + height, "about:blank"));
        Process process = new ProcessBuilder(cmd).directory(new File(".")).redirectErrorStream(true)
                .redirectOutput(log.toFile()).start();
        try {
            HttpClient http = HttpClient.newHttpClient();
            String pageSocket = null;
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (pageSocket == null) {
                if (!process.isAlive() || System.nanoTime() > deadline) {
                    throw new IllegalStateException("Chromium did not open its DevTools port " + debugPort + " (see " + log + ")");
                }
                try {
                    String list = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + debugPort + "/json/list"))
                            .timeout(Duration.ofSeconds(2)).build(), HttpResponse.BodyHandlers.ofString()).body();
                    for (JsonNode target : JSON.readTree(list)) {
                        if ("page".equals(target.path("type").asText())) {
                            pageSocket = target.path("webSocketDebuggerUrl").asText();
                        }
                    }
                } catch (IOException e) {
                    // not listening yet
                }
                if (pageSocket == null) {
                    Thread.sleep(200);
                }
            }
            Receiver receiver = new Receiver();
            WebSocket socket = http.newWebSocketBuilder().buildAsync(URI.create(pageSocket), receiver).get(10, TimeUnit.SECONDS);
            Chromium chromium = new Chromium(process, socket);
            receiver.owner = chromium;
            chromium.call("Page.enable", Map.of());
            chromium.call("Runtime.enable", Map.of());
            chromium.call("Emulation.setDeviceMetricsOverride",
                    Map.of("width", width, "height", height, "deviceScaleFactor", 1, "mobile", false));
            return chromium;
        } catch (Exception e) {
            stop(process);
            throw e;
        }
    }

    /** Calls a DevTools method and waits for its result. */
    public JsonNode call(String method, Map<String, ?> params) throws Exception {
        int id = ids.incrementAndGet();
        CompletableFuture<JsonNode> answer = new CompletableFuture<>();
        pending.put(id, answer);
        ObjectNode message = JSON.createObjectNode().put("id", id).put("method", method);
        message.set("params", JSON.valueToTree(params));
        synchronized (socket) {
            socket.sendText(JSON.writeValueAsString(message), true).get(10, TimeUnit.SECONDS);
        }
        JsonNode reply = answer.get(30, TimeUnit.SECONDS);
        if (reply.has("error")) {
            throw new IllegalStateException(method + " failed: " + reply.get("error"));
        }
        return reply.path("result");
    }

    /** Every DevTools event ({"method", "params"}) from now on, e.g. Network.requestWillBeSent after Network.enable. */
    public void onEvent(Consumer<JsonNode> listener) {
        listeners.add(listener);
    }

    public void navigate(String url) throws Exception {
        call("Page.navigate", Map.of("url", url));
    }

    /** The value of a JavaScript expression evaluated in the page (promises awaited). */
    public JsonNode eval(String expression) throws Exception {
        JsonNode result = call("Runtime.evaluate", Map.of("expression", expression, "returnByValue", true, "awaitPromise", true));
        if (result.has("exceptionDetails")) {
            throw new IllegalStateException("JavaScript failed: " + result.get("exceptionDetails"));
        }
        return result.path("result").path("value");
    }

    public void screenshot(Path png) throws Exception {
        JsonNode shot = call("Page.captureScreenshot", Map.of("format", "png"));
        Files.createDirectories(png.toAbsolutePath().getParent());
        Files.write(png, Base64.getDecoder().decode(shot.get("data").asText()));
    }

    @Override
    public void close() {
        socket.abort();
        stop(process);
    }

    private static void stop(Process process) {
        process.descendants().forEach(ProcessHandle::destroy);
        process.destroy();
        try {
            if (!process.waitFor(5, TimeUnit.SECONDS)) {
                process.descendants().forEach(ProcessHandle::destroyForcibly);
                process.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private void dispatch(String text) {
        try {
            JsonNode message = JSON.readTree(text);
            if (message.has("id")) {
                CompletableFuture<JsonNode> answer = pending.remove(message.get("id").asInt());
                if (answer != null) {
                    answer.complete(message);
                }
            } else {
                listeners.forEach(l -> l.accept(message));
            }
        } catch (IOException e) {
            throw new IllegalStateException("Unreadable DevTools message: " + text, e);
        }
    }

    /** Joins WebSocket fragments into whole DevTools messages. */
    private static final class Receiver implements WebSocket.Listener {

        volatile Chromium owner;
        private final StringBuilder buffer = new StringBuilder();

        @Override
        public CompletionStage<?> onText(WebSocket webSocket, CharSequence data, boolean last) {
            buffer.append(data);
            if (last) {
                String text = buffer.toString();
                buffer.setLength(0);
                if (owner != null) {
                    owner.dispatch(text);
                }
            }
            webSocket.request(1);
            return null;
        }
    }
}
