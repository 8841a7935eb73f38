package io.llmbatch.rabbit;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Map;

import com.rabbitmq.client.AMQP;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.GetResponse;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.Broker;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** llmbatch.queue.type: classic declares as the seed did; quorum adds a delivery limit that ends in the dead-letter queue. */
@ExtendWith(RabbitMQRequired.class)
class QueueArgumentsTest {

    static final String TASKS = "test_quorum_tasks";
    static final String DLQ = "test_quorum_tasks.dlq";

    @Test
    void classic_queues_are_declared_without_arguments_like_the_seeds() {
        QueueArguments classic = new QueueArguments("classic", 20, Map.of(TASKS, DLQ));
        assertThat(classic.apply(TASKS)).isEmpty();
        assertThat(classic.forConsumer(TASKS)).containsExactly(Map.entry("queue.durable", true));
    }

    @Test
    void a_bad_type_or_limit_stops_the_start_with_the_setting_named() {
        assertThatThrownBy(() -> new QueueArguments("stream", 20, Map.of())).hasMessageContaining("llmbatch.queue.type");
        assertThatThrownBy(() -> new QueueArguments("quorum", 0, Map.of())).hasMessageContaining("llmbatch.queue.delivery-limit");
    }

    @Test
    void on_a_quorum_queue_a_message_delivered_past_the_limit_lands_in_its_dead_letter_queue() throws Exception {
        QueueArguments quorum = new QueueArguments("quorum", 2, Map.of(TASKS, DLQ));
        assertThat(quorum.forConsumer(TASKS)).containsEntry("queue.x-queue-type", "quorum").containsEntry("queue.x-delivery-limit", 2);
        try (Broker broker = new Broker().reset(TASKS, DLQ)) {
            Channel ch = broker.channel();
            ch.queueDeclare(DLQ, true, false, false, quorum.apply(DLQ));
            ch.queueDeclare(TASKS, true, false, false, quorum.apply(TASKS));
            ch.basicPublish("", TASKS, new AMQP.BasicProperties.Builder().deliveryMode(2).messageId("kills-every-worker").build(),
                    "{\"ent_table_name\":\"x\"}".getBytes(StandardCharsets.UTF_8));
            int deliveries = 0;
            long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
            while (broker.count(DLQ) == 0) { // a worker that dies on this task, again and again: it returns each time
                assertThat(System.nanoTime()).as("dead-lettered within 10 s").isLessThan(deadline);
                GetResponse r = ch.basicGet(TASKS, false);
                if (r != null) {
                    deliveries++;
                    ch.basicReject(r.getEnvelope().getDeliveryTag(), true);
                } else {
                    Thread.sleep(20);
                }
            }
            assertThat(deliveries).as("the first delivery and the limit's 2 redeliveries").isEqualTo(3);
            GetResponse dead = ch.basicGet(DLQ, true);
            assertThat(dead.getProps().getMessageId()).isEqualTo("kills-every-worker");
            assertThat(String.valueOf(dead.getProps().getHeaders().get("x-first-death-reason"))).isEqualTo("delivery_limit");
            assertThat(broker.count(TASKS)).isZero();
            broker.reset(TASKS, DLQ);
        }
    }
}
