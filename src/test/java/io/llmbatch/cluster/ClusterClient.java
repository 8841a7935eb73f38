package io.llmbatch.cluster;

import java.util.List;

import com.rabbitmq.client.AMQP;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.ConnectionFactory;

import io.llmbatch.support.RabbitCluster;

/**
 * The harness's own AMQP client on the cluster: connects to the first node that is up and, when that node goes away,
 * to another one at the next call. Queue depth and consumers are read on a fresh channel each time.
 */
final class ClusterClient implements AutoCloseable {

    private final RabbitCluster cluster;
    private Connection connection;

    ClusterClient(RabbitCluster cluster) {
        this.cluster = cluster;
    }

    private synchronized Connection connection() throws Exception {
        if (connection == null || !connection.isOpen()) {
            Exception last = null;
            for (int i = 1; i <= cluster.size(); i++) {
                if (!RabbitCluster.listening(cluster.amqpPort(i))) {
                    continue;
                }
                try {
                    ConnectionFactory cf = new ConnectionFactory();
                    cf.setUri(cluster.url(i));
                    cf.setVirtualHost("/");
                    cf.setAutomaticRecoveryEnabled(false);
                    connection = cf.newConnection("llm-batch cluster harness");
                    return connection;
                } catch (Exception e) {
                    last = e;
                }
            }
            throw new IllegalStateException("no node of the cluster answers", last);
        }
        return connection;
    }

    /** Ready messages in the queue; -1 when it does not exist or no node answers now. */
    long count(String queue) {
        try (Channel ch = connection().createChannel()) {
            return ch.queueDeclarePassive(queue).getMessageCount();
        } catch (Exception e) {
            return -1;
        }
    }

    /** Consumers on the queue; -1 when it does not exist or no node answers now. */
    int consumers(String queue) {
        try (Channel ch = connection().createChannel()) {
            return ch.queueDeclarePassive(queue).getConsumerCount();
        } catch (Exception e) {
            return -1;
        }
    }

    /** Declares a durable queue through node {@code node} (a quorum queue is then led by that node). */
    void declareOn(int node, String queue, java.util.Map<String, Object> arguments) throws Exception {
        ConnectionFactory cf = new ConnectionFactory();
        cf.setUri(cluster.url(node));
        cf.setVirtualHost("/");
        try (Connection c = cf.newConnection("llm-batch cluster harness (declare)"); Channel ch = c.createChannel()) {
            ch.queueDeclare(queue, true, false, false, arguments);
        }
    }

    void delete(String... queues) throws Exception {
        for (String q : queues) {
            try (Channel ch = connection().createChannel()) {
                ch.queueDelete(q);
            }
        }
    }

    /** Publishes persistent messages to an existing queue (declared by the app as a quorum queue), with confirms. */
    void publishAll(String queue, List<byte[]> bodies) throws Exception {
        try (Channel ch = connection().createChannel()) {
            ch.queueDeclarePassive(queue);
            ch.confirmSelect();
            AMQP.BasicProperties props = new AMQP.BasicProperties.Builder().deliveryMode(2).contentType("application/json").build();
            for (byte[] body : bodies) {
                ch.basicPublish("", queue, props, body);
            }
            ch.waitForConfirmsOrDie(120_000);
        }
    }

    @Override
    public synchronized void close() throws Exception {
        if (connection != null && connection.isOpen()) {
            connection.close();
        }
    }
}
