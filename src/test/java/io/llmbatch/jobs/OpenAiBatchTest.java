package io.llmbatch.jobs;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import com.fasterxml.jackson.databind.JsonNode;
import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import com.mongodb.client.MongoCollection;
import com.mongodb.client.model.Filters;
import org.apache.camel.test.main.junit5.CamelMainTest;
import org.bson.Document;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.llm.LlmSimulator;
import io.llmbatch.support.Broker;
import io.llmbatch.support.Http;
import io.llmbatch.support.Mongo;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The OpenAI Batch API end to end with the official {@code openai} SDK for Node as the client
 * ({@code src/test/node/batch-test.mjs}), on the real routes, broker, worker and collector: a batch with a line that is no
 * chat request and one the LLM server refuses (completed, output and error files checked), a file OpenAI would refuse
 * (failed with its errors), a batch cancelled while it runs, the list, and refusals. The LLM server serves only the
 * backends' model, so every line asking for gpt-4o-mini must be sent as that model.
 */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=ingest,worker,collector",
        "llmbatch.queue.tasks=t13b_tasks",
        "llmbatch.queue.results=t13b_results",
        "llmbatch.queue.tasks-dlq=t13b_tasks.dlq",
        "llmbatch.queue.results-dlq=t13b_results.dlq",
        "llmbatch.ingest.allowed-queues=t13b_tasks",
        "llmbatch.ingest.inbox=target/t13b/inbox",
        "llmbatch.ingest.token=t13b-secret",
        "llmbatch.batches.files-bucket=t13b_fs",
        "llmbatch.batches.collection=t13b_batches",
        "llmbatch.batches.results-collection=t13b_batch_results",
        "llmbatch.batches.cancelled-queue=t13b_batches_cancelled",
        "llmbatch.llm.endpoints=http://127.0.0.1:21000;slots=2;api=openai",
        "llmbatch.mongodb.uri=mongodb://127.0.0.1:21001",
        "llmbatch.collector.batch-timeout=200",
        "camel.server.port=21002",
        "camel.main.routesReloadEnabled=false" })
class OpenAiBatchTest {

    static final int PORT = 21002;
    static final Path NODE_DIR = Path.of("src/test/node");
    static final LlmSimulator SIM;

    static {
        Mongo.reset(21001);
        try (Broker broker = new Broker()) {
            broker.purge("t13b_tasks", "t13b_results", "t13b_tasks.dlq", "t13b_results.dlq").reset("t13b_batches_cancelled");
            // 100 ms an answer, 2 at once: the 40 lines of the cancelled batch take 2 s, long enough to cancel midway
            SIM = LlmSimulator.start(21000, 100, 2).models("chatglm2_6b_int4");
            SIM.answerWhen(p -> p.contains("REFUSE-THIS-PROMPT"), 400,
                    "{\"error\":{\"message\":\"This model's maximum context length is 4096 tokens: the prompt is too long\","
                    + "\"type\":\"invalid_request_error\"}}");
        } catch (Exception e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    @AfterAll
    static void stopSimulator() {
        SIM.close();
    }

    @Test
    void the_openai_sdk_runs_a_batch_end_to_end_with_an_invalid_line_a_refused_file_and_a_cancel() throws Exception {
        String node = tool("node");
        String npm = tool("npm");
        if (!Files.isDirectory(NODE_DIR.resolve("node_modules/openai"))) {
            Run ci = run(List.of(npm, "ci", "--no-audit", "--no-fund"), 300);
            assertThat(ci.exit()).as("npm ci in " + NODE_DIR + ":\n" + ci.output()).isZero();
        }
        Run sdk = run(List.of(node, "batch-test.mjs"), 240);
        assertThat(sdk.exit()).as("node batch-test.mjs:\n" + sdk.output()).isZero();
        assertThat(sdk.output()).contains("ALL CHECKS PASSED").doesNotContain("FAILED");

        // what the LLM server was sent: the batch's bodies, under the backends' model
        List<JsonNode> bodies = SIM.requests().stream().map(LlmSimulator.Request::body)
                .filter(b -> b != null && b.path("messages").size() == 2).toList();
        assertThat(bodies).isNotEmpty().allSatisfy(b -> {
            assertThat(b.get("model").asText()).isEqualTo("chatglm2_6b_int4");
            assertThat(b.get("max_tokens").asInt()).isEqualTo(200);
            assertThat(b.get("messages").get(0).get("content").asText()).isEqualTo("你是公司简介的撰写助手");
        });
        // each line's result in the batches' collection, under its key, with the asked model
        JsonNode ids = new com.fasterxml.jackson.databind.ObjectMapper().readTree(sdk.output().lines()
                .filter(l -> l.startsWith("{\"completed\"")).findFirst().orElseThrow());
        try (MongoClient client = MongoClients.create("mongodb://127.0.0.1:21001")) {
            MongoCollection<Document> results = client.getDatabase("llm").getCollection("t13b_batch_results");
            String batch = ids.get("completed").asText();
            assertThat(results.countDocuments(Filters.eq("batch_id", batch))).isEqualTo(8);
            Document ok = results.find(Filters.and(Filters.eq("batch_id", batch), Filters.eq("custom_id", "ok-0"))).first();
            assertThat(ok.getString("pid")).isEqualTo(Jobs.md5(batch + "\u001fok-0"));
            assertThat(ok.getString("model_name")).isEqualTo("gpt-4o-mini");
            assertThat(ok.getString("job")).isEqualTo(batch);
            assertThat(ok.getString("served_model")).isEqualTo("chatglm2_6b_int4");
            assertThat(results.countDocuments(Filters.eq("batch_id", ids.get("failed").asText()))).isZero();
        }
    }

    @Test
    void the_batch_api_refuses_other_sites_and_missing_keys_in_the_openai_error_shape() throws Exception {
        String create = "{\"input_file_id\": \"file-x\", \"endpoint\": \"/v1/chat/completions\", \"completion_window\": \"24h\"}";
        // a page of another site (its browser says so), even with the right key
        Http.Answer page = Http.post(PORT, "/v1/batches", create, "Authorization", "Bearer t13b-secret", "Origin", "http://evil.example");
        assertThat(page.status()).isEqualTo(403);
        assertThat(page.json().at("/error/type").asText()).isEqualTo("invalid_request_error");
        assertThat(page.json().at("/error/message").asText()).contains("cross-site");
        // a form a page posts to /v1/files (browsers send multipart anywhere without asking): refused, nothing stored
        String boundary = "----t13b";
        String form = "--" + boundary + "\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--" + boundary
                      + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n"
                      + "{}\n\r\n--" + boundary + "--\r\n";
        var upload = Http.exchange(PORT, "/v1/files", form.getBytes(StandardCharsets.UTF_8), "Content-Type",
                "multipart/form-data; boundary=" + boundary, "Sec-Fetch-Site", "cross-site", "Authorization", "Bearer t13b-secret");
        assertThat(upload.statusCode()).as(upload.body()).isEqualTo(403);
        assertThat(upload.body()).contains("cross-site");
        // the same form from a script with the key is a File object
        var ok = Http.exchange(PORT, "/v1/files", form.getBytes(StandardCharsets.UTF_8), "Content-Type",
                "multipart/form-data; boundary=" + boundary, "Authorization", "Bearer t13b-secret");
        assertThat(ok.statusCode()).as(ok.body()).isEqualTo(200);
        assertThat(ok.body()).contains("\"object\":\"file\"").contains("\"filename\":\"x.jsonl\"").contains("\"bytes\":3");
        // no key while the ingest token is set: 401 as OpenAI answers it
        Http.Answer noKey = Http.post(PORT, "/v1/batches", create);
        assertThat(noKey.status()).isEqualTo(401);
        assertThat(noKey.json().at("/error/code").asText()).isEqualTo("invalid_api_key");
        // a purpose other than batch, a window other than 24h, another endpoint: 400 naming the parameter
        Http.Answer window = Http.post(PORT, "/v1/batches", create.replace("24h", "1h"), "Authorization", "Bearer t13b-secret");
        assertThat(window.status()).isEqualTo(400);
        assertThat(window.json().at("/error/param").asText()).isEqualTo("completion_window");
        Http.Answer endpoint = Http.post(PORT, "/v1/batches", create.replace("/v1/chat/completions", "/v1/embeddings"),
                "Authorization", "Bearer t13b-secret");
        assertThat(endpoint.json().at("/error/param").asText()).isEqualTo("endpoint");
    }

    @Test
    void a_batch_whose_node_stopped_while_queuing_its_lines_has_the_rest_queued_again_and_completes() throws Exception {
        // What an ingest node killed -9 while queuing a batch leaves (a kill cannot be timed inside the few milliseconds
        // this takes here): the batch in_progress with every line counted, its queuing lease not renewed for two minutes,
        // line 0 run and stored before the stop, the other lines never queued. Any later look at the batch queues again
        // the lines without a result, and the batch completes.
        StringBuilder jsonl = new StringBuilder();
        for (int i = 0; i < 6; i++) {
            jsonl.append("{\"custom_id\": \"resume-").append(i).append("\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", ")
                    .append("\"body\": {\"model\": \"gpt-4o-mini\", \"messages\": [{\"role\": \"user\", \"content\": \"续排 ")
                    .append(i).append("\"}]}}\n");
        }
        String boundary = "----t14resume";
        String form = "--" + boundary + "\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--" + boundary
                      + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"resume.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n"
                      + jsonl + "\r\n--" + boundary + "--\r\n";
        var upload = Http.exchange(PORT, "/v1/files", form.getBytes(StandardCharsets.UTF_8), "Content-Type",
                "multipart/form-data; boundary=" + boundary, "Authorization", "Bearer t13b-secret");
        assertThat(upload.statusCode()).as(upload.body()).isEqualTo(200);
        String fileId = new com.fasterxml.jackson.databind.ObjectMapper().readTree(upload.body()).get("id").asText();
        String id = "batch_t14resume" + System.nanoTime();
        long now = System.currentTimeMillis() / 1000;
        try (MongoClient client = MongoClients.create("mongodb://127.0.0.1:21001")) {
            var db = client.getDatabase("llm");
            db.getCollection("t13b_batches").insertOne(new Document("_id", id).append("object", "batch")
                    .append("endpoint", "/v1/chat/completions").append("errors", null).append("input_file_id", fileId)
                    .append("completion_window", "24h").append("status", "in_progress").append("output_file_id", null)
                    .append("error_file_id", null).append("created_at", now - 130).append("in_progress_at", now - 130)
                    .append("expires_at", now + 86_000).append("finalizing_at", null).append("completed_at", null)
                    .append("failed_at", null).append("expired_at", null).append("cancelling_at", null).append("cancelled_at", null)
                    .append("request_counts", new Document("total", 6).append("completed", 0).append("failed", 0))
                    .append("metadata", null).append("x_order", System.currentTimeMillis() * 1000).append("x_queuing", now - 120));
            db.getCollection("t13b_batch_results").insertOne(new Document("batch_id", id).append("job", id)
                    .append("custom_id", "resume-0").append("pid", OpenAiBatches.pid(id, "resume-0")).append("line", 1L)
                    .append("response", new Document("status_code", 200).append("request_id", "req_x")
                            .append("body", new Document("object", "chat.completion")))
                    .append("error", null));

            JsonNode batch = null;
            long deadline = System.currentTimeMillis() + 60_000;
            while (System.currentTimeMillis() < deadline) {
                Http.Text answer = Http.get(PORT, "/v1/batches/" + id, "Authorization", "Bearer t13b-secret");
                assertThat(answer.status()).as(answer.body()).isEqualTo(200);
                batch = answer.json();
                if (batch.get("status").asText().equals("completed")) {
                    break;
                }
                Thread.sleep(300);
            }
            assertThat(batch.get("status").asText()).as(batch.toString()).isEqualTo("completed");
            assertThat(batch.at("/request_counts/completed").asInt()).isEqualTo(6);
            assertThat(SIM.servedFor("续排 0")).as("the line stored before the stop is not run again").isZero();
            for (int i = 1; i < 6; i++) {
                assertThat(SIM.servedFor("续排 " + i)).as("line " + i).isEqualTo(1);
            }
            assertThat(db.getCollection("t13b_batch_results").countDocuments(Filters.eq("batch_id", id))).isEqualTo(6);
        }
    }

    record Run(int exit, String output) {
    }

    /** Runs a command in src/test/node against this test's app; its output (stdout and stderr) is kept for the assertion. */
    static Run run(List<String> command, long seconds) throws Exception {
        File log = Files.createTempFile("t13b-node", ".log").toFile();
        ProcessBuilder pb = new ProcessBuilder(command).directory(NODE_DIR.toFile()).redirectErrorStream(true)
                .redirectOutput(log);
        pb.environment().put("OPENAI_BASE_URL", "http://127.0.0.1:" + PORT + "/v1");
        pb.environment().put("OPENAI_API_KEY", "t13b-secret");
        Process p = pb.start();
        if (!p.waitFor(seconds, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            fail(command + " did not finish within " + seconds + " s:\n" + Files.readString(log.toPath(), StandardCharsets.UTF_8));
        }
        String output = Files.readString(log.toPath(), StandardCharsets.UTF_8);
        log.delete();
        System.out.println(output);
        return new Run(p.exitValue(), output);
    }

    /** The tool's path; a clear failure (never a skip) when it is missing. */
    static String tool(String name) {
        try {
            Process p = new ProcessBuilder(name, "--version").redirectErrorStream(true).start();
            if (p.waitFor(30, TimeUnit.SECONDS) && p.exitValue() == 0) {
                return name;
            }
        } catch (IOException | InterruptedException e) {
            // reported below
        }
        return fail("'" + name + "' is required by this test (the official openai SDK for Node is its client) and is not on the "
                    + "PATH: install Node.js 20+ and npm (Debian: apt-get install nodejs npm; .ci/run does it)");
    }
}
