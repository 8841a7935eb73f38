package io.llmbatch.rabbit;

import io.llmbatch.ops.Meters;
import java.util.ArrayDeque;
import java.util.Iterator;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import org.apache.camel.component.springrabbit.SpringRabbitMQConstants;
import org.springframework.amqp.core.Message;
import org.springframework.amqp.core.MessageDeliveryMode;
import org.springframework.amqp.core.MessageProperties;
import org.springframework.amqp.core.Queue;
import org.springframework.amqp.rabbit.connection.CorrelationData;
import org.springframework.amqp.rabbit.core.RabbitAdmin;
import org.springframework.amqp.rabbit.connection.RabbitUtils;
import org.springframework.amqp.rabbit.core.RabbitTemplate;

import io.llmbatch.Urls;

/**
 * Publishes persistent JSON messages to a durable queue and returns only when the broker confirmed each
 * of them. Confirms are awaited over a sliding window of {@code window} unconfirmed messages on one
 * channel (the spring-rabbitmq producer waits for each confirm in turn, which is ~10x slower for bursts).
 * Publishes are mandatory: a message the broker cannot route counts as a failure, never as a success.
 */
public class ConfirmingPublisher {

    /** Header naming where a message came from, so a duplicate can be traced to its source. */
    public static final String SOURCE_HEADER = "x-llmbatch-source";

    private final RabbitTemplate template;
    private final RabbitAdmin admin;
    private final int window;
    private final long confirmTimeoutMillis;
    private final java.util.function.Function<String, Map<String, Object>> queueArguments;
    private final Set<String> declared = ConcurrentHashMap.newKeySet();

    public ConfirmingPublisher(RabbitTemplate template, RabbitAdmin admin, int window, long confirmTimeoutMillis,
                               java.util.function.Function<String, Map<String, Object>> queueArguments) {
        if (window < 1) {
            throw new IllegalArgumentException("confirm window must be at least 1, was " + window);
        }
        this.template = template;
        this.admin = admin;
        this.window = window;
        this.confirmTimeoutMillis = confirmTimeoutMillis;
        this.queueArguments = queueArguments;
    }

    /** Publishes one message and returns once the broker confirmed it. */
    public void publishOne(String queue, OutboundMessage message) {
        publish(queue, java.util.List.of(message).iterator(), null);
    }

    /**
     * Publishes the message an exchange received, as received, to a dead-letter queue, with headers saying why:
     * {@code x-llmbatch-reason}, {@code -exception}, {@code -failed-at}, plus {@code extraHeaders}. Returns the reason.
     */
    public String deadLetter(String queue, org.apache.camel.Exchange exchange, Map<String, Object> extraHeaders) {
        Exception e = exchange.getProperty(org.apache.camel.Exchange.EXCEPTION_CAUGHT, Exception.class);
        String reason = e == null ? "unknown" : String.valueOf(e.getMessage());
        deadLetter(queue, exchange.getMessage().getBody(byte[].class),
                exchange.getMessage().getHeader(SpringRabbitMQConstants.MESSAGE_ID, String.class), reason,
                e == null ? "unknown" : e.getClass().getName(), extraHeaders);
        return reason;
    }

    /** Publishes a dead letter with {@code x-llmbatch-reason}, {@code -exception}, {@code -failed-at} and {@code extraHeaders}. */
    public void deadLetter(String queue, byte[] body, String messageId, String reason, String exception,
                           Map<String, Object> extraHeaders) {
        Map<String, Object> headers = new java.util.LinkedHashMap<>();
        headers.put("x-llmbatch-reason", reason);
        headers.put("x-llmbatch-exception", exception);
        headers.put("x-llmbatch-failed-at", java.time.OffsetDateTime.now(java.time.ZoneOffset.UTC).toString());
        headers.putAll(extraHeaders);
        publishOne(queue, new OutboundMessage(body == null ? new byte[0] : body, messageId, headers, 0));
        Meters.deadLettered(queue, exception);
    }

    /** Outcome of a fully confirmed run. */
    public record Confirmed(String queue, long count) {
    }

    /**
     * Declares {@code queue} (durable, once per process) and publishes every message, holding at most the
     * window unconfirmed.
     *
     * @param  onConfirmed      told the {@link OutboundMessage#position()} of each message the broker confirmed,
     *                          once per message, also when the publish fails later; may be {@code null}
     * @throws PublishException when any message was not confirmed; it says how many were
     */
    public Confirmed publish(String queue, Iterator<OutboundMessage> messages, PositionListener onConfirmed) {
        try {
            declare(queue);
        } catch (RuntimeException e) {
            throw new PublishException(queue, 0, 0, "cannot declare queue '" + queue + "': " + describe(e), e);
        }
        return template.invoke(ops -> {
            ArrayDeque<Pending> pending = new ArrayDeque<>(Math.min(window, 4096));
            long sent = 0;
            long confirmed = 0;
            try {
                OutboundMessage m;
                while ((m = nextOrNull(messages, pending, onConfirmed)) != null) {
                    CorrelationData correlation = new CorrelationData(Long.toString(sent));
                    ops.send("", queue, toAmqp(m), correlation);
                    pending.add(new Pending(correlation, m.position()));
                    sent++;
                    if (pending.size() >= window) {
                        await(queue, pending.poll(), onConfirmed);
                        confirmed++;
                    }
                }
                while (!pending.isEmpty()) {
                    await(queue, pending.poll(), onConfirmed);
                    confirmed++;
                }
                return new Confirmed(queue, confirmed);
            } catch (SourceFailure e) {
                throw (RuntimeException) e.getCause();
            } catch (RuntimeException e) {
                // Not back into the cache: on a cluster, a channel whose quorum queue leader died can go on nacking every
                // publish (seen on RabbitMQ 3.10: one task's result refused 21 times, until the delivery limit
                // dead-lettered the task); the next publish gets a fresh channel.
                discardChannel(ops);
                // acks that arrived for later messages still count: report every message known to be stored
                long alsoConfirmed = 0;
                for (Pending p : pending) {
                    if (p.isAcked()) {
                        alsoConfirmed++;
                        if (onConfirmed != null) {
                            onConfirmed.confirmed(p.position);
                        }
                    }
                }
                declared.remove(queue); // the queue may have been deleted; declare again next time
                throw new PublishException(queue, confirmed + alsoConfirmed, sent,
                        describe(e) + " (" + (confirmed + alsoConfirmed) + " of " + sent + " sent messages confirmed)", e);
            }
        });
    }

    /**
     * The next message of the source. When the source itself fails (a file turns out unreadable), the messages
     * already sent are still awaited, so the caller's confirmed count is right, and the source's exception
     * propagates as it is: it is not a broker failure and must not be retried as one.
     */
    private OutboundMessage nextOrNull(Iterator<OutboundMessage> messages, ArrayDeque<Pending> pending,
                                       PositionListener onConfirmed) {
        try {
            return messages.hasNext() ? messages.next() : null;
        } catch (RuntimeException sourceFailure) {
            try {
                while (!pending.isEmpty()) {
                    await("", pending.poll(), onConfirmed);
                }
            } catch (RuntimeException e) {
                sourceFailure.addSuppressed(e);
            }
            throw new SourceFailure(sourceFailure);
        }
    }

    /** Carries a failure of the message source through the broker-failure handling untouched. */
    private static final class SourceFailure extends RuntimeException {
        SourceFailure(RuntimeException cause) {
            super(cause);
        }
    }

    /** Told the position of each message the broker confirmed. */
    @FunctionalInterface
    public interface PositionListener {
        void confirmed(long position);
    }

    /**
     * Makes sure the queue exists before publishing to it (a publish to a missing queue would be dropped): an
     * existing queue is used as it is, whatever arguments it was declared with; a missing one is declared durable.
     */
    public void declare(String queue) {
        if (!declared.contains(queue)) {
            if (admin.getQueueProperties(queue) == null) {
                admin.declareQueue(new Queue(queue, true, false, false, queueArguments.apply(queue)));
            }
            declared.add(queue);
        }
    }

    /**
     * Declares a queue at startup; when {@code required} is false an unreachable broker only logs (the first
     * publish declares it again), so a process can start before its broker.
     */
    public void declare(String queue, boolean required) {
        try {
            declare(queue);
        } catch (RuntimeException e) {
            if (required) {
                throw e;
            }
            org.slf4j.LoggerFactory.getLogger(ConfirmingPublisher.class)
                    .warn("Cannot declare queue {} yet: {}", queue, describe(e));
        }
    }

    private void await(String queue, Pending p, PositionListener onConfirmed) {
        CorrelationData.Confirm confirm;
        try {
            confirm = p.correlation.getFuture().get(confirmTimeoutMillis, TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            throw new IllegalStateException("no publisher confirm from the broker within " + confirmTimeoutMillis + " ms", e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while waiting for publisher confirms", e);
        } catch (ExecutionException e) {
            throw new IllegalStateException("publisher confirm failed: " + e.getCause(), e.getCause());
        }
        if (p.correlation.getReturned() != null) {
            throw new IllegalStateException("broker could not route the message to queue '" + queue + "': "
                                            + p.correlation.getReturned().getReplyText());
        }
        if (!confirm.isAck()) {
            throw new IllegalStateException("broker refused (nacked) the message"
                                            + (confirm.getReason() == null ? "" : ": " + confirm.getReason()));
        }
        if (onConfirmed != null) {
            onConfirmed.confirmed(p.position);
        }
    }

    private static void discardChannel(org.springframework.amqp.rabbit.core.RabbitOperations ops) {
        try {
            ops.execute(channel -> {
                RabbitUtils.setPhysicalCloseRequired(channel, true);
                return null;
            });
        } catch (RuntimeException closedAlready) {
            // the channel or its connection is gone: nothing to keep out of the cache
        }
    }

    private static Message toAmqp(OutboundMessage m) {
        MessageProperties props = new MessageProperties();
        props.setContentType(MessageProperties.CONTENT_TYPE_JSON);
        props.setContentEncoding("UTF-8");
        props.setDeliveryMode(MessageDeliveryMode.PERSISTENT);
        props.setMessageId(m.messageId());
        props.setAppId("llm-batch");
        m.headers().forEach(props::setHeader);
        return new Message(m.body(), props);
    }

    private static String describe(Throwable e) {
        Throwable root = e;
        while (root.getCause() != null && root.getCause() != root) {
            root = root.getCause();
        }
        String msg = e.getMessage();
        if (root != e && root.getMessage() != null && (msg == null || !msg.contains(root.getMessage()))) {
            msg = (msg == null ? "" : msg + ": ") + root.getMessage();
        }
        return msg == null ? e.getClass().getSimpleName() : Urls.mask(msg);
    }

    private record Pending(CorrelationData correlation, long position) {
        boolean isAcked() {
            var f = correlation.getFuture();
            return f.isDone() && !f.isCompletedExceptionally() && f.join().isAck() && correlation.getReturned() == null;
        }
    }
}
