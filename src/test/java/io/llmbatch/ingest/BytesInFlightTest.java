package io.llmbatch.ingest;

import java.io.OutputStream;
import java.net.Socket;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.camel.test.main.junit5.CamelMainTest;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.Broker;
import io.llmbatch.support.Http;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * The budget of body bytes in flight across requests (llmbatch.ingest.max-bytes-in-flight, here 100,000 like
 * max-body): while one request holds 60,000 bytes, another of 60,000 gets 429 with Retry-After before its body is
 * read, whether the first declared a Content-Length or streams chunked; once the first is answered, the second passes.
 */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=ingest",
        "llmbatch.queue.tasks=t11i_inflight_tasks",
        "llmbatch.ingest.max-body=100000",
        "llmbatch.ingest.max-bytes-in-flight=100000",
        "llmbatch.ingest.inbox=target/t11i-inbox-inflight",
        "camel.server.port=20108",
        "camel.main.routesReloadEnabled=false" })
class BytesInFlightTest {

    static final int PORT = 20108;
    static final String TASKS = "t11i_inflight_tasks";
    static final ObjectMapper JSON = new ObjectMapper();

    Broker broker;

    @BeforeEach
    void clean() throws Exception {
        broker = new Broker().reset(TASKS);
    }

    @AfterEach
    void close() throws Exception {
        broker.close();
    }

    /** A JSON array of tasks of about {@code bytes} bytes, without its closing bracket. */
    static String openArray(String prefix, int bytes) {
        StringBuilder s = new StringBuilder("[");
        for (int i = 0; s.length() < bytes; i++) {
            s.append(i == 0 ? "" : ",").append("{\"reg_dt\": \"2015-03-02\", \"addr\": \"a\", \"ent_table_name\": \"").append(prefix)
                    .append(i).append("\"}");
        }
        return s.toString();
    }

    /** A second request of 60,000 bytes; refused (429) while the first holds the budget, else 400 (it is not JSON). */
    static HttpResponse<String> second() throws Exception {
        return Http.exchange(PORT, "/api/tasks", " ".repeat(59_999).concat("x").getBytes(StandardCharsets.UTF_8),
                "Content-Type", "application/json");
    }

    /**
     * The first request, written by hand on a socket so the test decides when its body ends: its headers (with a
     * Content-Length, or chunked), then all of the body but the closing bracket.
     */
    void firstHoldsTheBudgetWhileSecondIsRefused(boolean chunked) throws Exception {
        byte[] head = openArray(chunked ? "chunked" : "declared", 60_000).getBytes(StandardCharsets.UTF_8);
        try (Socket socket = new Socket("127.0.0.1", PORT)) {
            OutputStream out = socket.getOutputStream();
            out.write(("POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1:" + PORT + "\r\nContent-Type: application/json\r\n"
                       + (chunked ? "Transfer-Encoding: chunked\r\n" : "Content-Length: " + (head.length + 1) + "\r\n")
                       + "\r\n").getBytes(StandardCharsets.US_ASCII));
            if (chunked) {
                out.write((Integer.toHexString(head.length) + "\r\n").getBytes(StandardCharsets.US_ASCII));
                out.write(head);
                out.write("\r\n".getBytes(StandardCharsets.US_ASCII));
            } else {
                out.write(head);
            }
            out.flush();

            HttpResponse<String> refused = await().atMost(Duration.ofSeconds(20)).until(BytesInFlightTest::second, r -> r.statusCode() == 429);
            assertThat(refused.headers().firstValue("Retry-After")).hasValue("2");
            assertThat(JSON.readTree(refused.body()).get("error").asText()).contains("llmbatch.ingest.max-bytes-in-flight (100000 bytes)");

            out.write((chunked ? "1\r\n]\r\n0\r\n\r\n" : "]").getBytes(StandardCharsets.US_ASCII));
            out.flush();
            String answer = new String(socket.getInputStream().readNBytes(12), StandardCharsets.US_ASCII);
            assertThat(answer).isEqualTo("HTTP/1.1 200");
        }
        assertThat(second().statusCode()).as("the budget is free again").isEqualTo(400);
        assertThat(broker.count(TASKS)).isGreaterThan(800);
    }

    @Test
    void a_body_over_the_budget_left_by_a_declared_length_request_is_429() throws Exception {
        firstHoldsTheBudgetWhileSecondIsRefused(false);
    }

    @Test
    void a_body_over_the_budget_left_by_a_chunked_request_is_429() throws Exception {
        firstHoldsTheBudgetWhileSecondIsRefused(true);
    }
}
