package io.llmbatch.ops;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.camel.support.service.ServiceSupport;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.amqp.core.FanoutExchange;
import org.springframework.amqp.core.Message;
import org.springframework.amqp.core.MessageDeliveryMode;
import org.springframework.amqp.core.MessageProperties;
import org.springframework.amqp.rabbit.connection.ConnectionFactory;
import org.springframework.amqp.rabbit.core.RabbitAdmin;
import org.springframework.amqp.rabbit.core.RabbitTemplate;

/**
 * Every few seconds a worker or collector tells the {@code llmbatch.status} fanout exchange what it does
 * (tasks in flight and done, GPUs and their price; results stored): {@link Progress} on the ingest node adds
 * them up for {@code /api/progress}. Fire and forget: a lost status only makes the next one count, but a reporter
 * that cannot send says so (one WARN per outage), so a node missing from {@code /api/progress} has a reason in its log.
 * <p>
 * Reports carry no per-message {@code expiration}: Qpid Broker-J (the embedded broker) reads that AMQP 0-9-1 field
 * as an absolute JMS expiry time, so a TTL of "15000" meant 1970 and it discarded every report on arrival. Staleness
 * is bounded by the status queue's {@code x-message-ttl} (RabbitMQ) and by {@link Progress} forgetting a process
 * that stopped reporting.
 */
public final class StatusReporter extends ServiceSupport {

    public static final String EXCHANGE = "llmbatch.status";
    private static final Logger LOG = LoggerFactory.getLogger(StatusReporter.class);
    private static final ObjectMapper JSON = new ObjectMapper();

    private final RabbitTemplate template;
    private final RabbitAdmin admin;
    private final long intervalMillis;
    private final Map<String, Object> identity;
    private final Map<String, Supplier<Map<String, Object>>> parts = new LinkedHashMap<>();
    private ScheduledExecutorService scheduler;
    private boolean declared;
    private boolean failing;

    public StatusReporter(ConnectionFactory connectionFactory, long intervalMillis, String host, String roles) {
        this.template = new RabbitTemplate(connectionFactory); // no confirms, not mandatory: nobody may listen
        this.admin = new RabbitAdmin(connectionFactory);
        this.intervalMillis = intervalMillis;
        this.identity = Map.of("host", host, "process", ProcessHandle.current().pid(), "roles", roles);
    }

    /** Adds a section ({@code worker}, {@code collector}) read at each report. */
    public StatusReporter with(String section, Supplier<Map<String, Object>> values) {
        parts.put(section, values);
        return this;
    }

    /** Runs {@code task} every {@code millis} on a daemon thread of its own (stop it with shutdownNow). */
    static ScheduledExecutorService every(long millis, String threadName, Runnable task) {
        ScheduledExecutorService scheduler = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, threadName);
            t.setDaemon(true);
            return t;
        });
        scheduler.scheduleWithFixedDelay(task, 0, millis, TimeUnit.MILLISECONDS);
        return scheduler;
    }

    /**
     * Makes sure the status exchange exists: a passive declaration first, a real one only when it is missing, so a
     * broker that logs or refuses re-declarations of an existing exchange (Qpid: {@code EXH-1001 ... FAILURE}) is
     * asked once per process at most. Any failure propagates: the caller tries again at its next turn.
     */
    static void declareExchange(RabbitAdmin admin) {
        boolean exists = Boolean.TRUE.equals(admin.getRabbitTemplate().execute(channel -> {
            try {
                channel.exchangeDeclarePassive(EXCHANGE);
                return true;
            } catch (java.io.IOException missing) { // 404: the broker closed this channel
                return false;
            }
        }));
        if (!exists) {
            admin.declareExchange(new FanoutExchange(EXCHANGE, true, false));
        }
    }

    /**
     * One WARN when something that should work every few seconds starts failing, one INFO when it works again; the
     * failures in between at DEBUG (the broker being away is reported by the routes already).
     *
     * @return the new state: {@code true} while failing
     */
    static boolean outage(Logger log, boolean wasFailing, Exception failure, String what) {
        if (failure == null) {
            if (wasFailing) {
                log.info("Can {} again", what);
            }
            return false;
        }
        if (!wasFailing) {
            log.warn("Cannot {} (logged once until it works again): {}", what, failure.toString());
        } else {
            log.debug("Still cannot {}: {}", what, failure.toString());
        }
        return true;
    }

    @Override
    protected void doStart() {
        scheduler = every(intervalMillis, "llmbatch-status", this::report);
    }

    @Override
    protected void doStop() {
        if (scheduler != null) {
            scheduler.shutdownNow();
        }
    }

    /** The report as sent: who, when, and each section's values. */
    byte[] status() throws java.io.IOException {
        Map<String, Object> status = new LinkedHashMap<>(identity);
        status.put("sent_at", System.currentTimeMillis());
        status.put("interval_ms", intervalMillis);
        parts.forEach((name, values) -> status.put(name, values.get()));
        return JSON.writeValueAsBytes(status);
    }

    void report() {
        try {
            byte[] status = status();
            if (!declared) {
                declareExchange(admin);
                declared = true;
            }
            MessageProperties props = new MessageProperties();
            props.setContentType(MessageProperties.CONTENT_TYPE_JSON);
            props.setDeliveryMode(MessageDeliveryMode.NON_PERSISTENT);
            template.send(EXCHANGE, "", new Message(status, props));
            failing = outage(LOG, failing, null, "send status reports to " + EXCHANGE);
        } catch (Exception e) {
            declared = false; // the exchange may have been deleted, or the broker restarted: look again next time
            failing = outage(LOG, failing, e, "send status reports to " + EXCHANGE);
        }
    }
}
