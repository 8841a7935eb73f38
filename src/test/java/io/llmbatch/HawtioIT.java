package io.llmbatch;

import java.io.File;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.camel.util.FileUtil;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.AppProcess;
import io.llmbatch.support.Broker;
import io.llmbatch.support.Chromium;
import io.llmbatch.support.Http;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * The monitoring console a person opens: a node with every role runs, {@code bin/hawtio} (the documented command)
 * starts Hawtio against its Jolokia, and headless Chromium opens it, clicks "routes" in the Camel tree and finds
 * every pipeline route by id with counters that move while tasks flow. Saves target/hawtio-routes.png and the
 * Jolokia requests Hawtio made (target/hawtio-jolokia-requests.txt: what jolokia-access.xml must allow).
 */
@ExtendWith(RabbitMQRequired.class)
class HawtioIT {

    static final int SERVER_PORT = 19101;
    static final int MANAGEMENT_PORT = 19102;
    static final int MONGO_PORT = 19110;
    static final int LLM_PORT = 19111;
    static final int HAWTIO_PORT = 19120;
    static final int DEVTOOLS_PORT = 19130;
    static final Path WORK = Path.of("target/it-hawtio");
    static final String TASKS = "test_hawtio_tasks";
    static final String RESULTS = "test_hawtio_results";
    static final List<String> ROUTES = List.of("ingest-http-api-tasks", "ingest-http-send-workq-message", "ingest-file-inbox",
                                               "ingest-http-progress", "worker-tasks", "llm-gateway", "llm-backend-1",
                                               "llm-request-openai", "llm-request-chatglm", "collector-results",
                                               "ingest-http-job-tasks", "ingest-jobs-list", "ingest-jobs-status",
                                               "ingest-jobs-results", "ingest-jobs-redrive", "worker-check-output",
                                               "ingest-openai-files-upload", "ingest-openai-file", "ingest-openai-file-content",
                                               "ingest-openai-batches", "ingest-openai-batch", "ingest-openai-batch-cancel");
    static final ObjectMapper JSON = new ObjectMapper();

    /** {route id: Completed} as the Routes table shows it right now (empty while it is not on screen). */
    static final String ROUTES_TABLE = """
            JSON.stringify(Object.fromEntries([...document.querySelectorAll('[data-testid=camel-routes-table] tbody tr')]
                .map(tr => [tr.querySelector('td[data-label=Name]')?.innerText.trim(),
                            Number(tr.querySelector('td[data-label=Completed]')?.innerText.trim())])))""";

    /** Clicks the "routes" folder of the Camel tree; false while the tree is not there yet. */
    static final String CLICK_ROUTES = clickTreeNode("routes");

    /** JavaScript that clicks the Camel tree node with this label and says whether it found it. */
    static String clickTreeNode(String label) {
        return """
                (() => { const node = [...document.querySelectorAll('#camel-tree-view button')]
                             .find(b => b.innerText.trim() === '%s');
                         if (node) { node.click(); } return !!node; })()""".formatted(label);
    }

    @Test
    void hawtio_lists_every_route_of_a_running_node_with_live_counters() throws Exception {
        Chromium.requireInstalled();
        FileUtil.removeDir(WORK.toFile());
        Files.createDirectories(WORK.resolve("inbox"));
        String jolokia = "http://127.0.0.1:" + MANAGEMENT_PORT + "/observe/jolokia";
        Set<String> jolokiaRequests = new TreeSet<>();

        try (Broker broker = new Broker().purge(TASKS, RESULTS, TASKS + ".dlq", RESULTS + ".dlq");
             AppProcess node = AppProcess.start("hawtio-node", "llmbatch.roles=ingest,worker,collector",
                     "camel.server.port=" + SERVER_PORT, "camel.management.port=" + MANAGEMENT_PORT,
                     "llmbatch.embedded.mongodb-port=" + MONGO_PORT, "llmbatch.embedded.llm-port=" + LLM_PORT,
                     "llmbatch.embedded.data-dir=" + WORK.resolve("data"), "llmbatch.ingest.inbox=" + WORK.resolve("inbox"),
                     "llmbatch.queue.tasks=" + TASKS, "llmbatch.queue.results=" + RESULTS,
                     "llmbatch.queue.tasks-dlq=" + TASKS + ".dlq", "llmbatch.queue.results-dlq=" + RESULTS + ".dlq",
                     "camel.main.routesReloadEnabled=false");
             Console hawtio = Console.start(jolokia)) {
            await("node's Jolokia").atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(500))
                    .until(() -> alive(node) && ok(jolokia + "/version")
                                 // ready = routes started: Jolokia answers before the ingest routes are there
                                 && ok("http://127.0.0.1:" + MANAGEMENT_PORT + "/observe/health/ready"));
            postTasks(0, 20);
            await("bin/hawtio on port " + HAWTIO_PORT + " (see target/hawtio-console.log)").atMost(Duration.ofSeconds(90))
                    .pollInterval(Duration.ofMillis(500)).until(() -> hawtio.alive() && Http.listening(HAWTIO_PORT));
            // the console has no login: a page reaching it under its own name (DNS rebinding) is refused, proxy included
            assertThat(Http.statusWithHost(HAWTIO_PORT, "/", "rebind.example:" + HAWTIO_PORT)).isEqualTo(403);
            assertThat(Http.statusWithHost(HAWTIO_PORT, "/hawtio/proxy/http/127.0.0.1/" + MANAGEMENT_PORT + "/observe/jolokia/version",
                    "rebind.example:" + HAWTIO_PORT)).isEqualTo(403);
            assertThat(Http.statusWithHost(HAWTIO_PORT, "/", "127.0.0.1:" + HAWTIO_PORT)).isEqualTo(200);

            try (Chromium browser = Chromium.start(WORK.resolve("chromium-profile"), DEVTOOLS_PORT, 1680, 800,
                    Path.of("target/hawtio-chromium.log"))) {
                browser.onEvent(event -> recordJolokia(event, jolokiaRequests));
                browser.call("Network.enable", Map.of());
                browser.navigate("http://127.0.0.1:" + HAWTIO_PORT + "/");

                await("the Camel tree with its routes folder").atMost(Duration.ofSeconds(30)).pollInterval(Duration.ofMillis(250))
                        .ignoreExceptions().until(() -> browser.eval(CLICK_ROUTES).asBoolean());
                JsonNode[] table = new JsonNode[1];
                await("every route in Hawtio's Routes table").atMost(Duration.ofSeconds(30)).pollInterval(Duration.ofMillis(250))
                        .ignoreExceptions().until(() -> {
                            table[0] = JSON.readTree(browser.eval(ROUTES_TABLE).asText());
                            return ROUTES.stream().allMatch(table[0]::has);
                        });
                assertThat(table[0].fieldNames()).toIterable().containsExactlyInAnyOrderElementsOf(ROUTES);
                long before = table[0].get("ingest-http-api-tasks").asLong();

                // counters are live: another request shows up within Hawtio's 10 s refresh, without reloading
                postTasks(20, 20);
                await("the Routes table counting the new request").atMost(Duration.ofSeconds(25)).pollInterval(Duration.ofMillis(500))
                        .ignoreExceptions().until(() -> {
                            table[0] = JSON.readTree(browser.eval(ROUTES_TABLE).asText());
                            return table[0].get("ingest-http-api-tasks").asLong() > before
                                   && table[0].get("worker-tasks").asLong() >= 40 && table[0].get("llm-gateway").asLong() >= 40
                                   && table[0].get("llm-backend-1").asLong() >= 40;
                        });
                String page = browser.eval("document.body.innerText").asText();
                assertThat(page).contains(ROUTES).contains("Completed", "Failed", "InFlight").doesNotContain("Log in");
                browser.screenshot(Path.of("target/hawtio-routes.png"));

                // a route's description (its YAML "description") is one of its attributes in Hawtio 4.2
                String description = description(jolokia, "worker-tasks");
                await("worker-tasks in the Camel tree").atMost(Duration.ofSeconds(10)).pollInterval(Duration.ofMillis(250))
                        .ignoreExceptions().until(() -> browser.eval(clickTreeNode("worker-tasks")).asBoolean());
                await("worker-tasks' description on its Attributes tab").atMost(Duration.ofSeconds(20))
                        .pollInterval(Duration.ofMillis(250)).ignoreExceptions()
                        .until(() -> browser.eval("document.body.innerText").asText().contains(description));
                browser.screenshot(Path.of("target/hawtio-route-attributes.png"));
            }
        } finally {
            Files.write(Path.of("target/hawtio-jolokia-requests.txt"), jolokiaRequests);
        }
        assertThat(jolokiaRequests).as("Hawtio reached the node through its proxy").isNotEmpty();
    }


    static void postTasks(int from, int count) throws Exception {
        StringBuilder body = new StringBuilder("[");
        for (int i = from; i < from + count; i++) {
            body.append(i > from ? "," : "").append("{\"reg_dt\":\"2015-03-02\",\"addr\":\"北京\",\"ent_table_name\":\"监控测试公司")
                    .append(i).append("\"}");
        }
        Http.Answer answer = Http.post(SERVER_PORT, "/api/tasks", body.append(']').toString(), "Content-Type", "application/json");
        assertThat(answer.status()).as(answer.json().toString()).isEqualTo(200);
    }

    /** "type mbean [operation|attribute]" of each Jolokia request Hawtio sends through its proxy. */
    static void recordJolokia(JsonNode event, Set<String> requests) {
        JsonNode request = event.path("params").path("request");
        if (!"Network.requestWillBeSent".equals(event.path("method").asText()) || !request.path("url").asText().contains("/proxy/")
            || !request.has("postData")) {
            return;
        }
        try {
            JsonNode body = JSON.readTree(request.get("postData").asText());
            for (JsonNode r : body.isArray() ? body : JSON.createArrayNode().add(body)) {
                String what = r.path("type").asText() + " " + r.path("mbean").asText(r.path("path").asText(""));
                if (r.has("operation")) {
                    what += " " + r.get("operation").asText();
                }
                if (r.has("attribute")) {
                    what += " " + r.get("attribute");
                }
                requests.add(what.trim());
            }
        } catch (IOException e) {
            requests.add("unparsed: " + request.get("postData").asText());
        }
    }

    /** True while the node runs; its log in the failure when it stopped (nothing else stops a test this early). */
    static boolean alive(AppProcess node) throws IOException {
        if (!node.isAlive()) {
            throw new AssertionError("the node exited; its log (" + node.log() + "):\n" + Files.readString(node.log()));
        }
        return true;
    }

    /** The route's Description attribute, read from the node's Jolokia directly. */
    static String description(String jolokia, String routeId) throws Exception {
        String read = JSON.writeValueAsString(JSON.createObjectNode().put("type", "read")
                .put("mbean", "org.apache.camel:context=llm-batch,type=routes,name=\"" + routeId + "\"").put("attribute", "Description"));
        String answer = HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create(jolokia))
                .POST(HttpRequest.BodyPublishers.ofString(read)).build(), HttpResponse.BodyHandlers.ofString()).body();
        String description = JSON.readTree(answer).path("value").asText();
        assertThat(description).as(answer).isNotBlank();
        return description;
    }

    static boolean ok(String url) {
        try {
            return HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(2)).build(),
                    HttpResponse.BodyHandlers.discarding()).statusCode() == 200;
        } catch (Exception e) {
            return false;
        }
    }


    /** {@code bin/hawtio JOLOKIA_URL} as a user runs it (it builds hawtio/ on first use), on HAWTIO_PORT. */
    record Console(Process process) implements AutoCloseable {

        static Console start(String jolokia) throws IOException {
            ProcessBuilder builder = new ProcessBuilder("bash", "bin/hawtio", jolokia).directory(new File("."))
                    .redirectErrorStream(true).redirectOutput(Path.of("target/hawtio-console.log").toFile());
            builder.environment().put("HAWTIO_PORT", String.valueOf(HAWTIO_PORT));
            builder.environment().put("JAVA", Path.of(System.getProperty("java.home"), "bin", "java").toString());
            return new Console(builder.start());
        }

        boolean alive() throws IOException {
            if (!process.isAlive()) {
                throw new AssertionError("bin/hawtio exited:\n" + Files.readString(Path.of("target/hawtio-console.log")));
            }
            return true;
        }

        @Override
        public void close() throws InterruptedException {
            process.descendants().forEach(ProcessHandle::destroy);
            process.destroy();
            if (!process.waitFor(10, TimeUnit.SECONDS)) {
                process.descendants().forEach(ProcessHandle::destroyForcibly);
                process.destroyForcibly().waitFor();
            }
        }
    }
}
