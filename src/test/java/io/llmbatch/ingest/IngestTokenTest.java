package io.llmbatch.ingest;

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
        "llmbatch.queue.tasks=test_token_tasks",
        "llmbatch.ingest.token=s3cret-token",
        "llmbatch.ingest.inbox=target/test-inbox-token",
        "camel.server.port=18182",
        "camel.main.routesReloadEnabled=false" })
class IngestTokenTest {

    static final int PORT = 18182;
    static final String TASKS = "test_token_tasks";
    static final String TASK = "[{\"reg_dt\": \"2015-03-02\", \"addr\": \"a\", \"ent_table_name\": \"甲公司\"}]";

    Broker broker;

    @BeforeEach
    void cleanQueues() throws Exception {
        broker = new Broker().reset(TASKS);
    }

    @AfterEach
    void close() throws Exception {
        broker.close();
    }

    @Test
    void missing_or_wrong_bearer_token_is_401_and_nothing_is_published() throws Exception {
        Answer missing = Http.post(PORT, "/api/tasks", TASK);
        assertThat(missing.status()).isEqualTo(401);
        assertThat(missing.json().get("error").asText()).contains("Authorization: Bearer");

        Answer wrong = Http.post(PORT, "/send_workq_message/",
                "{\"queue\": \"" + TASKS + "\", \"message_list\": " + TASK + "}", "Authorization", "Bearer nope");
        assertThat(wrong.status()).isEqualTo(401);
        assertThat(wrong.json().get("error").asText()).isEqualTo("invalid ingest token");

        assertThat(broker.count(TASKS)).isLessThanOrEqualTo(0);
    }

    @Test
    void right_bearer_token_publishes() throws Exception {
        Answer ok = Http.post(PORT, "/api/tasks", TASK, "Authorization", "Bearer s3cret-token");
        assertThat(ok.status()).isEqualTo(200);
        assertThat(broker.drain(TASKS)).hasSize(1);
    }
}
