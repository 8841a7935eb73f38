package io.llmbatch.ops;

import java.time.Instant;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ScheduledExecutorService;
import java.util.function.Function;
import java.util.function.LongSupplier;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.camel.support.service.ServiceSupport;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.amqp.core.BindingBuilder;
import org.springframework.amqp.core.FanoutExchange;
import org.springframework.amqp.core.Message;
import org.springframework.amqp.core.Queue;
import org.springframework.amqp.rabbit.connection.ConnectionFactory;
import org.springframework.amqp.rabbit.core.RabbitAdmin;
import org.springframework.amqp.rabbit.core.RabbitTemplate;

/**
 * What {@code GET /api/progress} answers: queue depths from the broker, and what the workers and collectors
 * report on {@code llmbatch.status} (see {@link StatusReporter}), turned into a rate over the last minute, an
 * ETA and, with a price per GPU hour, the cost per 1,000 items. Needs only the broker, like every other role.
 */
public final class Progress extends ServiceSupport {

    private static final Logger LOG = LoggerFactory.getLogger(Progress.class);
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final long WINDOW_MILLIS = 60_000;
    private static final long SAMPLE_MILLIS = 2_000;

    private final RabbitTemplate template;
    private final RabbitAdmin admin;
    private final String tasksQueue;
    private final String resultsQueue;
    private final List<String> deadLetterQueues;
    private final Double defaultPricePerGpuHour;
    private final String currency;
    private final String statusQueue;
    /** The latest status of each reporting process, by host/pid. */
    private final Map<String, Reported> latest = new ConcurrentHashMap<>();
    /** Counters of each process at each sample, for the rates over the window. */
    private final Deque<Sample> history = new ArrayDeque<>();
    private final LongSupplier clock;
    private ScheduledExecutorService scheduler;
    private boolean declared;
    private boolean failing;

    record Reported(long receivedAt, JsonNode status) {
    }

    record Sample(long at, Map<String, Long> stored, Map<String, Long> completed) {
    }

    public Progress(ConnectionFactory connectionFactory, String tasksQueue, String resultsQueue, List<String> deadLetterQueues,
                    Double defaultPricePerGpuHour, String currency, String host) {
        this(connectionFactory, tasksQueue, resultsQueue, deadLetterQueues, defaultPricePerGpuHour, currency, host,
                System::currentTimeMillis);
    }

    Progress(ConnectionFactory connectionFactory, String tasksQueue, String resultsQueue, List<String> deadLetterQueues,
             Double defaultPricePerGpuHour, String currency, String host, LongSupplier clock) {
        this.clock = clock;
        this.template = new RabbitTemplate(connectionFactory);
        this.admin = new RabbitAdmin(connectionFactory);
        this.tasksQueue = tasksQueue;
        this.resultsQueue = resultsQueue;
        this.deadLetterQueues = List.copyOf(deadLetterQueues);
        this.defaultPricePerGpuHour = defaultPricePerGpuHour;
        this.currency = currency;
        this.statusQueue = "llmbatch.status." + host + "." + ProcessHandle.current().pid();
    }

    /** {@code llmbatch.cost.per-gpu-hour}: blank for none. */
    public static Double price(String perGpuHour) {
        try {
            return perGpuHour == null || perGpuHour.isBlank() ? null : Double.valueOf(perGpuHour.trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("llmbatch.cost.per-gpu-hour is not a number: " + perGpuHour, e);
        }
    }

    @Override
    protected void doStart() {
        scheduler = StatusReporter.every(SAMPLE_MILLIS, "llmbatch-progress", this::sample);
    }

    @Override
    protected void doStop() {
        if (scheduler != null) {
            scheduler.shutdownNow();
        }
        try {
            admin.deleteQueue(statusQueue);
        } catch (RuntimeException e) {
            // the broker is gone: x-expires removes the queue
        }
    }

    /** Drains the status queue and records a sample of everyone's counters. */
    void sample() {
        try {
            if (!declared) {
                StatusReporter.declareExchange(admin);
                // ours alone; removed by the broker a minute after this process stops reading it; a report older than
                // the longest reporting interval we expect is stale news (RabbitMQ arguments; Qpid logs and ignores
                // them, and forgetting silent processes below bounds staleness there)
                Queue queue = new Queue(statusQueue, false, false, false,
                        Map.of("x-expires", 60_000, "x-max-length", 10_000, "x-message-ttl", 60_000));
                admin.declareQueue(queue);
                admin.declareBinding(BindingBuilder.bind(queue).to(new FanoutExchange(StatusReporter.EXCHANGE)));
                declared = true;
            }
            Message m;
            while ((m = template.receive(statusQueue)) != null) {
                accept(m.getBody());
            }
            failing = StatusReporter.outage(LOG, failing, null, "read status reports from " + StatusReporter.EXCHANGE);
        } catch (Exception e) {
            declared = false; // the broker restarted or is away: declare again next time
            failing = StatusReporter.outage(LOG, failing, e, "read status reports from " + StatusReporter.EXCHANGE);
        }
        long now = clock.getAsLong();
        latest.values().removeIf(r -> now - r.receivedAt() > 3 * Math.max(r.status().path("interval_ms").asLong(5000), SAMPLE_MILLIS));
        Map<String, Long> stored = new HashMap<>();
        Map<String, Long> completed = new HashMap<>();
        latest.forEach((key, r) -> {
            if (r.status().has("collector")) {
                stored.put(key, r.status().path("collector").path("stored").asLong());
            }
            if (r.status().has("worker")) {
                completed.put(key, r.status().path("worker").path("completed").asLong());
            }
        });
        synchronized (history) {
            history.addLast(new Sample(now, stored, completed));
            while (history.size() > 2 && now - history.peekFirst().at() > WINDOW_MILLIS) {
                history.removeFirst();
            }
        }
    }

    /** Takes one status report (what {@link StatusReporter} sends). */
    void accept(byte[] report) throws java.io.IOException {
        JsonNode status = JSON.readTree(report);
        latest.put(status.path("host").asText() + "/" + status.path("process").asText(), new Reported(clock.getAsLong(), status));
    }

    /** Tasks in flight per job, as the workers last reported them (sampled: what the workers hold right now). */
    public Map<String, Long> inFlightByJob() {
        Map<String, Long> byJob = new HashMap<>();
        for (Reported r : latest.values()) {
            r.status().path("worker").path("in_flight_by_job").fields()
                    .forEachRemaining(e -> byJob.merge(e.getKey(), e.getValue().asLong(), Long::sum));
        }
        return byJob;
    }

    /** The price of a GPU hour the workers report (their mean), else this node's llmbatch.cost.per-gpu-hour; null: none. */
    public Double pricePerGpuHour() {
        double sum = 0;
        int n = 0;
        for (Reported r : latest.values()) {
            JsonNode price = r.status().path("worker").path("cost_per_gpu_hour");
            if (price.isNumber()) {
                sum += price.asDouble();
                n++;
            }
        }
        return n > 0 ? sum / n : defaultPricePerGpuHour;
    }

    public String currency() {
        return currency;
    }

    /** The body of {@code GET /api/progress}. */
    public Map<String, Object> snapshot() {
        Map<String, Object> answer = new LinkedHashMap<>();
        Long waiting = depth(tasksQueue);
        Long resultsWaiting = depth(resultsQueue);
        long inFlight = 0;
        long documents = -1;
        List<Map<String, Object>> workers = new ArrayList<>();
        List<Map<String, Object>> collectors = new ArrayList<>();
        List<Sample> samples;
        synchronized (history) {
            samples = List.copyOf(history);
        }
        Sample last = samples.isEmpty() ? null : samples.get(samples.size() - 1);
        double seconds = samples.size() < 2 ? 0 : (last.at() - samples.get(0).at()) / 1000.0;
        double gpuCostPerHour = 0;
        double pricedRate = 0;
        for (Map.Entry<String, Reported> e : new HashMap<>(latest).entrySet()) {
            JsonNode status = e.getValue().status();
            JsonNode worker = status.path("worker");
            if (!worker.isMissingNode()) {
                inFlight += worker.path("in_flight").asLong();
                Map<String, Object> w = new LinkedHashMap<>();
                w.put("host", status.path("host").asText());
                w.put("process", status.path("process").asLong());
                w.put("gpu", worker.path("gpu").asText());
                w.put("gpus", worker.path("gpus").asInt());
                w.put("in_flight", worker.path("in_flight").asLong());
                w.put("concurrency", worker.path("concurrency").asInt());
                w.put("completed", worker.path("completed").asLong());
                double rate = rate(samples, e.getKey(), Sample::completed);
                w.put("rate_per_second", round(rate));
                Double price = worker.hasNonNull("cost_per_gpu_hour") ? Double.valueOf(worker.get("cost_per_gpu_hour").asDouble()) : defaultPricePerGpuHour;
                if (price != null) {
                    double perHour = price * worker.path("gpus").asInt();
                    w.put("cost_per_hour", round(perHour));
                    w.put("cost_per_1000", rate > 0 ? round(perHour / (rate * 3.6)) : null);
                    gpuCostPerHour += perHour;
                    pricedRate += rate;
                }
                workers.add(w);
            }
            JsonNode collector = status.path("collector");
            if (!collector.isMissingNode()) {
                documents = Math.max(documents, collector.path("documents").asLong(-1));
                collectors.add(Map.of("host", status.path("host").asText(), "process", status.path("process").asLong(),
                        "stored", collector.path("stored").asLong(), "documents", collector.path("documents").asLong(-1)));
            }
        }
        double rate = 0;
        for (String key : last == null ? List.<String>of() : last.stored().keySet()) {
            rate += rate(samples, key, Sample::stored);
        }
        answer.put("tasks_waiting", waiting);
        answer.put("in_flight", inFlight);
        answer.put("results_waiting", resultsWaiting);
        answer.put("stored", documents < 0 ? null : documents);
        Map<String, Object> dead = new LinkedHashMap<>();
        long deadTotal = 0;
        for (String q : deadLetterQueues) {
            Long n = depth(q);
            dead.put(q, n);
            deadTotal += n == null ? 0 : n;
        }
        answer.put("dead_lettered", deadTotal);
        answer.put("dead_letter_queues", dead);
        answer.put("rate_per_second", round(rate));
        answer.put("rate_window_seconds", Math.round(seconds));
        Long remaining = waiting == null || resultsWaiting == null ? null : waiting + inFlight + resultsWaiting;
        answer.put("remaining", remaining);
        if (remaining != null && remaining == 0) {
            answer.put("eta_seconds", 0);
            answer.put("eta", Instant.ofEpochMilli(clock.getAsLong()).toString());
        } else if (remaining != null && rate > 0) {
            long eta = Math.round(remaining / rate);
            answer.put("eta_seconds", eta);
            answer.put("eta", Instant.ofEpochMilli(clock.getAsLong()).plusSeconds(eta).toString());
        } else {
            answer.put("eta_seconds", null); // nothing stored in the last minute: no estimate
            answer.put("eta", null);
        }
        if (gpuCostPerHour > 0) {
            Map<String, Object> cost = new LinkedHashMap<>();
            cost.put("currency", currency);
            cost.put("per_hour", round(gpuCostPerHour));
            cost.put("per_1000", pricedRate > 0 ? round(gpuCostPerHour / (pricedRate * 3.6)) : null);
            answer.put("cost", cost);
        }
        answer.put("workers", workers);
        answer.put("collectors", collectors);
        if (waiting == null) {
            answer.put("error", "the broker cannot be reached: queue depths unknown");
        }
        answer.put("updated_at", Instant.ofEpochMilli(clock.getAsLong()).toString());
        return answer;
    }

    /** {@code GET /api/progress}: the snapshot as JSON, no request header echoed. */
    public String answer(org.apache.camel.Exchange exchange) throws java.io.IOException {
        org.apache.camel.Message msg = exchange.getMessage();
        msg.getHeaders().clear();
        msg.setHeader(org.apache.camel.Exchange.HTTP_RESPONSE_CODE, 200);
        msg.setHeader(org.apache.camel.Exchange.CONTENT_TYPE, "application/json");
        return JSON.writerWithDefaultPrettyPrinter().writeValueAsString(snapshot());
    }

    /**
     * Per second over the window, of one process's counter, from the first sample that saw that process; a flat
     * start (idle before the job came) is left out, so the first minute of a job is not averaged with the wait.
     */
    private static double rate(List<Sample> samples, String key, Function<Sample, Map<String, Long>> counters) {
        Sample last = samples.isEmpty() ? null : samples.get(samples.size() - 1);
        Long now = last == null ? null : counters.apply(last).get(key);
        Sample from = null;
        for (Sample s : samples) {
            Long then = counters.apply(s).get(key);
            if (then == null) {
                continue;
            }
            if (from != null && !then.equals(counters.apply(from).get(key))) {
                break; // the counter moved: the rate counts from the last sample before it did
            }
            from = s;
        }
        if (now == null || from == null || from == last) {
            return 0;
        }
        long then = counters.apply(from).get(key);
        double seconds = (last.at() - from.at()) / 1000.0;
        return now < then || seconds < 1 ? 0 : (now - then) / seconds;
    }

    private Long depth(String queue) {
        try {
            Properties p = admin.getQueueProperties(queue);
            return p == null ? 0L : ((Number) p.get(RabbitAdmin.QUEUE_MESSAGE_COUNT)).longValue();
        } catch (RuntimeException e) {
            return null;
        }
    }

    private static double round(double v) {
        return Math.round(v * 100) / 100.0;
    }
}
