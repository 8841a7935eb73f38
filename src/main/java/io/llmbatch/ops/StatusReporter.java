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
 * them up for {@code /api/progress}. Fire and forget: a lost status only makes the next one count.
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

    static void declareExchange(RabbitAdmin admin) {
        admin.declareExchange(new FanoutExchange(EXCHANGE, true, false));
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
            props.setExpiration(Long.toString(intervalMillis * 3)); // stale news is no news
            template.send(EXCHANGE, "", new Message(status, props));
        } catch (Exception e) {
            LOG.debug("Cannot report status: {}", e.toString()); // the broker is down: the routes say so already
        }
    }
}
