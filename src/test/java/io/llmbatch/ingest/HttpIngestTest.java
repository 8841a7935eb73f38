package io.llmbatch.ingest;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.rabbitmq.client.GetResponse;
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

@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=ingest",
        "llmbatch.queue.tasks=test_http_tasks",
        "llmbatch.queue.results=test_http_results",
        "llmbatch.ingest.allowed-queues=test_http_tasks,test_http_results,test_http_limited",
        "llmbatch.ingest.max-body=200000",
        "llmbatch.ingest.inbox=target/test-inbox-http",
        "camel.server.port=18181",
        "camel.main.routesReloadEnabled=false" })
class HttpIngestTest {

    static final int PORT = 18181;
    static final String TASKS = "test_http_tasks";
    static final String RESULTS = "test_http_results";
    static final String LIMITED = "test_http_limited";
    static final ObjectMapper JSON = new ObjectMapper();

    Broker broker;

    @BeforeEach
    void cleanQueues() throws Exception {
        broker = new Broker().reset(TASKS, RESULTS, LIMITED);
    }

    @AfterEach
    void close() throws Exception {
        broker.close();
    }

    static String seedPayload(String queue, String messageList) {
        return "{\"rabbit\": \"rabbit01\", \"routing_key\": \"" + queue + "\", \"durable\": true, \"queue\": \"" + queue
               + "\", \"message_list\": " + messageList + "}";
    }

    static final String TWO_TASKS = "[{\"reg_dt\": \"2015-03-02\", \"addr\": \"北京市海淀区\", \"ent_table_name\": \"北京测试科技有限公司\", \"extra\": 7},"
                                    + " {\"task_id\": \"t-2\", \"reg_dt\": \"2016-01-01\", \"addr\": \"上海\", \"ent_table_name\": \"上海某公司\"}]";

    @Test
    void seed_payload_publishes_every_message_persistent_and_answers_after_confirms() throws Exception {
        Answer answer = Http.post(PORT, "/send_workq_message/", seedPayload(TASKS, TWO_TASKS));

        assertThat(answer.status()).isEqualTo(200);
        assertThat(answer.json()).isEqualTo(JSON.readTree("{\"queue\": \"" + TASKS + "\", \"published\": 2, \"skipped\": 0}"));
        List<GetResponse> messages = broker.drain(TASKS);
        assertThat(messages).hasSize(2);
        JsonNode sent = JSON.readTree(TWO_TASKS);
        for (int i = 0; i < 2; i++) {
            GetResponse m = messages.get(i);
            com.fasterxml.jackson.databind.node.ObjectNode body = (com.fasterxml.jackson.databind.node.ObjectNode) JSON.readTree(m.getBody());
            // rendered for the default job: its fields ride in the body beside the task as sent, not in headers
            JsonNode envelope = body.remove("_llmbatch");
            assertThat(envelope.path("job").asText()).isEqualTo("company_intro");
            assertThat(envelope.path("source").asText()).isEqualTo("http");
            assertThat(body).isEqualTo(sent.get(i));
            // no header table at all (not even Spring AMQP's return correlation): RabbitMQ spends more CPU on one
            assertThat(m.getProps().getHeaders()).isNull();
            assertThat(m.getProps().getDeliveryMode()).as("persistent").isEqualTo(2);
            assertThat(m.getProps().getContentType()).isEqualTo("application/json");
        }
    }

    @Test
    void message_id_is_task_id_or_sha256_of_canonical_json() throws Exception {
        Http.post(PORT, "/send_workq_message/", seedPayload(TASKS, TWO_TASKS));
        List<GetResponse> messages = broker.drain(TASKS);

        // computed independently: Python json.dumps(task, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        String canonical = "{\"addr\":\"北京市海淀区\",\"ent_table_name\":\"北京测试科技有限公司\",\"extra\":7,\"reg_dt\":\"2015-03-02\"}";
        String sha256 = HexFormat.of().formatHex(
                MessageDigest.getInstance("SHA-256").digest(canonical.getBytes(StandardCharsets.UTF_8)));
        assertThat(messages.get(0).getProps().getMessageId()).isEqualTo(sha256);
        assertThat(messages.get(1).getProps().getMessageId()).isEqualTo("t-2");
    }

    @Test
    void same_task_gets_same_message_id_whatever_its_key_order() throws Exception {
        Http.post(PORT, "/api/tasks", "[{\"reg_dt\":\"1\",\"addr\":\"a\",\"ent_table_name\":\"X\"},"
                                      + "{\"ent_table_name\":\"X\",\"addr\":\"a\",\"reg_dt\":\"1\"}]");
        List<GetResponse> messages = broker.drain(TASKS);
        assertThat(messages).hasSize(2);
        assertThat(messages.get(0).getProps().getMessageId()).isEqualTo(messages.get(1).getProps().getMessageId());
    }

    @Test
    void api_tasks_accepts_a_json_array() throws Exception {
        Answer answer = Http.post(PORT, "/api/tasks", TWO_TASKS, "Content-Type", "application/json");

        assertThat(answer.status()).isEqualTo(200);
        assertThat(answer.json().get("published").asInt()).isEqualTo(2);
        assertThat(answer.json().get("queue").asText()).isEqualTo(TASKS);
        assertThat(broker.drain(TASKS)).hasSize(2);
    }

    @Test
    void api_tasks_accepts_ndjson() throws Exception {
        String ndjson = """
                {"reg_dt": "2015-03-02", "addr": "a", "ent_table_name": "甲公司"}

                {"reg_dt": "2015-03-03", "addr": "b", "ent_table_name": "乙公司"}
                {"reg_dt": "2015-03-04", "addr": "c", "ent_table_name": "丙公司"}
                """;
        Answer answer = Http.post(PORT, "/api/tasks", ndjson, "Content-Type", "application/x-ndjson");

        assertThat(answer.status()).isEqualTo(200);
        assertThat(answer.json().get("published").asInt()).isEqualTo(3);
        List<GetResponse> messages = broker.drain(TASKS);
        assertThat(messages).extracting(m -> JSON.readTree(m.getBody()).get("ent_table_name").asText())
                .containsExactly("甲公司", "乙公司", "丙公司");
    }

    @Test
    void results_queue_is_allowed_and_other_queues_are_forbidden() throws Exception {
        assertThat(Http.post(PORT, "/send_workq_message/", seedPayload(RESULTS, "[{\"company\": \"c\", \"intro\": \"i\"}]"))
                .status()).isEqualTo(200);
        assertThat(broker.drain(RESULTS)).hasSize(1);

        Answer answer = Http.post(PORT, "/send_workq_message/", seedPayload("not_allowed_queue", TWO_TASKS));
        assertThat(answer.status()).isEqualTo(403);
        assertThat(answer.json().get("error").asText()).contains("not_allowed_queue", "allowed-queues");
        assertThat(broker.count("not_allowed_queue")).isEqualTo(-1);
    }

    @Test
    void malformed_json_is_400_and_nothing_is_published() throws Exception {
        Answer answer = Http.post(PORT, "/send_workq_message/", "{\"queue\": \"" + TASKS + "\", \"message_list\": [{\"a\": 1},");
        assertThat(answer.status()).isEqualTo(400);
        assertThat(answer.json().get("error").asText()).startsWith("malformed JSON at line 1");

        answer = Http.post(PORT, "/api/tasks", "{\"reg_dt\": \"1\", \"addr\": \"a\", \"ent_table_name\": \"ok\"}\n{not json}\n");
        assertThat(answer.status()).isEqualTo(400);
        assertThat(answer.json().get("error").asText()).contains("line 2");

        assertThat(Http.post(PORT, "/api/tasks", "").status()).isEqualTo(400);
        assertThat(broker.count(TASKS)).isLessThanOrEqualTo(0);
    }

    @Test
    void wrong_types_are_400_with_what_is_wrong_and_nothing_is_published() throws Exception {
        Map<String, String> cases = Map.of(
                seedPayload(TASKS, "{\"a\": 1}"), "'message_list' must be a JSON array",
                "{\"queue\": 5, \"message_list\": []}", "'queue' must be a string",
                "{\"queue\": \"" + TASKS + "\", \"durable\": \"yes\", \"message_list\": []}", "'durable' must be true or false",
                "{\"message_list\": []}", "missing 'queue'",
                "[1, 2]", "expected a JSON object",
                "{\"queue\": \"" + TASKS + "\", \"routing_key\": \"other\", \"message_list\": []}", "differs from 'queue'",
                seedPayload(TASKS, "[{\"ent_table_name\": \"ok\"}, \"text\", {\"task_id\": {}}]"), "message_list[1]: expected a JSON object");
        for (var c : cases.entrySet()) {
            Answer answer = Http.post(PORT, "/send_workq_message/", c.getKey());
            assertThat(answer.status()).as(c.getKey()).isEqualTo(400);
            assertThat(answer.json().toString()).as(c.getKey()).contains(c.getValue());
        }
        Answer answer = Http.post(PORT, "/api/tasks", "[{\"reg_dt\": \"1\", \"addr\": \"a\", \"ent_table_name\": \"ok\"},"
                                                      + " {\"reg_dt\": \"1\", \"addr\": \"a\"}, {\"reg_dt\": [], \"addr\": \"a\", \"ent_table_name\": \"x\"}]");
        assertThat(answer.status()).isEqualTo(400);
        assertThat(answer.json().get("details")).extracting(JsonNode::asText).containsExactly(
                "tasks[1]: missing required field 'ent_table_name'", "tasks[2]: field 'reg_dt' must be a string, got an array");
        assertThat(broker.count(TASKS)).isLessThanOrEqualTo(0);
    }

    @Test
    void body_over_max_body_is_413() throws Exception {
        byte[] big = new byte[200_001];
        java.util.Arrays.fill(big, (byte) ' ');
        Answer answer = Http.post(PORT, "/api/tasks", big);
        assertThat(answer.status()).isEqualTo(413);
        assertThat(answer.json().get("error").asText()).contains("llmbatch.ingest.max-body");
    }

    @Test
    void broker_refusal_is_503_saying_how_many_were_confirmed() throws Exception {
        // a queue that holds 5 messages and refuses (nacks) the rest
        broker.declare(LIMITED, Map.of("x-max-length", 5, "x-overflow", "reject-publish"));
        StringBuilder list = new StringBuilder("[");
        for (int i = 0; i < 10; i++) {
            list.append(i == 0 ? "" : ",").append("{\"n\": ").append(i).append('}');
        }
        Answer answer = Http.post(PORT, "/send_workq_message/", seedPayload(LIMITED, list + "]"));

        assertThat(answer.status()).isEqualTo(503);
        assertThat(answer.json().get("published").asInt()).isEqualTo(5);
        assertThat(answer.json().get("error").asText())
                .startsWith("broker unavailable: cannot publish to queue '" + LIMITED + "': broker refused (nacked) the message")
                .endsWith("(5 of 10 sent messages confirmed)");
        assertThat(broker.drain(LIMITED)).hasSize(5);
    }
}
