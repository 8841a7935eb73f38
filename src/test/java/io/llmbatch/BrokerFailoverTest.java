package io.llmbatch;

import org.apache.camel.test.main.junit5.CamelMainTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.Broker;
import io.llmbatch.support.Http;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;

/** llmbatch.rabbitmq.url lists several brokers: a dead one in the list does not stop the node. */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=ingest",
        "llmbatch.rabbitmq.url=amqp://guest:guest@127.0.0.1:1/,amqp://guest:guest@127.0.0.1:2/,amqp://guest:guest@127.0.0.1:5672/",
        "llmbatch.queue.tasks=test_failover_tasks",
        "llmbatch.ingest.inbox=target/test-inbox-failover",
        "camel.server.port=18186",
        "camel.main.routesReloadEnabled=false" })
class BrokerFailoverTest {

    @Test
    void a_dead_broker_in_the_list_is_skipped() throws Exception {
        try (Broker broker = new Broker().purge("test_failover_tasks")) {
            for (int i = 0; i < 5; i++) { // addresses are shuffled per connection attempt
                assertThat(Http.post(18186, "/api/tasks", "[{\"reg_dt\": \"1\", \"addr\": \"a\", \"ent_table_name\": \"x" + i + "\"}]")
                        .status()).isEqualTo(200);
            }
            assertThat(broker.count("test_failover_tasks")).isEqualTo(5);
        }
    }
}
