package io.llmbatch.jobs;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Collection;
import java.util.Map;
import java.util.Set;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.rabbitmq.client.GetResponse;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.amqp.core.Queue;
import org.springframework.amqp.rabbit.connection.ConnectionFactory;
import org.springframework.amqp.rabbit.core.RabbitAdmin;
import org.springframework.amqp.rabbit.core.RabbitTemplate;

import io.llmbatch.rabbit.ConfirmingPublisher;
import io.llmbatch.rabbit.OutboundMessage;

/**
 * Which OpenAI batches are cancelled, told to the workers through the broker (a GPU machine has nothing else): one
 * durable queue holding a single message (x-max-length 1, the newest wins; a reader drops older ones a broker kept) with
 * the ids of the batches cancelled lately (the list only grows, within a week).
 * The ingest node publishes the whole list on every cancel; a worker reads it with a get that it gives back at once,
 * at most every {@code refreshMillis} and only while it has batch lines to run, so a worker started after the cancel
 * knows it too (a fanout message would have missed it). A line already running when the batch is cancelled finishes
 * and stays in the output, as with OpenAI.
 */
public final class CancelledBatches {

    private static final Logger LOG = LoggerFactory.getLogger(CancelledBatches.class);
    private static final ObjectMapper JSON = new ObjectMapper();

    private final ConnectionFactory connectionFactory;
    private final RabbitTemplate template;
    private final String queue;
    private final long refreshMillis;
    private volatile Set<String> cancelled = Set.of();
    private volatile long readAt;
    private volatile boolean declared;

    public CancelledBatches(ConnectionFactory connectionFactory, String queue, long refreshMillis) {
        this.connectionFactory = connectionFactory;
        this.template = new RabbitTemplate(connectionFactory);
        this.queue = queue;
        this.refreshMillis = refreshMillis;
    }

    /** The queue, declared with the same arguments by the ingest node and the workers. */
    public void declare() {
        if (!declared) {
            new RabbitAdmin(connectionFactory).declareQueue(new Queue(queue, true, false, false, Map.of("x-max-length", 1)));
            declared = true;
        }
    }

    /** Ingest side: the batches cancelled lately, as one message that replaces the one before. */
    public void publish(ConfirmingPublisher publisher, Collection<String> batchIds) throws IOException {
        declare();
        byte[] body = JSON.writeValueAsBytes(batchIds);
        publisher.publishOne(queue, new OutboundMessage(body, "cancelled-batches-" + System.currentTimeMillis(),
                Map.of(ConfirmingPublisher.SOURCE_HEADER, "openai-batch"), 0));
        cancelled = Set.copyOf(batchIds);
        readAt = System.currentTimeMillis();
    }

    /** Worker side: whether lines of {@code batchId} are not to be run. */
    public boolean isCancelled(String batchId) {
        long now = System.currentTimeMillis();
        if (now - readAt >= refreshMillis) {
            readAt = now;
            refresh();
        }
        return cancelled.contains(batchId);
    }

    private void refresh() {
        try {
            declare();
            GetResponse got = template.execute(channel -> {
                // a broker that ignores x-max-length (Qpid, the embedded one) keeps older lists ahead of the newest: every
                // list but the last one got is dropped (the lists only grow), the last goes back for the other workers.
                // Not by basic.get's message count: Qpid's counts the message it hands out.
                GetResponse last = null;
                for (GetResponse r = channel.basicGet(queue, false); r != null; r = channel.basicGet(queue, false)) {
                    if (last != null) {
                        channel.basicAck(last.getEnvelope().getDeliveryTag(), false);
                    }
                    last = r;
                }
                if (last != null) {
                    channel.basicReject(last.getEnvelope().getDeliveryTag(), true);
                }
                return last;
            });
            if (got == null) {
                return; // empty, or another worker holds it this instant: keep what was read before
            }
            JsonNode ids = JSON.readTree(new String(got.getBody(), StandardCharsets.UTF_8));
            Set<String> read = new java.util.HashSet<>();
            ids.forEach(id -> read.add(id.asText()));
            cancelled = Set.copyOf(read);
        } catch (RuntimeException | IOException e) {
            LOG.warn("Cannot read the cancelled batches from queue {} (the last list read stays): {}", queue, e.getMessage());
        }
    }
}
