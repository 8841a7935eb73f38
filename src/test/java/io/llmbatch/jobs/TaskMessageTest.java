package io.llmbatch.jobs;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

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
import static org.awaitility.Awaitility.await;

/**
 * The task message between the ingest node and the worker ({@link TaskEnvelope}), on the real routes, broker, worker
 * and collector. A job's task whose rendered prompt is larger than one AMQP frame (RabbitMQ's default frame_max is 128 KiB: a
 * message's properties, its headers included, must fit in one frame, while its body is split over as many as it
 * takes). Long-context models take such prompts (the worker's llmbatch.worker.max-prompt-chars raised for them); the
 * task travels with its rendered request, so that request must not ride in a header. A task an older ingest node
 * queued, its job in headers, is still answered as its job; a dead letter of a long prompt is kept and re-driven whole.
 */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=ingest,worker,collector",
        "llmbatch.queue.tasks=t14_long_tasks",
        "llmbatch.queue.results=t14_long_results",
        "llmbatch.queue.tasks-dlq=t14_long_tasks.dlq",
        "llmbatch.queue.results-dlq=t14_long_results.dlq",
        "llmbatch.ingest.allowed-queues=t14_long_tasks",
        "llmbatch.ingest.inbox=target/t14-long/inbox",
        "llmbatch.jobs.dir=target/t14-long/jobs",
        "llmbatch.worker.max-prompt-chars=200000",
        "llmbatch.llm.endpoints=http://127.0.0.1:21308;slots=2;api=openai",
        "llmbatch.mongodb.uri=mongodb://127.0.0.1:21309/?serverSelectionTimeoutMS=2000",
        "llmbatch.collector.batch-timeout=200",
        "camel.server.port=21310",
        "camel.main.routesReloadEnabled=false" })
class TaskMessageTest {

    static final LlmSimulator SIM;

    static {
        Mongo.reset(21309);
        try {
            io.llmbatch.support.JobsDir.fresh(Path.of("target/t14-long"));
            SIM = LlmSimulator.start(21308, 0, 2);
            new Broker().purge("t14_long_tasks", "t14_long_results", "t14_long_tasks.dlq", "t14_long_results.dlq").close();
        } catch (Exception e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    @AfterAll
    static void stopSimulator() {
        SIM.close();
    }

    @org.junit.jupiter.api.BeforeEach
    void clean() throws Exception {
        SIM.answerWhen(p -> false, 200, null);
        try (MongoClient client = MongoClients.create("mongodb://127.0.0.1:21309")) {
            client.getDatabase("llm").getCollection("company_intro").deleteMany(new Document());
            client.getDatabase("llm").getCollection(JobStore.LEDGER).deleteMany(new Document());
        }
    }

    static Document stored(String company) {
        try (MongoClient client = MongoClients.create("mongodb://127.0.0.1:21309")) {
            MongoCollection<Document> intros = client.getDatabase("llm").getCollection("company_intro");
            await().atMost(Duration.ofSeconds(60)).until(() -> intros.countDocuments(Filters.eq("company", company)) == 1);
            return intros.find(Filters.eq("company", company)).first();
        }
    }

    @Test
    void a_prompt_larger_than_an_amqp_frame_is_published_answered_and_stored() throws Exception {
        String addr = "北京市海淀区中关村大街".repeat(6_000); // 66,000 characters, 198,000 bytes of UTF-8
        String company = "长地址测试科技有限公司";
        String task = "[{\"reg_dt\": \"2015-03-02\", \"addr\": \"" + addr + "\", \"ent_table_name\": \"" + company + "\"}]";
        Http.Answer answer = Http.post(21310, "/api/tasks", task);
        assertThat(answer.status()).as(answer.json().toString()).isEqualTo(200);
        assertThat(answer.json().get("published").asInt()).isEqualTo(1);

        Document stored = stored(company);
        Document storedTask = stored.get("task", Document.class);
        assertThat(storedTask.getString("addr")).isEqualTo(addr);
        assertThat(storedTask.keySet()).containsExactly("reg_dt", "addr", "ent_table_name"); // the task as it came
        assertThat(stored.getString("job")).isEqualTo("company_intro");
        assertThat(SIM.requests()).anySatisfy(r -> assertThat(r.body().toString()).contains(addr));
        try (Broker broker = new Broker()) {
            assertThat(broker.count("t14_long_tasks.dlq")).isZero();
        }
    }

    @Test
    void a_task_queued_by_an_older_ingest_node_with_its_job_in_headers_is_answered_as_its_job() throws Exception {
        String company = "旧格式测试科技有限公司";
        com.fasterxml.jackson.databind.node.ObjectNode task = (com.fasterxml.jackson.databind.node.ObjectNode) new com.fasterxml.jackson
                .databind.ObjectMapper().readTree("{\"reg_dt\": \"2015-03-02\", \"addr\": \"北京市海淀区\", \"ent_table_name\": \"" + company + "\"}");
        Jobs jobs = new Jobs(Path.of("target/t14-long/jobs"), "company_intro", "chatglm2_6b_int4");
        Jobs.Rendered rendered = jobs.render(jobs.get("company_intro"), task);
        java.util.Map<String, Object> headers = new java.util.LinkedHashMap<>(rendered.headers());
        headers.put("x-llmbatch-source", "http");
        try (Broker broker = new Broker()) {
            broker.channel().confirmSelect();
            broker.channel().basicPublish("", "t14_long_tasks", new com.rabbitmq.client.AMQP.BasicProperties.Builder().deliveryMode(2)
                    .contentType("application/json").messageId("old-format-1").headers(headers).build(),
                    new com.fasterxml.jackson.databind.ObjectMapper().writeValueAsBytes(task));
            broker.channel().waitForConfirmsOrDie(10_000);
        }
        Document stored = stored(company);
        assertThat(stored.getString("job")).isEqualTo("company_intro");
        assertThat(stored.getString("request_hash")).isEqualTo(rendered.requestHash());
        assertThat(stored.getString("pid")).isEqualTo(rendered.pid());
    }

    @Test
    void a_long_prompt_that_fails_is_dead_lettered_whole_and_redriven_with_its_job() throws Exception {
        String addr = "上海市浦东新区世纪大道".repeat(6_000);
        String company = "长地址重投测试有限公司";
        SIM.answerWhen(p -> p.contains(company), 400, "{\"error\":{\"message\":\"This model's maximum context length is 2048 tokens\","
                                                      + "\"type\":\"invalid_request_error\"}}");
        String task = "[{\"reg_dt\": \"2015-03-02\", \"addr\": \"" + addr + "\", \"ent_table_name\": \"" + company + "\"}]";
        assertThat(Http.post(21310, "/api/tasks", task).status()).isEqualTo(200);
        try (Broker broker = new Broker()) {
            await().atMost(Duration.ofSeconds(60)).until(() -> broker.count("t14_long_tasks.dlq") == 1);
        }
        SIM.answerWhen(p -> false, 200, null);
        Http.Answer redrive = Http.post(21310, "/api/jobs/company_intro/redrive", "");
        assertThat(redrive.status()).as(redrive.json().toString()).isEqualTo(200);
        assertThat(redrive.json().get("moved").asInt()).isEqualTo(1);
        Document stored = stored(company);
        assertThat(stored.get("task", Document.class).getString("addr")).isEqualTo(addr);
        assertThat(stored.get("task", Document.class).keySet()).containsExactly("reg_dt", "addr", "ent_table_name");
    }
}
