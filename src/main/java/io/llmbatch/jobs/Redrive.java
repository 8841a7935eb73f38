package io.llmbatch.jobs;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.GetResponse;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.amqp.rabbit.connection.Connection;
import org.springframework.amqp.rabbit.connection.ConnectionFactory;

import io.llmbatch.ingest.Tasks;
import io.llmbatch.rabbit.ConfirmingPublisher;
import io.llmbatch.rabbit.OutboundMessage;
import io.llmbatch.rabbit.PublishException;

/**
 * Moves a job's dead letters back to the task queue, all or those whose reason ({@code x-llmbatch-reason}) matches a
 * regular expression, rendered again with the job's definition as it is now (a fixed prompt applies). Each dead letter
 * is taken without acknowledgement, published with a confirm, and only then acknowledged: a process that dies halfway
 * loses none (the broker returns what it held; a task published but not yet acknowledged is at most done twice, which
 * the key's upsert absorbs). Dead letters left behind keep their place in the queue.
 */
public final class Redrive {

    private static final Logger LOG = LoggerFactory.getLogger(Redrive.class);
    private static final int BATCH = 200;

    /** What a re-drive did. */
    public record Outcome(long moved, long left, long notRenderable) {
    }

    private final ConnectionFactory connectionFactory;
    private final ConfirmingPublisher publisher;
    private final Jobs jobs;
    private final JobStore store;
    private final String tasksQueue;

    /** @param store null: no MongoDB on this node (the re-driven tasks are not entered in the ledger) */
    public Redrive(ConnectionFactory connectionFactory, ConfirmingPublisher publisher, Jobs jobs, JobStore store, String tasksQueue) {
        this.connectionFactory = connectionFactory;
        this.publisher = publisher;
        this.jobs = jobs;
        this.store = store;
        this.tasksQueue = tasksQueue;
    }

    /** Whether the queue exists, asked on a channel of its own (a passive declare of a missing queue closes it). */
    private static boolean exists(Connection connection, String queue) throws IOException {
        Channel probe = connection.createChannel(false);
        try {
            probe.queueDeclarePassive(queue);
            return true;
        } catch (IOException e) {
            if (e.getCause() instanceof com.rabbitmq.client.ShutdownSignalException s
                && s.getReason() instanceof com.rabbitmq.client.AMQP.Channel.Close close && close.getReplyCode() == 404) {
                return false;
            }
            throw e;
        } finally {
            if (probe.isOpen()) {
                try {
                    probe.close();
                } catch (java.util.concurrent.TimeoutException | IOException ignored) {
                    // closing a probe channel: nothing to keep
                }
            }
        }
    }

    /** Re-drives {@code deadLetterQueue}'s dead letters whose reason matches {@code reason} (null: all). */
    public synchronized Outcome run(JobDefinition job, String deadLetterQueue, String reason) throws IOException {
        Pattern match;
        try {
            match = reason == null ? null : Pattern.compile(reason, Pattern.CASE_INSENSITIVE);
        } catch (java.util.regex.PatternSyntaxException e) {
            throw new io.llmbatch.ingest.IngestException(400, "reason is not a regular expression: " + e.getDescription()
                                                              + " (in '" + reason + "')");
        }
        long moved = 0;
        long left = 0;
        long unrenderable = 0;
        try (Connection connection = connectionFactory.createConnection(); Channel ch = connection.createChannel(false)) {
            if (!exists(connection, deadLetterQueue) || ch.queueDeclarePassive(deadLetterQueue).getMessageCount() == 0) {
                return new Outcome(0, 0, 0); // no dead letter yet: a job's queue is declared with its first one
            }
            try {
                while (true) {
                    List<GetResponse> batch = new ArrayList<>();
                    GetResponse r;
                    while (batch.size() < BATCH && (r = ch.basicGet(deadLetterQueue, false)) != null) {
                        batch.add(r);
                    }
                    if (batch.isEmpty()) {
                        break;
                    }
                    List<OutboundMessage> out = new ArrayList<>();
                    List<Jobs.Rendered> rendered = new ArrayList<>();
                    Map<Long, Long> tagOfPosition = new HashMap<>();
                    for (GetResponse d : batch) {
                        Object why = d.getProps().getHeaders() == null ? null : d.getProps().getHeaders().get("x-llmbatch-reason");
                        if (match != null && (why == null || !match.matcher(why.toString()).find())) {
                            left++;
                            continue;
                        }
                        ObjectNode body = taskOf(d.getBody());
                        Jobs.Rendered task = body == null ? null : render(job, body);
                        if (task == null) {
                            unrenderable++;
                            continue;
                        }
                        rendered.add(task);
                        Map<String, Object> headers = new LinkedHashMap<>(task.headers());
                        Object times = d.getProps().getHeaders() == null ? null : d.getProps().getHeaders().get("x-llmbatch-redriven");
                        headers.put("x-llmbatch-redriven", times instanceof Number n ? n.intValue() + 1 : 1);
                        headers.put(ConfirmingPublisher.SOURCE_HEADER, "redrive:" + deadLetterQueue);
                        long position = out.size();
                        tagOfPosition.put(position, d.getEnvelope().getDeliveryTag());
                        // the task as it came, with its job made anew (a changed prompt is the point of many a re-drive)
                        out.add(TaskEnvelope.wrap(new OutboundMessage(Tasks.JSON.writeValueAsBytes(body),
                                d.getProps().getMessageId() != null ? d.getProps().getMessageId() : Tasks.messageId(body),
                                headers, position)));
                    }
                    if (!out.isEmpty()) {
                        if (store != null) {
                            store.admit(job, rendered, true);
                        }
                        try {
                            publisher.publish(tasksQueue, out.iterator(), position -> ack(ch, tagOfPosition.get(position)));
                            moved += out.size();
                        } catch (PublishException e) {
                            moved += e.confirmed();
                            LOG.warn("Re-drive of {} stopped: {} (moved {}; the rest stays dead-lettered)", deadLetterQueue, e.getMessage(), moved);
                            break; // what was not confirmed goes back to the dead-letter queue below
                        }
                    }
                }
            } finally {
                // every dead letter taken and not acknowledged (kept back, not renderable, not confirmed, or the run
                // failed: MongoDB, the broker) goes back now: the channel returns to the connection factory's cache
                // open, and would hold them unacknowledged until it closes
                if (ch.isOpen()) {
                    ch.basicNack(0, true, true);
                }
            }
        } catch (java.util.concurrent.TimeoutException e) {
            throw new IOException("the broker did not close the re-drive channel in time", e);
        }
        LOG.info("Re-drove {} dead letter(s) of job {} from {} ({} left, {} not renderable)", moved, job.name(), deadLetterQueue, left,
                unrenderable);
        return new Outcome(moved, left, unrenderable);
    }

    /** The dead letter's task as it was submitted (its job's envelope taken out), or null when it is not a JSON object. */
    private static ObjectNode taskOf(byte[] body) {
        try {
            JsonNode task = Tasks.JSON.readTree(new String(body, StandardCharsets.UTF_8));
            if (task == null || !task.isObject()) {
                return null;
            }
            TaskEnvelope.unwrap((ObjectNode) task);
            return (ObjectNode) task;
        } catch (RuntimeException | IOException e) {
            return null; // still poison: it stays where it is
        }
    }

    private Jobs.Rendered render(JobDefinition job, ObjectNode task) {
        try {
            if (Tasks.problem(task, job.requiredFields()) != null) {
                return null;
            }
            return jobs.render(jobs.jobOf(task, job.name()), task);
        } catch (RuntimeException e) {
            return null; // still poison: it stays where it is
        }
    }

    private static void ack(Channel ch, Long tag) {
        try {
            if (tag != null) {
                ch.basicAck(tag, false);
            }
        } catch (IOException e) {
            LOG.warn("Cannot acknowledge a re-driven dead letter (it may be re-driven twice): {}", e.toString());
        }
    }
}
