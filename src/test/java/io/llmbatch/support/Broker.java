package io.llmbatch.support;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.ConnectionFactory;
import com.rabbitmq.client.GetResponse;

/** A plain AMQP client for tests: prepares queues and reads back exactly what the app published. */
public final class Broker implements AutoCloseable {

    private final Connection connection;
    private final Channel channel;

    public Broker() throws Exception {
        ConnectionFactory cf = new ConnectionFactory();
        cf.setUri(RabbitMQRequired.URL);
        if (cf.getVirtualHost().isEmpty()) {
            cf.setVirtualHost("/");
        }
        connection = cf.newConnection("llm-batch tests");
        channel = connection.createChannel();
    }

    /** Deletes the queues so each test starts from nothing. */
    public Broker reset(String... queues) throws Exception {
        for (String q : queues) {
            channel.queueDelete(q);
        }
        return this;
    }

    /** Empties the queues (declaring them if missing) without disturbing the app's consumers and publishers. */
    public Broker purge(String... queues) throws Exception {
        for (String q : queues) {
            channel.queueDeclare(q, true, false, false, null);
            channel.queuePurge(q);
        }
        return this;
    }

    /** Declares a missing queue durable; an existing one (e.g. a quorum queue the app declared) is left as it is. */
    private void ensure(String queue) throws Exception {
        Channel probe = connection.createChannel();
        try {
            probe.queueDeclarePassive(queue);
            probe.close();
        } catch (java.io.IOException missing) { // the broker closed the probe channel
            channel.queueDeclare(queue, true, false, false, null);
        }
    }

    /** The test's channel, for what the helpers here do not cover. */
    public Channel channel() {
        return channel;
    }

    public void declare(String queue, Map<String, Object> arguments) throws Exception {
        channel.queueDeclare(queue, true, false, false, arguments);
    }

    /** Publishes a persistent message as a producer would (waits for the broker's confirm). */
    public void publish(String queue, byte[] body, String messageId) throws Exception {
        try (Channel ch = connection.createChannel()) {
            ch.confirmSelect();
            ch.queueDeclare(queue, true, false, false, null);
            ch.basicPublish("", queue, new com.rabbitmq.client.AMQP.BasicProperties.Builder()
                    .deliveryMode(2).contentType("application/json").messageId(messageId).build(), body);
            ch.waitForConfirmsOrDie(10_000);
        }
    }

    /** Publishes many persistent messages on one channel and waits for all confirms at the end. */
    public void publishAll(String queue, java.util.List<byte[]> bodies) throws Exception {
        ensure(queue);
        try (Channel ch = connection.createChannel()) {
            ch.confirmSelect();
            var props = new com.rabbitmq.client.AMQP.BasicProperties.Builder().deliveryMode(2).contentType("application/json").build();
            for (byte[] body : bodies) {
                ch.basicPublish("", queue, props, body);
            }
            ch.waitForConfirmsOrDie(60_000);
        }
    }

    /** Number of ready messages, or -1 when the queue does not exist. */
    public long count(String queue) throws Exception {
        try (Channel ch = connection.createChannel()) {
            return ch.queueDeclarePassive(queue).getMessageCount();
        } catch (java.io.IOException e) {
            return -1;
        }
    }

    /** Consumers on the queue now (-1 if it does not exist). */
    public int consumers(String queue) throws Exception {
        try (Channel ch = connection.createChannel()) {
            return ch.queueDeclarePassive(queue).getConsumerCount();
        } catch (java.io.IOException | com.rabbitmq.client.AlreadyClosedException e) { // missing queue; broker away
            return -1;
        }
    }

    /** Takes (and acknowledges) every message in the queue, in order. */
    public List<GetResponse> drain(String queue) throws Exception {
        List<GetResponse> all = new ArrayList<>();
        if (count(queue) < 0) {
            return all;
        }
        GetResponse r;
        while ((r = channel.basicGet(queue, true)) != null) {
            all.add(r);
        }
        return all;
    }

    /**
     * Takes (and acknowledges) every message in the queue with a consumer, much faster than {@link #drain} for
     * hundreds of thousands of messages; their {@code message_id}s in arrival order.
     */
    public List<String> drainIds(String queue) throws Exception {
        List<String> ids = java.util.Collections.synchronizedList(new ArrayList<>());
        if (count(queue) < 0) {
            return ids;
        }
        try (Channel ch = connection.createChannel()) {
            ch.basicQos(2000);
            String tag = ch.basicConsume(queue, true, (consumerTag, m) -> ids.add(m.getProperties().getMessageId()), consumerTag -> { });
            int seen = -1;
            while (seen != ids.size() || count(queue) > 0) { // until nothing more arrives and the queue is empty
                seen = ids.size();
                Thread.sleep(300);
            }
            ch.basicCancel(tag);
        }
        return new ArrayList<>(ids);
    }

    @Override
    public void close() throws Exception {
        connection.close();
    }
}
