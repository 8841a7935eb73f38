package io.llmbatch.ingest;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.net.http.HttpResponse;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.apache.camel.test.main.junit5.CamelMainTest;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.Broker;
import io.llmbatch.support.Http;
import io.llmbatch.support.Http.Answer;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A web page open in a browser on the ingest machine must not be able to publish: the POST routes take only JSON
 * and NDJSON content types (a browser sends text/plain, form or multipart bodies cross-site without asking; any
 * other type needs a CORS preflight, which this server never grants) and refuse a request a browser marks as
 * coming from another site. curl with the JSON content type and Python requests keep working.
 */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=ingest",
        "llmbatch.queue.tasks=t11i_browser_tasks",
        "llmbatch.queue.results=t11i_browser_results",
        "llmbatch.ingest.allowed-queues=t11i_browser_tasks,t11i_browser_results",
        "llmbatch.ingest.inbox=target/t11i-inbox-browser",
        "camel.server.port=20102",
        "camel.main.routesReloadEnabled=false" })
class BrowserRequestTest {

    static final int PORT = 20102;
    static final String TASKS = "t11i_browser_tasks";
    static final String RESULTS = "t11i_browser_results";
    static final String TASK = "{\"reg_dt\": \"2015-03-02\", \"addr\": \"北京\", \"ent_table_name\": \"浏览器测试公司\"}";
    static final String SEED = "{\"rabbit\": \"rabbit01\", \"routing_key\": \"" + TASKS + "\", \"durable\": true, \"queue\": \""
                               + TASKS + "\", \"message_list\": [" + TASK + "]}";
    static final String RESULT = "{\"queue\": \"" + RESULTS + "\", \"message_list\": [{\"company\": \"浏览器测试公司\", \"intro\": \"overwritten\"}]}";

    Broker broker;

    @BeforeEach
    void cleanQueues() throws Exception {
        broker = new Broker().reset(TASKS, RESULTS);
    }

    @AfterEach
    void close() throws Exception {
        broker.close();
    }

    @Test
    void bodies_a_browser_sends_cross_site_without_preflight_are_415_and_nothing_is_published() throws Exception {
        for (String type : List.of("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=----x")) {
            for (String[] request : List.of(new String[] {"/send_workq_message/", SEED}, new String[] {"/api/tasks", "[" + TASK + "]"},
                    new String[] {"/send_workq_message/", RESULT})) {
                Answer answer = Http.post(PORT, request[0], request[1], "Content-Type", type);
                assertThat(answer.status()).as(type + " on " + request[0]).isEqualTo(415);
                assertThat(answer.json().get("error").asText()).as(type)
                        .contains("application/json", "application/x-ndjson", type.split(";")[0]);
            }
        }
        Answer none = Http.postWithoutContentType(PORT, "/api/tasks", "[" + TASK + "]");
        assertThat(none.status()).isEqualTo(415);
        assertThat(none.json().get("error").asText()).contains("no Content-Type");

        assertThat(broker.count(TASKS)).isLessThanOrEqualTo(0);
        assertThat(broker.count(RESULTS)).isLessThanOrEqualTo(0);
    }

    @Test
    void a_large_body_to_a_route_that_takes_none_or_a_small_one_is_refused_before_it_is_held_in_memory() throws Exception {
        // these routes read their body with the server's body handler before their first step (the cross-site check):
        // a page's fetch(..., {mode: 'no-cors', body: a huge Blob}) would be held whole without camel.server.maxBodySize
        byte[] big = new byte[2 * 1024 * 1024];
        java.util.Arrays.fill(big, (byte) ' ');
        for (String path : List.of("/api/jobs/company_intro/redrive", "/v1/batches", "/v1/batches/batch_x/cancel")) {
            HttpResponse<String> answer = Http.exchange(PORT, path, big, "Content-Type", "text/plain");
            assertThat(answer.statusCode()).as(path + ": " + answer.body()).isEqualTo(413);
        }
        // the task routes read their own body, up to llmbatch.ingest.max-body (64 MiB), not this limit
        StringBuilder tasks = new StringBuilder("[");
        while (tasks.length() < 2 * 1024 * 1024) {
            tasks.append(TASK).append(',');
        }
        tasks.append(TASK).append(']');
        Answer many = Http.post(PORT, "/api/tasks", tasks.toString(), "Content-Type", "application/json");
        assertThat(many.status()).as(many.json().toString()).isEqualTo(200);
    }

    @Test
    void a_request_a_browser_marks_as_cross_site_is_403_and_nothing_is_published() throws Exception {
        List<String[]> crossSite = List.of(
                new String[] {"Origin", "https://evil.example"},
                new String[] {"Origin", "null"},                       // sandboxed iframe, file:// page
                new String[] {"Origin", "http://127.0.0.1:3000"},      // another local web app: same site, other origin
                new String[] {"Sec-Fetch-Site", "cross-site"},
                new String[] {"Sec-Fetch-Site", "same-site"});
        for (String[] header : crossSite) {
            for (String[] request : List.of(new String[] {"/send_workq_message/", SEED}, new String[] {"/api/tasks", "[" + TASK + "]"},
                    new String[] {"/send_workq_message/", RESULT})) {
                Answer answer = Http.post(PORT, request[0], request[1], header[0], header[1]);
                assertThat(answer.status()).as(header[0] + ": " + header[1] + " on " + request[0]).isEqualTo(403);
                assertThat(answer.json().get("error").asText()).contains(header[0]);
            }
        }
        assertThat(broker.count(TASKS)).isLessThanOrEqualTo(0);
        assertThat(broker.count(RESULTS)).isLessThanOrEqualTo(0);
    }

    @Test
    void a_page_reaching_loopback_under_its_own_host_name_is_403() throws Exception {
        // DNS rebinding: evil.example resolves to 127.0.0.1, so for the browser the page and this server are one origin
        // (Origin and Host agree, Sec-Fetch-Site: same-origin); only the Host name gives it away. Java's HttpClient
        // cannot set Host, so this goes through curl.
        Process curl = new ProcessBuilder("curl", "-s", "-XPOST", "http://127.0.0.1:" + PORT + "/api/tasks",
                "-H", "Host: evil.example:" + PORT, "-H", "Origin: http://evil.example:" + PORT, "-H", "Sec-Fetch-Site: same-origin",
                "-H", "Content-Type: application/json", "-d", "[" + TASK + "]", "-w", "\n%{http_code}").redirectErrorStream(true).start();
        String out = new String(curl.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(curl.waitFor(30, TimeUnit.SECONDS)).isTrue();
        assertThat(out).endsWith("\n403").contains("evil.example");
        assertThat(broker.count(TASKS)).isLessThanOrEqualTo(0);
    }

    @Test
    void json_and_ndjson_from_curl_python_and_same_origin_pages_are_published() throws Exception {
        assertThat(Http.post(PORT, "/send_workq_message/", SEED).status()).isEqualTo(200);
        assertThat(Http.post(PORT, "/api/tasks", "[" + TASK + "]", "Content-Type", "application/json; charset=utf-8").status())
                .isEqualTo(200);
        for (String ndjson : List.of("application/x-ndjson", "application/jsonl")) {
            assertThat(Http.post(PORT, "/api/tasks", TASK + "\n" + TASK + "\n", "Content-Type", ndjson).status()).as(ndjson)
                    .isEqualTo(200);
        }
        // a page served by this very server, and a request the user typed (Sec-Fetch-Site: none)
        Answer sameOrigin = Http.post(PORT, "/api/tasks", "[" + TASK + "]", "Origin", "http://127.0.0.1:" + PORT,
                "Sec-Fetch-Site", "same-origin");
        assertThat(sameOrigin.status()).as(sameOrigin.json().toString()).isEqualTo(200);
        assertThat(Http.post(PORT, "/api/tasks", "[" + TASK + "]", "Sec-Fetch-Site", "none").status()).isEqualTo(200);
        assertThat(curl("-H", "Content-Type: application/json", "-d", SEED)).isEqualTo("200");
        assertThat(curl("-H", "Content-Type: application/json", "--data-binary", TASK + "\n", "http://localhost:" + PORT + "/api/tasks"))
                .isEqualTo("200");
        // what the README warns about: plain `curl -d` sends application/x-www-form-urlencoded
        assertThat(curl("-d", SEED)).isEqualTo("415");
        assertThat(python()).isEqualTo("200 1");

        assertThat(broker.drain(TASKS)).hasSize(11);
    }

    /** curl against /send_workq_message/ (or the URL given last); its status code. */
    static String curl(String... args) throws Exception {
        List<String> cmd = new java.util.ArrayList<>(List.of("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-XPOST"));
        cmd.addAll(List.of(args));
        if (!args[args.length - 1].startsWith("http")) {
            cmd.add("http://127.0.0.1:" + PORT + "/send_workq_message/");
        }
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
        assertThat(p.waitFor(30, TimeUnit.SECONDS)).isTrue();
        return out;
    }

    /** The seed's producers: Python requests.post(url, json=payload); the status and how many were published. */
    static String python() throws Exception {
        Path script = Files.writeString(Files.createTempFile("producer", ".py"), """
                import json, sys, requests
                payload = json.loads(sys.argv[2])
                r = requests.post(sys.argv[1], json=payload, timeout=30)
                print(r.status_code, r.json().get("published"))
                """);
        Process p = new ProcessBuilder("python3", script.toString(), "http://127.0.0.1:" + PORT + "/send_workq_message/", SEED)
                .redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
        assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
        Files.delete(script);
        return out;
    }
}
