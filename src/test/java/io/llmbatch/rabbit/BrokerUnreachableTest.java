package io.llmbatch.rabbit;

import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.springframework.amqp.rabbit.connection.CachingConnectionFactory;
import org.springframework.amqp.rabbit.core.RabbitAdmin;

import io.llmbatch.support.Broker;
import io.llmbatch.support.LatencyProxy;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * A publish that starts while the broker cannot be reached (a restart, a network cut) is a {@link PublishException}, the
 * failure every caller retries or answers 503 for, whether or not this process declared the queue before. The real
 * broker sits behind a TCP proxy the test closes, so the connection factory's own connect fails as it does when
 * RabbitMQ is down (Spring AMQP's AmqpConnectException).
 */
@ExtendWith(RabbitMQRequired.class)
class BrokerUnreachableTest {

    static final int PROXY_PORT = 21305;
    static final String QUEUE = "t14_unreachable_tasks";

    Broker broker;
    LatencyProxy proxy;
    CachingConnectionFactory connections;

    @BeforeEach
    void setUp() throws Exception {
        broker = new Broker().reset(QUEUE);
        proxy = LatencyProxy.start(new InetSocketAddress("127.0.0.1", PROXY_PORT), new InetSocketAddress("127.0.0.1", 5672), 0, 0, 0);
        connections = new CachingConnectionFactory("127.0.0.1", PROXY_PORT);
        connections.setPublisherConfirmType(CachingConnectionFactory.ConfirmType.CORRELATED);
        connections.setPublisherReturns(true);
        connections.setConnectionTimeout(2000);
    }

    @AfterEach
    void tearDown() throws Exception {
        connections.destroy();
        proxy.close();
        broker.close();
    }

    static OutboundMessage task(int i) {
        return OutboundMessage.fromSource(("{\"ent_table_name\":\"公司" + i + "\"}").getBytes(StandardCharsets.UTF_8), "id-" + i,
                "test:" + i, i);
    }

    @Test
    void a_publish_to_a_queue_declared_before_the_broker_went_away_fails_as_a_publish_failure() throws Exception {
        ConfirmingPublisher publisher = new ConfirmingPublisher(connections.getPublisherConnectionFactory(), new RabbitAdmin(connections), 16, 5000, q -> Map.of(), 1 << 20);
        assertThat(publisher.publish(QUEUE, List.of(task(1)).iterator(), null).count()).isEqualTo(1);

        java.util.concurrent.CountDownLatch lost = new java.util.concurrent.CountDownLatch(1);
        connections.addConnectionListener(new org.springframework.amqp.rabbit.connection.ConnectionListener() {
            @Override
            public void onCreate(org.springframework.amqp.rabbit.connection.Connection connection) {
            }

            @Override
            public void onShutDown(com.rabbitmq.client.ShutdownSignalException signal) {
                lost.countDown();
            }
        });
        proxy.close(); // the broker is gone: connections cut, new ones refused
        assertThat(lost.await(10, java.util.concurrent.TimeUnit.SECONDS)).as("the client saw its connection go").isTrue();
        assertThatThrownBy(() -> publisher.publish(QUEUE, List.of(task(2)).iterator(), null))
                .isInstanceOf(PublishException.class)
                .hasMessageContaining(QUEUE)
                .satisfies(e -> assertThat(((PublishException) e).confirmed()).isZero());
        assertThat(broker.count(QUEUE)).isEqualTo(1);
    }
}
