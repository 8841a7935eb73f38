package io.llmbatch.support;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

/** Posts to the running app like any HTTP client would. */
public final class Http {

    private static final HttpClient CLIENT = HttpClient.newHttpClient();
    private static final ObjectMapper JSON = new ObjectMapper();

    /** A status code and the parsed JSON answer. */
    public record Answer(int status, JsonNode json) {
    }

    private Http() {
    }

    public static Answer post(int port, String path, String body, String... headers) throws Exception {
        return post(port, path, body.getBytes(StandardCharsets.UTF_8), headers);
    }

    /**
     * A POST with {@code Content-Type: application/json} unless the headers name another one, as Python's
     * {@code requests.post(url, json=...)} and {@code curl -H 'Content-Type: application/json'} send it.
     */
    public static Answer post(int port, String path, byte[] body, String... headers) throws Exception {
        boolean typed = false;
        for (int i = 0; i < headers.length; i += 2) {
            typed |= headers[i].equalsIgnoreCase("Content-Type");
        }
        if (typed) {
            return send(port, path, body, headers);
        }
        String[] all = java.util.Arrays.copyOf(headers, headers.length + 2);
        all[headers.length] = "Content-Type";
        all[headers.length + 1] = "application/json";
        return send(port, path, body, all);
    }

    /** A POST with no Content-Type header at all (what a browser sends for a Blob without a type). */
    public static Answer postWithoutContentType(int port, String path, String body, String... headers) throws Exception {
        return send(port, path, body.getBytes(StandardCharsets.UTF_8), headers);
    }

    private static Answer send(int port, String path, byte[] body, String... headers) throws Exception {
        HttpRequest.Builder request = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path))
                .POST(HttpRequest.BodyPublishers.ofByteArray(body));
        if (headers.length > 0) {
            request.headers(headers);
        }
        HttpResponse<String> response = CLIENT.send(request.build(), HttpResponse.BodyHandlers.ofString());
        return new Answer(response.statusCode(), JSON.readTree(response.body()));
    }

    /** The answer's headers too (Retry-After, ...), for a POST with the given headers as they are. */
    public static HttpResponse<String> exchange(int port, String path, byte[] body, String... headers) throws Exception {
        HttpRequest.Builder request = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path))
                .POST(HttpRequest.BodyPublishers.ofByteArray(body));
        if (headers.length > 0) {
            request.headers(headers);
        }
        return CLIENT.send(request.build(), HttpResponse.BodyHandlers.ofString());
    }

    /** A GET: the status and the body as text (Prometheus text, JSON, ...). */
    public static Text get(int port, String path, String... headers) throws Exception {
        HttpRequest.Builder request = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path)).GET();
        if (headers.length > 0) {
            request.headers(headers);
        }
        HttpResponse<String> response = CLIENT.send(request.build(), HttpResponse.BodyHandlers.ofString());
        return new Text(response.statusCode(), response.body());
    }

    /** A status code and the body as text. */
    public record Text(int status, String body) {
        public JsonNode json() throws java.io.IOException {
            return JSON.readTree(body);
        }
    }

    /**
     * The status of a GET sent with this Host header, over a raw socket: java.net.http will not send a Host of our
     * choosing (what a page reaching a loopback server under its own name, by DNS rebinding, sends).
     */
    public static int statusWithHost(int port, String path, String host) throws java.io.IOException {
        try (java.net.Socket socket = new java.net.Socket("127.0.0.1", port)) {
            socket.getOutputStream().write(("GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n")
                    .getBytes(StandardCharsets.US_ASCII));
            String status = new java.io.BufferedReader(new java.io.InputStreamReader(socket.getInputStream(),
                    StandardCharsets.US_ASCII)).readLine();
            return Integer.parseInt(status.split(" ")[1]);
        }
    }

    /** Whether something accepts connections on 127.0.0.1:port. */
    public static boolean listening(int port) {
        try (java.net.Socket s = new java.net.Socket()) {
            s.connect(new java.net.InetSocketAddress("127.0.0.1", port), 500);
            return true;
        } catch (java.io.IOException e) {
            return false;
        }
    }
}
