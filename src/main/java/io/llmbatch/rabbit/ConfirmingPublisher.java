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
import org.springframework.amqp.core.Queue;
import org.springframework.amqp.rabbit.core.RabbitAdmin;
import org.springframework.amqp.rabbit.connection.RabbitUtils;
import org.springframework.amqp.rabbit.connection.ConnectionFactory;

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

    /** Where the channels come from: the publisher connection, its channels used by nothing else. */
    private final ConnectionFactory channels;
    private final RabbitAdmin admin;
    private final int window;
    private final long confirmTimeoutMillis;
    private final java.util.function.Function<String, Map<String, Object>> queueArguments;
    private final Set<String> declared = ConcurrentHashMap.newKeySet();
    private final long configuredMaxMessageBytes;
    private volatile long maxMessageBytes;

    /**
     * @param channels the connection factory whose channels this publisher uses, and nothing else does: a RabbitTemplate
     *                 that sent or executed on one of them would have Spring's return listener on it, which fails on a
     *                 returned message without Spring's correlation header, and the return would never reach this one
     */
    public ConfirmingPublisher(ConnectionFactory channels, RabbitAdmin admin, int window, long confirmTimeoutMillis,
                               java.util.function.Function<String, Map<String, Object>> queueArguments, long maxMessageBytes) {
        if (window < 1) {
            throw new IllegalArgumentException("confirm window must be at least 1, was " + window);
        }
        if (maxMessageBytes < 1) {
            throw new IllegalArgumentException("llmbatch.ingest.max-message-bytes must be at least 1, was " + maxMessageBytes);
        }
        this.configuredMaxMessageBytes = maxMessageBytes;
        this.maxMessageBytes = maxMessageBytes;
        this.channels = channels;
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
        com.rabbitmq.client.Channel channel = null;
        try {
            channel = channels.createConnection().createChannel(false);
            return new Run(channel, queue, limit, onConfirmed).all(messages);
        } catch (org.springframework.amqp.AmqpException e) {
            // a broker gone since the queue was declared fails as the channel opens: nothing sent
            declared.remove(queue);
            throw new PublishException(queue, 0, 0, "cannot publish to queue '" + queue + "': " + describe(e), e);
        } finally {
            if (channel != null) {
                RabbitUtils.closeChannel(channel); // back into the cache, unless the run discarded it
            }
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

    /**
     * One publish: the window of messages sent and not yet settled, on one channel. Messages go out through the channel
     * itself (basicPublish), its confirms and returns are matched here: RabbitTemplate's send would add two headers to
     * every message to correlate returns (spring_listener_return_correlation, spring_returned_message_correlation), and
     * a message with any header table costs RabbitMQ about a sixth more CPU than one without (bench/HeaderCost.java).
     */
    private final class Run implements com.rabbitmq.client.ConfirmListener, com.rabbitmq.client.ReturnListener,
            com.rabbitmq.client.ShutdownListener {
        private final com.rabbitmq.client.Channel channel;
        /** Sent and not yet confirmed, by the channel's publish sequence number; written by the connection's thread too. */
        private final java.util.concurrent.ConcurrentSkipListMap<Long, Pending> unconfirmed = new java.util.concurrent.ConcurrentSkipListMap<>();
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

        Run(com.rabbitmq.client.Channel channel, String queue, int inFlight, PositionListener onConfirmed) {
            this.channel = channel;
            this.queue = queue;
            this.inFlight = inFlight;
            this.onConfirmed = onConfirmed;
            this.pending = new ArrayDeque<>(Math.min(inFlight, 4096) + 1);
        }

        Confirmed all(Iterator<OutboundMessage> messages) {
            channel.addConfirmListener(this);
            channel.addReturnListener(this);
            channel.addShutdownListener(this);
            try {
                if (channel.getNextPublishSeqNo() == 0) {
                    channel.confirmSelect(); // a connection factory without publisher confirms: this channel's first run
                }
                return publishAll(messages);
            } catch (java.io.IOException e) {
                throw new org.springframework.amqp.AmqpIOException(e);
            } finally {
                try {
                    channel.removeShutdownListener(this);
                    channel.removeReturnListener(this);
                    channel.removeConfirmListener(this);
                } catch (RuntimeException closed) {
                    // a cached channel's methods throw once it is closed, and a closed channel is not used again
                }
            }
        }

        @Override
        public void handleAck(long tag, boolean multiple) {
            settled(tag, multiple, Confirm.ACK);
        }

        @Override
        public void handleNack(long tag, boolean multiple) {
            settled(tag, multiple, Confirm.NACK);
        }

        private void settled(long tag, boolean multiple, Confirm confirm) {
            if (multiple) {
                var upTo = unconfirmed.headMap(tag, true);
                upTo.values().forEach(p -> p.confirm.complete(confirm));
                upTo.clear();
            } else {
                Pending p = unconfirmed.remove(tag);
                if (p != null) {
                    p.confirm.complete(confirm);
                }
            }
        }

        /**
         * A message came back unroutable. RabbitMQ sends the return before that message's confirm, on the connection's
         * one thread, so it is still unconfirmed: the first unconfirmed one with the same message_id and body is it (two
         * such messages are the same message; which of them came back does not matter).
         */
        @Override
        public void handleReturn(int replyCode, String replyText, String exchange, String routingKey,
                                 com.rabbitmq.client.AMQP.BasicProperties properties, byte[] body) {
            for (Pending p : unconfirmed.values()) {
                if (p.returned == null && java.util.Objects.equals(p.message.messageId(), properties.getMessageId())
                    && java.util.Arrays.equals(p.message.body(), body)) {
                    p.returned = replyText == null ? "NO_ROUTE" : replyText;
                    return;
                }
            }
        }

        /** The channel closed (the broker closed it, or the connection went): what was not confirmed is nacked, with why. */
        @Override
        public void shutdownCompleted(com.rabbitmq.client.ShutdownSignalException cause) {
            Confirm nack = new Confirm(false, cause.getMessage());
            for (var e = unconfirmed.pollFirstEntry(); e != null; e = unconfirmed.pollFirstEntry()) {
                e.getValue().confirm.complete(nack);
            }
        }

        private Confirmed publishAll(Iterator<OutboundMessage> messages) {
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
                RabbitUtils.setPhysicalCloseRequired(channel, true);
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
            Pending p = new Pending(m, seq, again);
            long tag = -1;
            try {
                com.rabbitmq.client.AMQP.BasicProperties props = properties(m);
                tag = channel.getNextPublishSeqNo();
                unconfirmed.put(tag, p); // before the send: a channel that closes after it nacks this message too
                channel.basicPublish("", queue, true, props, m.body());
            } catch (java.io.IOException | RuntimeException e) {
                unconfirmed.remove(tag);
                IllegalArgumentException refused = cause(e, IllegalArgumentException.class);
                if (refused != null) {
                    // the AMQP client refused to encode this message (a field over an AMQP limit): nothing was sent
                    settleAll();
                    throw new MessageRefusedException("the AMQP client refused the message: " + refused.getMessage(), m, confirmed, false);
                }
                if (!channel.isOpen() && !pending.isEmpty()) {
                    // the broker closed the channel over a message sent before (its size, say): that is the failure
                    settleAll();
                }
                throw e instanceof java.io.IOException io ? new org.springframework.amqp.AmqpIOException(io) : (RuntimeException) e;
            }
            pending.add(p);
            seq++;
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
            Confirm confirm = await(p.confirm);
            boolean returned = p.returned != null;
            if (returned || !confirm.ack() && queueMissing()) {
                // the queue is gone (an operator deleted it): nothing was stored for this message, so declaring the
                // queue again and sending it once more cannot duplicate it; a message that comes back twice fails
                if (!p.again && (p.seq >= redeclaredAt ? redeclare() : true)) {
                    send(p.message, true);
                    return;
                }
                throw new IllegalStateException(returned
                        ? "broker could not route the message to queue '" + queue + "': " + p.returned
                        : "broker refused (nacked) the message: queue '" + queue + "' does not exist");
            }
            if (!confirm.ack()) {
                MessageRefusedException tooLarge = sizeRefusal(confirm.reason(), p);
                if (tooLarge != null) {
                    throw tooLarge;
                }
                throw new IllegalStateException("broker refused (nacked) the message" + (confirm.reason() == null ? "" : ": " + confirm.reason()));
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

    private Confirm await(java.util.concurrent.CompletableFuture<Confirm> confirm) {
        try {
            return confirm.get(confirmTimeoutMillis, TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            throw new IllegalStateException("no publisher confirm from the broker within " + confirmTimeoutMillis + " ms", e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while waiting for publisher confirms", e);
        } catch (ExecutionException e) {
            throw new IllegalStateException("publisher confirm failed: " + e.getCause(), e.getCause());
        }
    }

    /** Persistent JSON, with no header table at all when the message has no headers (see {@link Run}). */
    private static com.rabbitmq.client.AMQP.BasicProperties properties(OutboundMessage m) {
        Map<String, Object> headers = null;
        if (!m.headers().isEmpty()) {
            headers = new java.util.LinkedHashMap<>(m.headers().size() * 2);
            for (Map.Entry<String, Object> h : m.headers().entrySet()) {
                headers.put(h.getKey(), headerValue(h.getValue()));
            }
        }
        return new com.rabbitmq.client.AMQP.BasicProperties.Builder().contentType("application/json").contentEncoding("UTF-8")
                .deliveryMode(2).messageId(m.messageId()).appId("llm-batch").headers(headers).build();
    }

    /** A header value as the AMQP client can write it: its field-table types as they are, anything else as its text. */
    private static Object headerValue(Object v) {
        if (v instanceof List<?> list) {
            return list.stream().map(ConfirmingPublisher::headerValue).toList();
        }
        if (v instanceof Map<?, ?> map) {
            Map<String, Object> table = new java.util.LinkedHashMap<>();
            map.forEach((k, value) -> table.put(String.valueOf(k), headerValue(value)));
            return table;
        }
        return v == null || v instanceof String || v instanceof Integer || v instanceof Long || v instanceof Short || v instanceof Byte
               || v instanceof Double || v instanceof Float || v instanceof java.math.BigDecimal || v instanceof Boolean
               || v instanceof byte[] || v instanceof java.util.Date || v instanceof com.rabbitmq.client.LongString ? v : String.valueOf(v);
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
    private static final class Pending {
        final OutboundMessage message;
        final long seq;
        final boolean again;
        final java.util.concurrent.CompletableFuture<Confirm> confirm = new java.util.concurrent.CompletableFuture<>();
        /** The broker's reply text when the message came back unroutable; set before its confirm completes. */
        volatile String returned;

        Pending(OutboundMessage message, long seq, boolean again) {
            this.message = message;
            this.seq = seq;
            this.again = again;
        }

        boolean isAcked() {
            return confirm.isDone() && confirm.join().ack() && returned == null;
        }
    }

    /** The broker's answer to one message: ack, or nack with the reason when the channel closed over it. */
    private record Confirm(boolean ack, String reason) {
        static final Confirm ACK = new Confirm(true, null);
        static final Confirm NACK = new Confirm(false, null);
    }
}
