package io.llmbatch.jobs;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import com.mongodb.client.MongoCollection;
import com.mongodb.client.MongoDatabase;
import com.mongodb.client.model.Filters;
import org.apache.camel.test.main.junit5.CamelMainTest;
import org.bson.Document;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.llm.LlmSimulator;
import io.llmbatch.support.Broker;
import io.llmbatch.support.Http;
import io.llmbatch.support.Mongo;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * Two jobs on one deployment, on the real routes, broker and worker: the seed's job (company_intro, as jobs/ ships it)
 * and a second job defined by one YAML file and a prompt (its own model, system prompt, params, key and collection),
 * submitted at the same time by /send_workq_message/, POST /api/jobs/{name}/tasks and inbox/{name}/.
 */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=ingest,worker,collector",
        "llmbatch.queue.tasks=t13_jobs_tasks",
        "llmbatch.queue.results=t13_jobs_results",
        "llmbatch.queue.tasks-dlq=t13_jobs_tasks.dlq",
        "llmbatch.queue.results-dlq=t13_jobs_results.dlq",
        "llmbatch.ingest.allowed-queues=t13_jobs_tasks",
        "llmbatch.ingest.inbox=target/t13-jobs/inbox",
        "llmbatch.jobs.dir=target/t13-jobs/jobs",
        "llmbatch.llm.endpoints=http://127.0.0.1:21200;slots=4;api=openai",
        "llmbatch.mongodb.uri=mongodb://127.0.0.1:21201/?serverSelectionTimeoutMS=2000",
        "llmbatch.collector.batch-timeout=300",
        "camel.server.port=21202",
        "camel.main.routesReloadEnabled=false" })
class JobsTest {

    static final int PORT = 21202;
    static final Path BASE = Path.of("target/t13-jobs");
    static final String PRODUCT_PROMPT = "商品:{title}\n它属于哪个类别?";
    static final ObjectMapper JSON = new ObjectMapper();
    static final LlmSimulator SIM;

    static {
        Mongo.reset(21201);
        try {
            // the jobs as a user writes them: the seed's job as shipped, and a second one
            io.llmbatch.support.JobsDir.fresh(BASE);
            Files.writeString(BASE.resolve("jobs/product_category.yaml"), """
                    description: 商品类别
                    prompt: prompts/product_category.txt
                    system: 你是商品分类助手
                    model: qwen-test
                    params: {max_tokens: 512, temperature: 0.2}
                    required_fields: [sku, title]
                    key_fields: [sku]
                    output_field: category
                    collection: product_category
                    """);
            Files.writeString(BASE.resolve("prompts/product_category.txt"), PRODUCT_PROMPT);
            // one OpenAI-compatible server that serves both jobs' models (404 for any other)
            SIM = LlmSimulator.start(21200, 0, 4).models("chatglm2_6b_int4", "qwen-test");
        } catch (Exception e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    Broker broker;
    MongoClient client;
    MongoDatabase db;

    @BeforeEach
    void start() throws Exception {
        broker = new Broker().purge("t13_jobs_tasks", "t13_jobs_results", "t13_jobs_tasks.dlq", "t13_jobs_results.dlq",
                "t13_jobs_tasks.dlq.product_category");
        client = MongoClients.create("mongodb://127.0.0.1:21201");
        db = client.getDatabase("llm");
        for (String c : List.of("company_intro", "product_category", JobStore.LEDGER)) {
            db.getCollection(c).deleteMany(new Document());
        }
        SIM.answerWhen(p -> false, 200, null);
    }

    @AfterEach
    void stop() throws Exception {
        client.close();
        broker.close();
    }

    static String seedPayload(int n) {
        StringBuilder list = new StringBuilder();
        for (int i = 0; i < n; i++) {
            list.append(i == 0 ? "" : ",").append("{\"reg_dt\": \"2015-03-02\", \"addr\": \"北京市海淀区").append(i)
                    .append("号\", \"ent_table_name\": \"北京测试科技有限公司").append(i).append("\"}");
        }
        return "{\"rabbit\": \"rabbit01\", \"routing_key\": \"t13_jobs_tasks\", \"durable\": true, \"queue\": \"t13_jobs_tasks\","
               + " \"message_list\": [" + list + "]}";
    }

    static String products(int from, int to) {
        StringBuilder ndjson = new StringBuilder();
        for (int i = from; i < to; i++) {
            ndjson.append("{\"sku\": \"p").append(i).append("\", \"title\": \"无线鼠标 型号").append(i).append("\"}\n");
        }
        return ndjson.toString();
    }

    JsonNode job(String name) throws Exception {
        Http.Text answer = Http.get(PORT, "/api/jobs/" + name);
        assertThat(answer.status()).as(answer.body()).isEqualTo(200);
        return answer.json();
    }

    @Test
    void two_jobs_run_at_once_on_one_worker_each_in_its_own_collection_with_exact_counts() throws Exception {
        // the inbox file of the second job, a CSV whose titles hold commas and quotes
        StringBuilder csv = new StringBuilder("sku,title\n");
        for (int i = 200; i < 250; i++) {
            csv.append("p").append(i).append(",\"无线鼠标, 型号").append(i).append("\"\n");
        }
        CompletableFuture<Http.Answer> seed = CompletableFuture.supplyAsync(() -> post("/send_workq_message/", seedPayload(300)));
        CompletableFuture<Http.Answer> second = CompletableFuture.supplyAsync(() -> post("/api/jobs/product_category/tasks", products(0, 200),
                "Content-Type", "application/x-ndjson"));
        Files.createDirectories(BASE.resolve("inbox/product_category"));
        Path tmp = Files.writeString(BASE.resolve("inbox/more.csv.tmp"), csv);
        Files.move(tmp, BASE.resolve("inbox/product_category/more.csv"));

        assertThat(seed.get().json().get("published").asInt()).isEqualTo(300);
        assertThat(second.get().json().get("published").asInt()).isEqualTo(200);
        MongoCollection<Document> companies = db.getCollection("company_intro");
        MongoCollection<Document> products = db.getCollection("product_category");
        await().atMost(Duration.ofSeconds(90)).until(() -> companies.countDocuments() == 300 && products.countDocuments() == 250);
        // the inbox file of a job's directory goes to .done/<job>/
        await().atMost(Duration.ofSeconds(10)).until(() -> Files.exists(BASE.resolve("inbox/.done/product_category/more.csv")));

        // the seed's job: the seed's key and fields
        for (Document d : companies.find()) {
            assertThat(d.getString("pid")).isEqualTo(Jobs.md5(d.getString("company") + "chatglm2_6b_int4"));
            assertThat(d.getString("job")).isEqualTo("company_intro");
            assertThat(d.getString("intro")).isNotBlank();
            assertThat(d.getString("model_name")).isEqualTo("chatglm2_6b_int4");
        }
        // the second job: its own key, model, output field, prompt and system prompt
        Set<String> versions = new java.util.HashSet<>();
        for (Document d : products.find()) {
            Document task = d.get("task", Document.class);
            String sku = task.getString("sku");
            assertThat(d.getString("pid")).isEqualTo(Jobs.md5("product_category\u001f" + sku + "\u001fqwen-test"));
            assertThat(d.getString("job")).isEqualTo("product_category");
            assertThat(d.getString("model_name")).isEqualTo("qwen-test");
            assertThat(d.getString("category")).isEqualTo(LlmSimulator.textFor(PRODUCT_PROMPT.replace("{title}", task.getString("title"))));
            assertThat(d.containsKey("intro")).isFalse();
            assertThat(d.containsKey("company")).isFalse();
            versions.add(d.getString("prompt_version"));
        }
        assertThat(versions).hasSize(1);
        // what the LLM server was sent for each job
        List<LlmSimulator.Request> sent = SIM.requests();
        List<JsonNode> productRequests = sent.stream().map(LlmSimulator.Request::body)
                .filter(b -> b != null && "qwen-test".equals(b.path("model").asText())).toList();
        assertThat(productRequests).isNotEmpty();
        for (JsonNode b : productRequests) {
            assertThat(b.get("messages").get(0).get("role").asText()).isEqualTo("system");
            assertThat(b.get("messages").get(0).get("content").asText()).isEqualTo("你是商品分类助手");
            assertThat(b.get("max_tokens").asInt()).isEqualTo(512);
            assertThat(b.get("temperature").asDouble()).isEqualTo(0.2);
        }
        assertThat(sent.stream().map(LlmSimulator.Request::body)
                .filter(b -> b != null && "chatglm2_6b_int4".equals(b.path("model").asText())).toList()).isNotEmpty();

        // exact counts per job, from MongoDB and the broker
        JsonNode status = job("product_category");
        assertThat(status.get("submitted").asLong()).isEqualTo(250);
        assertThat(status.get("stored").asLong()).isEqualTo(250);
        assertThat(status.get("failed").asLong()).isZero();
        assertThat(status.get("skipped").asLong()).isZero();
        assertThat(status.get("remaining").asLong()).isZero();
        assertThat(status.get("state").asText()).isEqualTo("finished");
        assertThat(status.get("collection").asText()).isEqualTo("product_category");
        assertThat(status.get("completion_tokens").asLong()).isPositive();
        assertThat(status.get("started_at").asText()).isNotBlank();
        assertThat(status.get("finished_at").asText()).isNotBlank();
        JsonNode seedStatus = job("company_intro");
        assertThat(seedStatus.get("submitted").asLong()).isEqualTo(300);
        assertThat(seedStatus.get("stored").asLong()).isEqualTo(300);
        assertThat(seedStatus.get("model").asText()).as("the job names none: llmbatch.llm.model").isEqualTo("chatglm2_6b_int4");
        assertThat(status.get("model").asText()).isEqualTo("qwen-test");
        JsonNode all = Http.get(PORT, "/api/jobs").json().get("jobs");
        assertThat(all.findValuesAsText("name")).containsExactly("company_intro", "product_category");

        // the counts are MongoDB's, not this process's: a new store on a new connection reads the same
        try (MongoClient other = MongoClients.create("mongodb://127.0.0.1:21201")) {
            Map<String, Object> counts = new JobStore(other.getDatabase("llm"))
                    .counts(new Jobs(BASE.resolve("jobs"), "company_intro", "chatglm2_6b_int4").get("product_category"));
            assertThat(counts).containsEntry("submitted", 250L).containsEntry("stored", 250L);
        }

        // the prompt changes mid-job: tasks submitted from now on are rendered with it (a new prompt version), so the
        // same tasks are generated again and replace their documents; none is added
        String oldVersion = versions.iterator().next();
        Files.writeString(BASE.resolve("prompts/product_category.txt"), "商品:{title}\n请给出类别。");
        Http.Answer again = post("/api/jobs/product_category/tasks", products(0, 10), "Content-Type", "application/x-ndjson");
        assertThat(again.json().get("published").asInt()).isEqualTo(10);
        await().atMost(Duration.ofSeconds(30)).until(() -> products.countDocuments(Filters.ne("prompt_version", oldVersion)) == 10);
        assertThat(products.countDocuments()).isEqualTo(250);
        assertThat(job("product_category").get("submitted").asLong()).isEqualTo(250);
        Files.writeString(BASE.resolve("prompts/product_category.txt"), PRODUCT_PROMPT);
    }

    @Test
    void seed_payload_makes_the_same_documents_as_a_seed_producer_publishing_to_the_queue_directly() throws Exception {
        MongoCollection<Document> companies = db.getCollection("company_intro");
        // the seed's producers publish plain task messages straight to the queue: the worker renders them itself
        List<byte[]> direct = new ArrayList<>();
        JsonNode tasks = JSON.readTree(seedPayload(20)).get("message_list");
        for (JsonNode t : tasks) {
            direct.add(JSON.writeValueAsBytes(t));
        }
        broker.publishAll("t13_jobs_tasks", direct);
        await().atMost(Duration.ofSeconds(30)).until(() -> companies.countDocuments() == 20);
        Map<String, Document> byQueue = new java.util.HashMap<>();
        companies.find().forEach(d -> byQueue.put(d.getString("pid"), d));

        companies.deleteMany(new Document());
        assertThat(post("/send_workq_message/", seedPayload(20)).json().get("published").asInt()).isEqualTo(20);
        await().atMost(Duration.ofSeconds(30)).until(() -> companies.countDocuments() == 20);

        // what differs is when and where it ran; the ingest node adds the request's hash (what skipping compares) and
        // the job's output checks (a task published straight to the queue carries no job headers, so it is not checked)
        Set<String> circumstantial = Set.of("_id", "spends", "gpu_seconds", "started_at", "finished_at", "created_at",
                "updated_at", "worker_host", "backend", "attempts", "request_hash", "checks");
        for (Document viaIngest : companies.find()) {
            Document viaQueue = byQueue.get(viaIngest.getString("pid"));
            assertThat(viaQueue).as(viaIngest.getString("pid")).isNotNull();
            for (String k : circumstantial) {
                viaIngest.remove(k);
                viaQueue.remove(k);
            }
            assertThat(viaIngest).isEqualTo(viaQueue);
        }
    }

    @Test
    void dead_letters_of_a_job_are_redriven_by_reason_and_the_others_stay() throws Exception {
        // the server refuses two titles as too long for its context; two titles exceed the worker's prompt limit
        SIM.answerWhen(p -> p.contains("超长"), 400, "{\"error\":{\"message\":\"This model's maximum context length is 2048 tokens\","
                                                     + "\"type\":\"invalid_request_error\"}}");
        String tasks = products(0, 20)
                       + "{\"sku\": \"x1\", \"title\": \"超长 1\"}\n{\"sku\": \"x2\", \"title\": \"超长 2\"}\n"
                       + "{\"sku\": \"y1\", \"title\": \"" + "长".repeat(20_001) + "\"}\n"
                       + "{\"sku\": \"y2\", \"title\": \"" + "长".repeat(20_002) + "\"}\n";
        assertThat(post("/api/jobs/product_category/tasks", tasks, "Content-Type", "application/x-ndjson").json()
                .get("published").asInt()).isEqualTo(24);
        String dlq = "t13_jobs_tasks.dlq.product_category";
        await().atMost(Duration.ofSeconds(60)).until(() -> db.getCollection("product_category").countDocuments() == 20
                                                            && broker.count(dlq) == 4);
        assertThat(job("product_category").get("failed").asLong()).isEqualTo(4);
        assertThat(job("product_category").get("dead_letter_queue").asText()).isEqualTo(dlq);

        // the server is fixed: the context-length failures go back to work, the prompts over the limit stay
        SIM.answerWhen(p -> false, 200, null);
        Http.Answer redrive = post("/api/jobs/product_category/redrive?reason=context%20length", "");
        assertThat(redrive.status()).as(redrive.json().toString()).isEqualTo(200);
        assertThat(redrive.json().get("moved").asInt()).isEqualTo(2);
        assertThat(redrive.json().get("left").asInt()).isEqualTo(2);
        await().atMost(Duration.ofSeconds(30)).until(() -> db.getCollection("product_category").countDocuments() == 22);
        assertThat(broker.count(dlq)).isEqualTo(2);
        JsonNode status = job("product_category");
        assertThat(status.get("submitted").asLong()).isEqualTo(24);
        assertThat(status.get("stored").asLong()).isEqualTo(22);
        assertThat(status.get("failed").asLong()).isEqualTo(2);
        assertThat(status.get("remaining").asLong()).isZero();
        List<String> left = new ArrayList<>();
        for (var d : broker.drain(dlq)) {
            left.add(String.valueOf(d.getProps().getHeaders().get("x-llmbatch-reason")));
        }
        assertThat(left).hasSize(2).allSatisfy(r -> assertThat(r).contains("max-prompt-chars"));
    }

    @Test
    void a_redrive_that_mongodb_fails_leaves_every_dead_letter_in_its_queue_at_once() throws Exception {
        String dlq = "t13_jobs_tasks.dlq.product_category";
        for (int i = 0; i < 3; i++) {
            broker.publish(dlq, ("{\"sku\": \"r" + i + "\", \"title\": \"键盘" + i + "\"}").getBytes(StandardCharsets.UTF_8), "redrive-" + i);
        }
        Mongo.stop(); // the re-driven tasks are entered in the job's ledger before they are published
        try {
            Http.Answer failed = post("/api/jobs/product_category/redrive", "");
            assertThat(failed.status()).as(failed.json().toString()).isEqualTo(503);
            // back in the queue now, not held unacknowledged by the ingest node until its channel closes
            await().atMost(Duration.ofSeconds(5)).until(() -> broker.count(dlq) == 3);
        } finally {
            Mongo.start(21201);
        }
        Http.Answer again = post("/api/jobs/product_category/redrive", "");
        assertThat(again.status()).as(again.json().toString()).isEqualTo(200);
        assertThat(again.json().get("moved").asInt()).isEqualTo(3);
        await().atMost(Duration.ofSeconds(30)).until(() -> db.getCollection("product_category").countDocuments() == 3);
        assertThat(broker.count(dlq)).isZero();
    }

    /** Drops a file into the job's inbox directory (written beside, moved in at once) and waits until it is done. */
    void dropDone(String job, String name, String content) throws Exception {
        Files.createDirectories(BASE.resolve("inbox").resolve(job));
        Path tmp = Files.writeString(BASE.resolve("drop-" + name + ".tmp"), content);
        Files.move(tmp, BASE.resolve("inbox").resolve(job).resolve(name));
        await().atMost(Duration.ofSeconds(20)).until(() -> Files.exists(BASE.resolve("inbox/.done").resolve(job).resolve(name)));
    }

    @Test
    void force_in_an_inbox_file_name_or_in_the_job_generates_stored_tasks_again() throws Exception {
        String tasks = products(100, 110);
        assertThat(post("/api/jobs/product_category/tasks", tasks, "Content-Type", "application/x-ndjson").json()
                .get("published").asInt()).isEqualTo(10);
        await().atMost(Duration.ofSeconds(30)).until(() -> db.getCollection("product_category").countDocuments() == 10);
        long calls = SIM.posts();

        // the same tasks as a file: every result is stored from the same request, none is sent
        dropDone("product_category", "again.jsonl", tasks);
        assertThat(broker.count("t13_jobs_tasks")).isZero();
        assertThat(SIM.posts()).isEqualTo(calls);
        assertThat(job("product_category").get("skipped").asLong()).isEqualTo(10);

        // .force. in the file's name: all ten generated again
        dropDone("product_category", "again.force.jsonl", tasks);
        await().atMost(Duration.ofSeconds(30)).until(() -> SIM.posts() == calls + 10 && broker.count("t13_jobs_tasks") == 0);

        // force: true in the job: the same request is generated again, from any source
        Path file = BASE.resolve("jobs/product_category.yaml");
        String definition = Files.readString(file);
        Files.writeString(file, definition + "force: true\n");
        try {
            Http.Answer forced = post("/api/jobs/product_category/tasks", tasks, "Content-Type", "application/x-ndjson");
            assertThat(forced.json().get("published").asInt()).as(forced.json().toString()).isEqualTo(10);
            assertThat(forced.json().get("skipped").asInt()).isZero();
            await().atMost(Duration.ofSeconds(30)).until(() -> SIM.posts() == calls + 20 && broker.count("t13_jobs_tasks") == 0);
        } finally {
            Files.writeString(file, definition);
        }
        assertThat(db.getCollection("product_category").countDocuments()).as("updated, none added").isEqualTo(10);
    }

    @Test
    void a_job_file_with_a_mistake_is_listed_with_it_and_its_tasks_are_refused_saying_it() throws Exception {
        Path broken = BASE.resolve("jobs/t14_broken.yaml");
        Files.writeString(broken, "prompt: prompts/product_category.txt\nrequired_fields: [sku, title]\nchecks: {min_chars: 300, max_chars: 200}\n");
        try {
            JsonNode listed = null;
            for (JsonNode j : Http.get(PORT, "/api/jobs").json().get("jobs")) {
                if (j.get("name").asText().equals("t14_broken")) {
                    listed = j;
                }
            }
            assertThat(listed).as("listed, not left out").isNotNull();
            assertThat(listed.get("error").asText()).contains("t14_broken.yaml", "'checks.min_chars' (300) is more than");

            Http.Answer refused = post("/api/jobs/t14_broken/tasks", "[{\"sku\": \"1\"}]");
            assertThat(refused.status()).isEqualTo(500);
            assertThat(refused.json().get("error").asText())
                    .startsWith("job 't14_broken' cannot be used until its file is fixed")
                    .contains("'checks.min_chars' (300) is more than").doesNotContain("java.lang");
            assertThat(broker.count("t13_jobs_tasks")).isZero();
        } finally {
            Files.delete(broken);
        }
    }

    @Test
    void tasks_of_an_unknown_job_or_without_the_jobs_fields_are_refused_saying_why() throws Exception {
        Http.Answer unknown = post("/api/jobs/no_such_job/tasks", "[{\"sku\": \"1\"}]");
        assertThat(unknown.status()).isEqualTo(404);
        assertThat(unknown.json().get("error").asText()).contains("no job 'no_such_job'", "company_intro, product_category");

        Http.Answer missing = post("/api/jobs/product_category/tasks", "[{\"sku\": \"1\"}, {\"sku\": \"2\", \"title\": \"键盘\"}]");
        assertThat(missing.status()).isEqualTo(400);
        assertThat(missing.json().get("details").get(0).asText()).isEqualTo("tasks[0]: missing required field 'title'");

        Http.Answer named = post("/api/tasks", "[{\"job\": \"product_category\", \"sku\": \"3\", \"title\": \"键盘\"},"
                                               + " {\"job\": \"nope\", \"sku\": \"4\"}]");
        assertThat(named.status()).isEqualTo(400);
        assertThat(named.json().get("details").get(0).asText()).startsWith("tasks[1]: no job 'nope'");
        assertThat(broker.count("t13_jobs_tasks")).isZero();

        // re-drive: a job that never had a dead letter has no dead-letter queue yet, and a reason must be a regex
        broker.reset("t13_jobs_tasks.dlq.product_category");
        Http.Answer none = post("/api/jobs/product_category/redrive", "");
        assertThat(none.status()).as(none.json().toString()).isEqualTo(200);
        assertThat(none.json().get("moved").asLong()).isZero();
        Http.Answer badReason = post("/api/jobs/product_category/redrive?reason=%28unclosed", "");
        assertThat(badReason.status()).as(badReason.json().toString()).isEqualTo(400);
        assertThat(badReason.json().get("error").asText()).startsWith("reason is not a regular expression");

        // export: formulas are escaped or kept, nothing else
        Http.Text badFormulas = Http.get(PORT, "/api/jobs/product_category/results?format=csv&formulas=maybe");
        assertThat(badFormulas.status()).as(badFormulas.body()).isEqualTo(400);
        assertThat(badFormulas.json().get("error").asText()).startsWith("formulas must be escape");
    }

    @Test
    void a_ledger_that_cannot_be_written_while_the_tasks_are_published_costs_a_warning_not_the_tasks() throws Exception {
        // the ledger's write fails for real, after the skip lookup read fine: a unique index MongoDB enforces on the
        // prompt version, which every task of a job shares (the second upsert is a duplicate key, E11000)
        MongoCollection<Document> ledger = db.getCollection(JobStore.LEDGER);
        String index = ledger.createIndex(new Document("prompt_version", 1), new com.mongodb.client.model.IndexOptions().unique(true));
        try {
            Http.Answer answer = post("/api/jobs/product_category/tasks", products(300, 303), "Content-Type", "application/x-ndjson");
            assertThat(answer.status()).as(answer.json().toString()).isEqualTo(200);
            assertThat(answer.json().get("published").asLong()).isEqualTo(3);
            assertThat(answer.json().get("warning").asText()).startsWith("every task was published, but the job's ledger could not be written")
                    .contains("E11000");
            await().atMost(Duration.ofSeconds(20)).until(() -> db.getCollection("product_category").countDocuments() == 3);
        } finally {
            ledger.dropIndex(index);
        }
    }

    @Test
    void inbox_directory_names_the_job_its_rejects_and_failures_go_under_the_jobs_name() throws Exception {
        Path inbox = BASE.resolve("inbox");
        Files.createDirectories(inbox.resolve("product_category"));
        Files.createDirectories(inbox.resolve("no_such_job"));
        drop(inbox.resolve("product_category/rows.jsonl"), "{\"sku\": \"r1\", \"title\": \"键盘\"}\n{\"sku\": \"r2\"}\n");
        drop(inbox.resolve("no_such_job/rows.jsonl"), "{\"sku\": \"r3\", \"title\": \"键盘\"}\n");

        await().atMost(Duration.ofSeconds(20)).until(() -> Files.exists(inbox.resolve(".done/product_category/rows.jsonl"))
                                                            && Files.exists(inbox.resolve(".failed/no_such_job/rows.jsonl.error.txt"))
                                                            // the report is written before the file is moved beside it
                                                            && Files.exists(inbox.resolve(".failed/no_such_job/rows.jsonl")));
        List<String> rejects = Files.readAllLines(inbox.resolve(".done/product_category/rows.jsonl.rejects.jsonl"));
        assertThat(rejects).hasSize(1);
        assertThat(JSON.readTree(rejects.get(0)).get("reason").asText()).isEqualTo("missing required field 'title'");
        assertThat(Files.exists(inbox.resolve(".failed/no_such_job/rows.jsonl"))).isTrue();
        assertThat(Files.readString(inbox.resolve(".failed/no_such_job/rows.jsonl.error.txt")))
                .contains("the directory no_such_job/ names no job", "no job 'no_such_job'");
        await().atMost(Duration.ofSeconds(20)).until(() -> db.getCollection("product_category").countDocuments() == 1);
    }

    static void drop(Path file, String content) throws Exception {
        Path tmp = Files.writeString(BASE.resolve(file.getFileName() + ".tmp"), content);
        Files.move(tmp, file);
    }

    static Http.Answer post(String path, String body, String... headers) {
        try {
            return Http.post(PORT, path, body, headers);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }
}
