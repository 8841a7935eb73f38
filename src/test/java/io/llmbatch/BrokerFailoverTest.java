package io.llmbatch;

import io.llmbatch.rabbit.BrokerConfiguration;
import org.apache.camel.test.main.junit5.CamelMainTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.springframework.amqp.AmqpConnectException;
import org.springframework.amqp.rabbit.connection.CachingConnectionFactory;
import org.springframework.amqp.rabbit.connection.Connection;

import io.llmbatch.support.Broker;
import io.llmbatch.support.Http;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

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
            for (int i = 0; i < 5; i++) {
                assertThat(Http.post(18186, "/api/tasks", "[{\"reg_dt\": \"1\", \"addr\": \"a\", \"ent_table_name\": \"x" + i + "\"}]")
                        .status()).isEqualTo(200);
            }
            assertThat(broker.count("test_failover_tasks")).isEqualTo(5);
        }
    }

    @Test
    void every_new_connection_finds_the_live_broker_whatever_the_order() {
        // the node above made one connection; here 12 fresh ones, each in a new random order of the three addresses,
        // so the dead ones come first in most of them ((1/3)^12 that none did)
        CachingConnectionFactory cf = BrokerConfiguration.brokers(
                "amqp://guest:guest@127.0.0.1:1/,amqp://guest:guest@127.0.0.1:2/," + RabbitMQRequired.URL, "", "");
        try {
            for (int i = 0; i < 12; i++) {
                try (Connection c = cf.createConnection()) {
                    assertThat(c.isOpen()).isTrue();
                }
                cf.resetConnection();
            }
        } finally {
            cf.destroy();
        }
        CachingConnectionFactory dead = BrokerConfiguration.brokers("amqp://guest:guest@127.0.0.1:1/,amqp://guest:guest@127.0.0.1:2/", "", "");
        assertThatThrownBy(dead::createConnection).isInstanceOf(AmqpConnectException.class);
        dead.destroy();
    }
}
