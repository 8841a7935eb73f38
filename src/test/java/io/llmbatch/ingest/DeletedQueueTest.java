package io.llmbatch.ingest;

import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;

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
import static org.awaitility.Awaitility.await;

/**
 * An operator deletes the task queue in the management UI (resetting a job) while an ingest node runs: the next
 * publish declares it again and succeeds, as the seed's agent did by declaring on every request. A publish that was
 * under way when the queue vanished re-sends what came back unroutable, and nothing the broker confirmed twice.
 */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=ingest",
        "llmbatch.queue.tasks=t11i_deleted_tasks",
        "llmbatch.ingest.allowed-queues=t11i_deleted_tasks",
        "llmbatch.ingest.inbox=target/t11i-inbox-deleted",
        "camel.server.port=20105",
        "camel.main.routesReloadEnabled=false" })
class DeletedQueueTest {

    static final int PORT = 20105;
    static final String TASKS = "t11i_deleted_tasks";

    Broker broker;

    @BeforeEach
    void clean() throws Exception {
        broker = new Broker().reset(TASKS);
    }

    @AfterEach
    void close() throws Exception {
        broker.reset(TASKS).close();
    }

    static String tasks(String prefix, int n) {
        StringBuilder s = new StringBuilder("[");
        for (int i = 0; i < n; i++) {
            s.append(i == 0 ? "" : ",").append("{\"reg_dt\": \"2015-03-02\", \"addr\": \"北京\", \"ent_table_name\": \"")
                    .append(prefix).append(i).append("\"}");
        }
        return s.append(']').toString();
    }

    @Test
    void deleted_queue_is_declared_again_on_the_next_publish() throws Exception {
        assertThat(Http.post(PORT, "/api/tasks", tasks("before", 3)).status()).isEqualTo(200);
        broker.reset(TASKS); // the operator's delete, with the test's own AMQP client

        Answer answer = Http.post(PORT, "/api/tasks", tasks("after", 3));
        assertThat(answer.status()).as(answer.json().toString()).isEqualTo(200);
        assertThat(answer.json().get("published").asInt()).isEqualTo(3);
        assertThat(broker.drain(TASKS)).hasSize(3);
        assertThat(Http.post(PORT, "/send_workq_message/", "{\"queue\": \"" + TASKS + "\", \"message_list\": " + tasks("later", 2) + "}")
                .status()).isEqualTo(200);
        assertThat(broker.count(TASKS)).isEqualTo(2);
    }

    @Test
    void queue_deleted_mid_batch_gets_the_rest_of_the_batch_once() throws Exception {
        assertThat(Http.post(PORT, "/api/tasks", tasks("warm", 1)).status()).isEqualTo(200);
        broker.reset(TASKS);
        int n = 100_000;
        CompletableFuture<Answer> post = CompletableFuture.supplyAsync(() -> {
            try {
                return Http.post(PORT, "/api/tasks", tasks("big", n));
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        });
        await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(20)).until(() -> broker.count(TASKS) >= 1000);
        broker.reset(TASKS); // mid-batch: what was in the queue is gone with it, the rest must arrive

        Answer answer = post.get();
        assertThat(answer.status()).as(answer.json().toString()).isEqualTo(200);
        List<String> landed = broker.drainIds(TASKS);
        assertThat(landed).as("each message once").doesNotHaveDuplicates();
        assertThat(landed.size()).as("the batch went on into the queue declared again").isBetween(1, n - 1000);
    }
}
