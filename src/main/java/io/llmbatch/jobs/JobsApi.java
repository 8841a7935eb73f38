package io.llmbatch.jobs;

import java.io.IOException;
import java.time.Instant;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Date;
import java.util.Deque;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ConcurrentHashMap;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import org.apache.camel.Exchange;
import org.apache.camel.Message;
import org.springframework.amqp.rabbit.core.RabbitAdmin;

import io.llmbatch.ingest.IngestException;
import io.llmbatch.ops.Progress;

/**
 * The steps of the jobs routes ({@code routes/ingest-jobs.camel.yaml}): the jobs and their status, a job's results as
 * JSON lines or CSV, and the re-drive of a job's dead letters. Counts come from MongoDB (the task ledger and the
 * results) and the broker (the job's dead-letter queue), so they are exact and survive any process's restart; what
 * the workers hold in flight comes from their status reports.
 */
public final class JobsApi {

    static final ObjectMapper JSON = new ObjectMapper().disable(SerializationFeature.WRITE_DATES_AS_TIMESTAMPS);
    private static final long RATE_WINDOW_MILLIS = 60_000;

    private final Jobs jobs;
    private final JobStore store;
    private final RabbitAdmin admin;
    private final Progress progress;
    private final String tasksDeadLetterQueue;
    private final Redrive redrive;
    /** Stored counts seen by earlier status requests, per job: the rate over the last minute. */
    private final Map<String, Deque<long[]>> samples = new ConcurrentHashMap<>();

    /** @param store null: this ingest node has no MongoDB, so status, list and export answer 503 (re-drive still works) */
    public JobsApi(Jobs jobs, JobStore store, RabbitAdmin admin, Progress progress, String tasksDeadLetterQueue, Redrive redrive) {
        this.jobs = jobs;
        this.store = store;
        this.admin = admin;
        this.progress = progress;
        this.tasksDeadLetterQueue = tasksDeadLetterQueue;
        this.redrive = redrive;
    }

    /** The dead-letter queue of a job's tasks: the seed's for the default job, its own for any other. */
    public String deadLetterQueue(String job) {
        return job.equals(jobs.defaultJobName()) ? tasksDeadLetterQueue : tasksDeadLetterQueue + "." + job;
    }

    /** The dead-letter queue of a job's tasks whose answers failed their output checks. */
    public String outputCheckQueue(String job) {
        return io.llmbatch.worker.Worker.outputCheckQueue(tasksDeadLetterQueue, job);
    }

    /** {@code GET /api/jobs}: every job with its main counts. */
    public String list(Exchange exchange) throws IOException {
        List<Map<String, Object>> all = new ArrayList<>();
        for (String name : jobs.names()) {
            Map<String, Object> row = new LinkedHashMap<>();
            try {
                Map<String, Object> s = status(jobs.get(name));
                for (String k : List.of("name", "description", "model", "collection", "submitted", "stored", "failed", "skipped",
                        "remaining", "state")) {
                    row.put(k, s.get(k));
                }
            } catch (Jobs.BrokenJobException e) { // listed, so a mistake in a job file shows where jobs are looked at
                row.put("name", name);
                row.put("error", e.getMessage());
            } catch (Jobs.UnknownJobException e) {
                continue; // removed meanwhile
            }
            all.add(row);
        }
        return json(exchange, 200, Map.of("jobs", all));
    }

    /** {@code GET /api/jobs/{name}}: a job's status. */
    public String get(Exchange exchange) throws IOException {
        return json(exchange, 200, status(job(exchange)));
    }

    /** The whole status of a job (what {@code status --job NAME} draws). */
    public Map<String, Object> status(JobDefinition job) {
        Map<String, Object> counts = store().counts(job);
        long submitted = (Long) counts.get("submitted");
        long stored = (Long) counts.get("stored");
        long failedChecks = depth(outputCheckQueue(job.name()));
        long failed = depth(deadLetterQueue(job.name()));
        failed = failed < 0 || failedChecks < 0 ? -1 : failed + failedChecks;
        long inFlight = progress.inFlightByJob().getOrDefault(job.name(), 0L);
        long remaining = Math.max(0, submitted - stored - failed);
        long now = System.currentTimeMillis();
        double rate = rate(job.name(), now, stored);
        Map<String, Object> s = new LinkedHashMap<>();
        s.put("name", job.name());
        s.put("description", job.description());
        s.put("model", jobs.modelOf(job));
        s.put("collection", job.collection());
        s.put("prompt_version", job.promptVersion());
        s.put("submitted", submitted);
        s.put("stored", stored);
        s.put("failed", failed);
        s.put("skipped", counts.get("skipped"));
        if (job.checks().any() || (Long) counts.get("checks_passed") + (Long) counts.get("checks_repaired") > 0) {
            // output checks: of the stored, passed at the first answer or after a repair; failed: dead-lettered by a check
            Map<String, Object> checks = new LinkedHashMap<>();
            checks.put("passed", counts.get("checks_passed"));
            checks.put("repaired", counts.get("checks_repaired"));
            checks.put("failed", failedChecks);
            checks.put("dead_letter_queue", outputCheckQueue(job.name()));
            s.put("checks", checks);
        }
        s.put("remaining", remaining);
        s.put("in_flight", Math.min(inFlight, remaining));
        s.put("waiting", Math.max(0, remaining - inFlight));
        s.put("state", submitted == 0 ? "empty" : remaining == 0 ? "finished" : "running");
        s.put("rate_per_second", Math.round(rate * 100) / 100.0);
        s.put("eta_seconds", remaining == 0 ? Long.valueOf(0) : rate > 0 ? Long.valueOf(Math.round(remaining / rate)) : null);
        s.put("prompt_tokens", counts.get("prompt_tokens"));
        s.put("completion_tokens", counts.get("completion_tokens"));
        double gpuSeconds = (Double) counts.get("gpu_seconds");
        s.put("gpu_hours", Math.round(gpuSeconds / 36.0) / 100.0);
        Double price = progress.pricePerGpuHour();
        if (price != null) {
            s.put("cost", Map.of("currency", progress.currency(), "so_far", Math.round(gpuSeconds / 3600.0 * price * 100) / 100.0,
                    "per_1000", stored > 0 ? Math.round(gpuSeconds / 3600.0 * price / stored * 1000 * 100) / 100.0 : 0));
        }
        s.put("started_at", iso(counts.get("started_at")));
        s.put("finished_at", submitted > 0 && remaining == 0 ? iso(later(counts.get("last_stored_at"), counts.get("last_submitted_at"))) : null);
        s.put("dead_letter_queue", deadLetterQueue(job.name()));
        return s;
    }

    /**
     * {@code GET /api/jobs/{name}/results?format=jsonl|csv&bom=true&formulas=keep}: every stored result, streamed from
     * MongoDB as it is written to the client (constant memory for any number of rows).
     */
    public Object results(Exchange exchange) {
        JobDefinition job = job(exchange);
        Message msg = exchange.getMessage();
        String format = String.valueOf(msg.getHeader("format", "jsonl", String.class)).toLowerCase(java.util.Locale.ROOT);
        boolean bom = Boolean.parseBoolean(msg.getHeader("bom", "false", String.class));
        String formulas = String.valueOf(msg.getHeader("formulas", "escape", String.class)).toLowerCase(java.util.Locale.ROOT);
        if (!formulas.equals("escape") && !formulas.equals("keep")) {
            throw new IngestException(400, "formulas must be escape (a CSV cell starting with = + - @ gets a leading ') or keep, got '"
                                           + formulas + "'");
        }
        ResultsExport export = switch (format) {
            case "jsonl", "ndjson" -> ResultsExport.jsonLines(store().stored(job, 1000));
            case "csv" -> ResultsExport.csv(job, store().stored(job, 1000), bom, formulas.equals("keep"));
            default -> throw new IngestException(400, "format must be jsonl or csv, got '" + format + "'");
        };
        msg.getHeaders().clear();
        msg.setHeader(Exchange.HTTP_RESPONSE_CODE, 200);
        msg.setHeader(Exchange.CONTENT_TYPE, export.contentType());
        msg.setHeader("Content-Disposition", "attachment; filename=\"" + job.name() + "." + (format.equals("csv") ? "csv" : "jsonl") + "\"");
        return export;
    }

    /** {@code POST /api/jobs/{name}/redrive?reason=REGEX}: the job's dead letters (those whose reason matches) back to work. */
    public String redrive(Exchange exchange) throws IOException {
        JobDefinition job = job(exchange);
        String reason = exchange.getMessage().getHeader("reason", String.class);
        String match = reason == null || reason.isBlank() ? null : reason;
        Redrive.Outcome failures = redrive.run(job, deadLetterQueue(job.name()), match);
        Redrive.Outcome checks = redrive.run(job, outputCheckQueue(job.name()), match); // answers that failed their checks
        Redrive.Outcome outcome = new Redrive.Outcome(failures.moved() + checks.moved(), failures.left() + checks.left(),
                failures.notRenderable() + checks.notRenderable());
        Map<String, Object> answer = new LinkedHashMap<>();
        answer.put("job", job.name());
        answer.put("dead_letter_queue", deadLetterQueue(job.name()));
        answer.put("reason", reason);
        answer.put("moved", outcome.moved());
        answer.put("left", outcome.left());
        answer.put("not_renderable", outcome.notRenderable());
        return json(exchange, 200, answer);
    }

    private JobStore store() {
        if (store == null) {
            throw new IngestException(503, "job counts and results need MongoDB, and this ingest node has none: set MONGODB_URI "
                                           + "(llmbatch.mongodb.uri) to the collector's MongoDB");
        }
        return store;
    }

    private JobDefinition job(Exchange exchange) {
        String name = exchange.getMessage().getHeader("name", String.class);
        try {
            return jobs.get(name);
        } catch (Jobs.UnknownJobException e) {
            throw new IngestException(404, e.getMessage());
        }
    }

    private double rate(String job, long now, long stored) {
        Deque<long[]> d = samples.computeIfAbsent(job, k -> new ArrayDeque<>());
        synchronized (d) {
            d.addLast(new long[] { now, stored });
            while (d.size() > 2 && now - d.peekFirst()[0] > RATE_WINDOW_MILLIS) {
                d.removeFirst();
            }
            long[] first = d.peekFirst();
            double seconds = (now - first[0]) / 1000.0;
            return seconds < 1 || stored < first[1] ? 0 : (stored - first[1]) / seconds;
        }
    }

    private long depth(String queue) {
        try {
            Properties p = admin.getQueueProperties(queue);
            return p == null ? 0 : ((Number) p.get(RabbitAdmin.QUEUE_MESSAGE_COUNT)).longValue();
        } catch (RuntimeException e) {
            return -1;
        }
    }

    private static Object later(Object a, Object b) {
        if (a instanceof Date x && b instanceof Date y) {
            return x.after(y) ? x : y;
        }
        return a != null ? a : b;
    }

    private static String iso(Object date) {
        return date instanceof Date d ? Instant.ofEpochMilli(d.getTime()).toString() : null;
    }

    static String json(Exchange exchange, int status, Object answer) throws IOException {
        Message msg = exchange.getMessage();
        msg.getHeaders().clear(); // never echo request headers (Authorization)
        msg.setHeader(Exchange.HTTP_RESPONSE_CODE, status);
        msg.setHeader(Exchange.CONTENT_TYPE, "application/json");
        return JSON.writerWithDefaultPrettyPrinter().writeValueAsString(answer);
    }
}
