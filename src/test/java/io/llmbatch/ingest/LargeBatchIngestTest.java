package io.llmbatch.ingest;

import org.apache.camel.test.main.junit5.CamelMainTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.Broker;
import io.llmbatch.support.Http;
import io.llmbatch.support.Http.Answer;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;

/** The seed's producer may send a whole job at once: a 100,000-element message_list on the default limits. */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=ingest",
        "llmbatch.queue.tasks=test_large_tasks",
        "llmbatch.ingest.allowed-queues=test_large_tasks",
        "llmbatch.ingest.inbox=target/test-inbox-large",
        "camel.server.port=18197",
        "camel.main.routesReloadEnabled=false" })
class LargeBatchIngestTest {

    static final String TASKS = "test_large_tasks";

    @Test
    void a_hundred_thousand_element_message_list_is_published_whole() throws Exception {
        StringBuilder list = new StringBuilder("[");
        for (int i = 0; i < 100_000; i++) {
            list.append(i == 0 ? "" : ",").append("{\"reg_dt\":\"2015-03-02\",\"addr\":\"北京市海淀区\",\"ent_table_name\":\"大批量公司")
                    .append(i).append("\"}");
        }
        String body = "{\"rabbit\": \"rabbit01\", \"queue\": \"" + TASKS + "\", \"message_list\": " + list.append("]") + "}";
        try (Broker broker = new Broker().reset(TASKS)) {
            long start = System.nanoTime();
            Answer answer = Http.post(18197, "/send_workq_message/", body);
            long ms = (System.nanoTime() - start) / 1_000_000;
            assertThat(answer.status()).as(String.valueOf(answer.json())).isEqualTo(200);
            assertThat(answer.json().get("published").asInt()).isEqualTo(100_000);
            assertThat(broker.count(TASKS)).isEqualTo(100_000);
            System.out.printf("LargeBatchIngestTest: %,d bytes, 100,000 tasks published and confirmed in %d ms%n",
                    body.getBytes(java.nio.charset.StandardCharsets.UTF_8).length, ms);
            broker.reset(TASKS);
        }
    }
}
