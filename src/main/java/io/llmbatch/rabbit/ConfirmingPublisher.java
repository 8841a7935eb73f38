package io.llmbatch.rabbit;

import io.llmbatch.ops.Meters;
import java.util.ArrayDeque;
import java.util.Iterator;
import java.util.List;
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
 * Publishes are mandatory: a message the broker cannot route counts as a failure, never as a success, except that a
 * queue deleted under a running node (it comes back unroutable, or nacked on Qpid) is declared again and the messages
 * that came back are sent once more. A message the broker can never take (its {@code message_id} over 255 bytes, its
 * size over {@code llmbatch.ingest.max-message-bytes} or the broker's own limit) is a {@link MessageRefusedException}
 * for that message, never a {@link PublishException} that callers would retry.
 */
public class ConfirmingPublisher {

    /** Header naming where a message came from, so a duplicate can be traced to its source. */
    public static final String SOURCE_HEADER = "x-llmbatch-source";
    /** AMQP's {@code message_id} is a shortstr: at most 255 bytes. */
    public static final int MAX_MESSAGE_ID_BYTES = 255;
    private static final org.slf4j.Logger LOG = org.slf4j.LoggerFactory.getLogger(ConfirmingPublisher.class);
    private static final java.util.regex.Pattern TOO_LARGE =
            java.util.regex.Pattern.compile("(?i)message size (?:of )?(\\d+) (?:is larger|greater) than (?:configured max size|allowed maximum of) (\\d+)");

    private final RabbitTemplate template;
    private final RabbitAdmin admin;
    private final int window;
    private final long confirmTimeoutMillis;
    private final java.util.function.Function<String, Map<String, Object>> queueArguments;
    private final Set<String> declared = ConcurrentHashMap.newKeySet();
    private final long configuredMaxMessageBytes;
    private volatile long maxMessageBytes;

    public ConfirmingPublisher(RabbitTemplate template, RabbitAdmin admin, int window, long confirmTimeoutMillis,
                               java.util.function.Function<String, Map<String, Object>> queueArguments, long maxMessageBytes) {
        if (window < 1) {
            throw new IllegalArgumentException("confirm window must be at least 1, was " + window);
        }
        if (maxMessageBytes < 1) {
            throw new IllegalArgumentException("llmbatch.ingest.max-message-bytes must be at least 1, was " + maxMessageBytes);
        }
        this.configuredMaxMessageBytes = maxMessageBytes;
        this.maxMessageBytes = maxMessageBytes;
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
        byte[] b = body == null ? new byte[0] : body;
        try {
            publishOne(queue, new OutboundMessage(b, messageId, headers, 0));
        } catch (MessageRefusedException refused) {
            // the dead letter itself is more than the broker takes (a result over MongoDB's and the broker's limits):
            // its first bytes are kept, with its size, rather than have it come back for ever
            headers.put("x-llmbatch-truncated-from", (long) b.length);
            headers.put("x-llmbatch-reason", reason + " (the dead letter is cut to its first " + DEAD_LETTER_KEPT_BYTES
                                             + " bytes: " + refused.getMessage() + ")");
            String id = messageId != null && messageId.getBytes(java.nio.charset.StandardCharsets.UTF_8).length <= 255 ? messageId : null;
            publishOne(queue, new OutboundMessage(java.util.Arrays.copyOf(b, Math.min(b.length, DEAD_LETTER_KEPT_BYTES)), id, headers, 0));
            LOG.warn("Dead letter of {} bytes refused ({}): its first {} bytes dead-lettered to {}", b.length, refused.getMessage(),
                    DEAD_LETTER_KEPT_BYTES, queue);
        }
        Meters.deadLettered(queue, exception);
    }

    /** What is kept of a dead letter the broker cannot take whole. */
    static final int DEAD_LETTER_KEPT_BYTES = 64 * 1024;

    /** Outcome of a fully confirmed run. */
    public record Confirmed(String queue, long count) {
    }

    /**
     * Declares {@code queue} (durable, once per process) and publishes every message, holding at most the
     * window unconfirmed.
     *
     * @param  onConfirmed             told the {@link OutboundMessage#position()} of each message the broker confirmed,
     *                                 once per message, also when the publish fails later; may be {@code null}
     * @throws MessageRefusedException at a message the broker cannot take ({@link #refusal}, or refused by the broker
     *                                 for its size); the messages before it are settled first
     * @throws PublishException        when any message was not confirmed; it says how many were
     */
    public Confirmed publish(String queue, Iterator<OutboundMessage> messages, PositionListener onConfirmed) {
        return publish(queue, messages, window, onConfirmed);
    }

    /** {@link #publish(String, Iterator, PositionListener)} with at most {@code inFlight} (≤ the window) unconfirmed. */
    public Confirmed publish(String queue, Iterator<OutboundMessage> messages, int inFlight, PositionListener onConfirmed) {
        try {
            declare(queue);
        } catch (RuntimeException e) {
            throw new PublishException(queue, 0, 0, "cannot declare queue '" + queue + "': " + describe(e), e);
        }
        int limit = Math.max(1, Math.min(inFlight, window));
        try {
            return template.invoke(ops -> new Run(ops, queue, limit, onConfirmed).all(messages));
        } catch (org.springframework.amqp.AmqpException e) {
            // invoke opens the channel before the run: a broker gone since the queue was declared fails here, nothing sent
            declared.remove(queue);
            throw new PublishException(queue, 0, 0, "cannot publish to queue '" + queue + "': " + describe(e), e);
        }
    }

    /**
     * Why the broker cannot take this message, or {@code null} when it can: a {@code message_id} over AMQP's 255 bytes
     * (a shortstr; the client would throw before sending), or a body over {@code llmbatch.ingest.max-message-bytes}
     * (lowered to the broker's own limit once the broker refused a message for its size). Retrying never helps.
     */
    public String refusal(OutboundMessage m) {
        if (m.messageId() != null) {
            int idBytes = m.messageId().getBytes(java.nio.charset.StandardCharsets.UTF_8).length;
            if (idBytes > MAX_MESSAGE_ID_BYTES) {
                return "message_id of " + idBytes + " bytes (UTF-8) is over AMQP's limit of " + MAX_MESSAGE_ID_BYTES + " bytes";
            }
        }
        long max = maxMessageBytes;
        if (m.body().length > max) {
            return "message of " + m.body().length + " bytes is over " + (max < configuredMaxMessageBytes
                    ? "the broker's limit of " + max + " bytes (its max_message_size, below llmbatch.ingest.max-message-bytes)"
                    : "llmbatch.ingest.max-message-bytes (" + max + " bytes)");
        }
        return null;
    }

    /** Unconfirmed messages a publish holds at most (llmbatch.ingest.confirm-window). */
    public int window() {
        return window;
    }

    /** The largest message body sent, in bytes: the configured limit, or the broker's when it refused a smaller size. */
    public long maxMessageBytes() {
        return maxMessageBytes;
    }

    /** One publish: the window of messages sent and not yet settled, on one channel. */
    private final class Run {
        private final org.springframework.amqp.rabbit.core.RabbitOperations ops;
        private final String queue;
        private final int inFlight;
        private final PositionListener onConfirmed;
        private final ArrayDeque<Pending> pending;
        private long sent;
        private long confirmed;
        private long seq;
        /** Sequence number of the first send after the queue was last declared again in this run. */
        private long redeclaredAt = -1;
        private int redeclares;

        Run(org.springframework.amqp.rabbit.core.RabbitOperations ops, String queue, int inFlight, PositionListener onConfirmed) {
            this.ops = ops;
            this.queue = queue;
            this.inFlight = inFlight;
            this.onConfirmed = onConfirmed;
            this.pending = new ArrayDeque<>(Math.min(inFlight, 4096) + 1);
        }

        Confirmed all(Iterator<OutboundMessage> messages) {
            try {
                OutboundMessage m;
                while ((m = next(messages)) != null) {
                    String refusal = refusal(m);
                    if (refusal != null) {
                        settleAll();
                        throw new MessageRefusedException(refusal, m, confirmed, false);
                    }
                    send(m, false);
                    while (pending.size() >= inFlight) {
                        settle(pending.poll());
                    }
                }
                settleAll();
                return new Confirmed(queue, confirmed);
            } catch (SourceFailure e) {
                throw (RuntimeException) e.getCause();
            } catch (MessageRefusedException e) {
                throw e;
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
                            onConfirmed.confirmed(p.message.position());
                        }
                    }
                }
                declared.remove(queue); // the queue may have been deleted; declare again next time
                throw new PublishException(queue, confirmed + alsoConfirmed, sent, "cannot publish to queue '" + queue + "': " + describe(e)
                                                                                   + " (" + (confirmed + alsoConfirmed) + " of " + sent + " sent messages confirmed)", e);
            }
        }

        /**
         * The next message of the source. When the source itself fails (a file turns out unreadable), the messages
         * already sent are still settled, so the caller's confirmed count is right, and the source's exception
         * propagates as it is: it is not a broker failure and must not be retried as one.
         */
        private OutboundMessage next(Iterator<OutboundMessage> messages) {
            try {
                return messages.hasNext() ? messages.next() : null;
            } catch (RuntimeException sourceFailure) {
                try {
                    settleAll();
                } catch (RuntimeException e) {
                    sourceFailure.addSuppressed(e);
                }
                throw new SourceFailure(sourceFailure);
            }
        }

        private void send(OutboundMessage m, boolean again) {
            CorrelationData correlation = new CorrelationData(Long.toString(seq));
            try {
                ops.send("", queue, toAmqp(m), correlation);
            } catch (RuntimeException e) {
                IllegalArgumentException refused = cause(e, IllegalArgumentException.class);
                if (refused == null) {
                    throw e;
                }
                // the AMQP client refused to encode this message (a field over an AMQP limit): nothing was sent
                settleAll();
                throw new MessageRefusedException("the AMQP client refused the message: " + refused.getMessage(), m, confirmed, false);
            }
            pending.add(new Pending(correlation, m, seq++, again));
            if (!again) {
                sent++;
            }
        }

        private void settleAll() {
            while (!pending.isEmpty()) {
                settle(pending.poll());
            }
        }

        private void settle(Pending p) {
            CorrelationData.Confirm confirm = await(p.correlation);
            boolean returned = p.correlation.getReturned() != null;
            if (returned || !confirm.isAck() && queueMissing()) {
                // the queue is gone (an operator deleted it): nothing was stored for this message, so declaring the
                // queue again and sending it once more cannot duplicate it; a message that comes back twice fails
                if (!p.again && (p.seq >= redeclaredAt ? redeclare() : true)) {
                    send(p.message, true);
                    return;
                }
                throw new IllegalStateException(returned
                        ? "broker could not route the message to queue '" + queue + "': " + p.correlation.getReturned().getReplyText()
                        : "broker refused (nacked) the message: queue '" + queue + "' does not exist");
            }
            if (!confirm.isAck()) {
                MessageRefusedException tooLarge = sizeRefusal(confirm.getReason(), p);
                if (tooLarge != null) {
                    throw tooLarge;
                }
                throw new IllegalStateException("broker refused (nacked) the message"
                                                + (confirm.getReason() == null ? "" : ": " + confirm.getReason()));
            }
            confirmed++;
            if (onConfirmed != null) {
                onConfirmed.confirmed(p.message.position());
            }
        }

        /** Declares the queue again (a few times per publish at most); true when it could. */
        private boolean redeclare() {
            if (redeclares++ >= 3) {
                return false;
            }
            declared.remove(queue);
            declare(queue);
            redeclaredAt = seq;
            LOG.warn("Queue {} was gone (deleted while this node runs?): declared it again, re-sending the messages that came back", queue);
            return true;
        }

        private boolean queueMissing() {
            try {
                return admin.getQueueProperties(queue) == null;
            } catch (RuntimeException e) {
                return false;
            }
        }

        /**
         * The broker closed the channel over a message's size (RabbitMQ: 406 "message size N is larger than configured
         * max size M"; Qpid: 311 "Message size of N greater than allowed maximum of M"), which nacks every unconfirmed
         * message on it. The one it means is refused; from now on every message over M is refused before sending.
         */
        private MessageRefusedException sizeRefusal(String reason, Pending p) {
            java.util.regex.Matcher match = reason == null ? null : TOO_LARGE.matcher(reason);
            if (match == null || !match.find()) {
                return null;
            }
            long size = Long.parseLong(match.group(1));
            long brokerMax = Long.parseLong(match.group(2));
            if (brokerMax < maxMessageBytes) {
                maxMessageBytes = brokerMax;
                LOG.warn("The broker refuses messages over {} bytes (its max_message_size), less than llmbatch.ingest.max-message-bytes "
                         + "({} bytes): larger messages are refused before sending from now on; set the setting to the broker's limit",
                        brokerMax, configuredMaxMessageBytes);
            }
            List<Pending> window = new java.util.ArrayList<>(pending.size() + 1);
            window.add(p);
            window.addAll(pending);
            Pending culprit = window.stream().filter(w -> w.message.body().length == size).findFirst()
                    .orElseGet(() -> window.stream().max(java.util.Comparator.comparingInt(w -> w.message.body().length)).orElseThrow());
            // the rest of the window was nacked with it (the channel closed): the caller sends it again, so a message
            // the broker had stored but not yet confirmed when it closed the channel is stored twice (at least once,
            // never lost); confirms that had arrived behind an unconfirmed one still count
            long unconfirmed = 0;
            for (Pending w : window) {
                if (w != p && w.isAcked()) {
                    confirmed++;
                    if (onConfirmed != null) {
                        onConfirmed.confirmed(w.message.position());
                    }
                } else if (w.seq < culprit.seq) {
                    unconfirmed++;
                }
            }
            pending.clear();
            return new MessageRefusedException("the broker refused the message of " + culprit.message.body().length
                                               + " bytes: its limit is " + brokerMax + " bytes (max_message_size)",
                    culprit.message, confirmed, true, unconfirmed);
        }
    }

    private static <T extends Throwable> T cause(Throwable e, Class<T> type) {
        for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
            if (type.isInstance(t)) {
                return type.cast(t);
            }
        }
        return null;
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
            LOG.warn("Cannot declare queue {} yet: {}", queue, describe(e));
        }
    }

    private CorrelationData.Confirm await(CorrelationData correlation) {
        try {
            return correlation.getFuture().get(confirmTimeoutMillis, TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            throw new IllegalStateException("no publisher confirm from the broker within " + confirmTimeoutMillis + " ms", e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while waiting for publisher confirms", e);
        } catch (ExecutionException e) {
            throw new IllegalStateException("publisher confirm failed: " + e.getCause(), e.getCause());
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

    /** A message sent and not yet settled; {@code again} when it is the second send of a message that came back. */
    private record Pending(CorrelationData correlation, OutboundMessage message, long seq, boolean again) {
        boolean isAcked() {
            var f = correlation.getFuture();
            return f.isDone() && !f.isCompletedExceptionally() && f.join().isAck() && correlation.getReturned() == null;
        }
    }
}
