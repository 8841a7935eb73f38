package io.llmbatch.worker;

import io.llmbatch.jobs.Jobs;
import io.llmbatch.jobs.TaskEnvelope;
import io.llmbatch.jobs.PromptTemplate;
import io.llmbatch.jobs.SystemPrompt;
import java.io.IOException;
import java.math.BigDecimal;
import java.math.RoundingMode;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.LinkedHashMap;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.camel.Exchange;
import org.apache.camel.component.springrabbit.SpringRabbitMQConstants;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.llmbatch.ingest.Tasks;
import io.llmbatch.llm.Completion;
import io.llmbatch.llm.LlmBalancer;
import io.llmbatch.llm.LlmExceptions.LlmRejectedException;
import io.llmbatch.rabbit.ConfirmingPublisher;
import io.llmbatch.rabbit.OutboundMessage;
import io.llmbatch.ops.Meters;

/**
 * The steps of the worker route: parse the task, turn it into the LLM request (its prompt from the template, the system
 * prompt), turn the LLM's completion into the result message and publish it with a confirm (the route finishing is
 * what acknowledges the task), or dead-letter a task that can never succeed, with the reason in its headers.
 */
public class Worker {

    private static final Logger LOG = LoggerFactory.getLogger(Worker.class);
    static final String TASK = "llmbatchTask";
    static final String STARTED_AT = "llmbatchStartedAt";
    static final String MESSAGE_ID = SpringRabbitMQConstants.MESSAGE_ID;
    /** The task's message id and deliveries, kept as properties: the LLM request routes clear every header. */
    static final String TASK_MESSAGE_ID = "llmbatchTaskMessageId";
    static final String TASK_REDELIVERED = "llmbatchTaskRedelivered";
    static final String TASK_DELIVERY_COUNT = "llmbatchTaskDeliveryCount";
    /** The job headers of a task rendered at ingest (Jobs.JOB, REQUEST, ...), kept as they arrived. */
    static final String TASK_JOB_HEADERS = "llmbatchTaskJobHeaders";
    /** Whether the task's message carried its job in its body ({@link TaskEnvelope}) rather than in headers. */
    static final String TASK_ENVELOPED = "llmbatchTaskEnveloped";

    private final PromptTemplate prompt;
    private final ConfirmingPublisher publisher;
    private final String resultsQueue;
    private final String deadLetterQueue;
    private final String companyField;
    private final String host;
    private final String gpu;
    private final int maxPromptChars;
    private final String model;
    private final SystemPrompt system;
    private final String defaultJob;
    private volatile double gpusPerSlot = 1;
    private volatile io.llmbatch.jobs.CancelledBatches cancelledBatches;
    private final java.util.concurrent.atomic.AtomicLong completed = new java.util.concurrent.atomic.AtomicLong();

    public Worker(PromptTemplate prompt, SystemPrompt system, ConfirmingPublisher publisher, String resultsQueue,
                  String deadLetterQueue, String companyField, String host, String gpu, int maxPromptChars, String model,
                  String defaultJob) {
        this.defaultJob = defaultJob;
        this.maxPromptChars = maxPromptChars;
        this.system = system;
        this.model = model;
        this.prompt = prompt;
        this.publisher = publisher;
        this.resultsQueue = resultsQueue;
        this.deadLetterQueue = deadLetterQueue;
        this.companyField = companyField;
        this.host = host;
        this.gpu = gpu;
    }

    /** Parses the task message; anything that is not a JSON object is a poison task. */
    public ObjectNode parseTask(Exchange exchange) {
        exchange.setProperty(STARTED_AT, OffsetDateTime.now(ZoneOffset.UTC));
        byte[] body = exchange.getMessage().getBody(byte[].class);
        JsonNode task;
        try {
            task = body == null ? null : Tasks.JSON.readTree(body);
        } catch (IOException e) {
            throw new PoisonTaskException("task is not valid JSON: " + Tasks.describe(e));
        }
        if (task == null || !task.isObject()) {
            throw new PoisonTaskException("task must be a JSON object, got " + (task == null ? "nothing" : Tasks.typeOf(task)));
        }
        var msg = exchange.getMessage();
        Map<String, Object> envelope;
        try {
            envelope = TaskEnvelope.unwrap((ObjectNode) task); // the task as it came stays
        } catch (IllegalArgumentException e) {
            throw new PoisonTaskException(e.getMessage());
        }
        Map<String, Object> jobHeaders = new LinkedHashMap<>();
        if (envelope != null) {
            jobHeaders.putAll(envelope);
            envelope.forEach(msg::setHeader); // the routes ask them of the message, as of a task whose headers carry them
        } else { // queued by an older ingest node: its job in AMQP headers
            msg.getHeaders().forEach((k, v) -> {
                if (k.startsWith("x-llmbatch-") && v != null && TaskEnvelope.HEADERS.contains(k)) {
                    jobHeaders.put(k, v.toString());
                }
            });
        }
        // set before any check: a poison task of a job goes to its job's dead-letter queue
        exchange.setProperty(TASK_JOB_HEADERS, jobHeaders);
        exchange.setProperty(TASK_ENVELOPED, envelope != null);
        if (!jobHeaders.containsKey(Jobs.REQUEST)) {
            // a task in the seed's form, published by another producer: rendered here with the seed's template
            JsonNode company = task.get(companyField);
            if (company == null || !company.isValueNode() || company.asText().isBlank()) {
                throw new PoisonTaskException("task lacks '" + companyField + "' (llmbatch.worker.company-field), the company name");
            }
            if (task.hasNonNull("job")) {
                throw new PoisonTaskException("task of job '" + task.get("job").asText() + "' was not rendered: a job's tasks are "
                                              + "submitted through the ingest node, which makes their prompts (re-drive it from there)");
            }
        }
        exchange.setProperty(TASK, task);
        exchange.setProperty(TASK_MESSAGE_ID, msg.getHeader(MESSAGE_ID, String.class));
        exchange.setProperty(TASK_REDELIVERED, Boolean.TRUE.equals(msg.getHeader(SpringRabbitMQConstants.REDELIVERED, Boolean.class)));
        exchange.setProperty(TASK_DELIVERY_COUNT, msg.getHeader("x-delivery-count", Long.class)); // quorum queues
        return (ObjectNode) task;
    }

    /**
     * The LLM request for the task, the variable the request routes build the body from: as the ingest node rendered it
     * for the task's job ({@code prompt}, {@code system}, {@code params}, {@code model}), or, for a task in the seed's
     * form, {@code prompt} from the local template file and {@code system} when a system prompt is configured.
     */
    public ObjectNode request(ObjectNode task, Exchange exchange) {
        @SuppressWarnings("unchecked")
        Map<String, Object> jobHeaders = exchange.getProperty(TASK_JOB_HEADERS, Map.class);
        Object rendered = jobHeaders == null ? null : jobHeaders.get(Jobs.REQUEST);
        if (rendered != null) {
            JsonNode request;
            try {
                request = Tasks.JSON.readTree(rendered.toString());
            } catch (IOException e) {
                throw new PoisonTaskException("the task's rendered request (" + Jobs.REQUEST + ") is not JSON: " + Tasks.describe(e));
            }
            if (!request.isObject() || !request.path("prompt").isTextual() && !request.path("body").isObject()) {
                throw new PoisonTaskException("the task's rendered request (" + Jobs.REQUEST + ") has no prompt");
            }
            int length = request.path("prompt").asText("").length() + request.path("system").asText("").length();
            if (length > maxPromptChars) {
                throw new PoisonTaskException("prompt of " + length + " characters exceeds llmbatch.worker.max-prompt-chars=" + maxPromptChars);
            }
            return (ObjectNode) request;
        }
        String text;
        try {
            text = prompt.render(task);
        } catch (PromptTemplate.MissingFieldException e) {
            throw new PoisonTaskException(e.getMessage());
        }
        String systemText = system.text();
        int length = text.length() + (systemText == null ? 0 : systemText.length());
        if (length > maxPromptChars) { // no model takes it: a 10 MB field is a mistake, not a prompt
            throw new PoisonTaskException("prompt of " + length + " characters exceeds llmbatch.worker.max-prompt-chars="
                                          + maxPromptChars);
        }
        ObjectNode request = Tasks.JSON.createObjectNode().put("prompt", text);
        if (systemText != null) {
            request.put("system", systemText);
        }
        return request;
    }

    /** Publishes the result and returns once the broker confirmed it. */
    public void publishResult(Completion completion, Exchange exchange) throws IOException {
        ObjectNode task = exchange.getProperty(TASK, ObjectNode.class);
        @SuppressWarnings("unchecked")
        Map<String, Object> jobHeaders = exchange.getProperty(TASK_JOB_HEADERS, Map.class);
        boolean rendered = jobHeaders != null && jobHeaders.containsKey(Jobs.REQUEST);
        ObjectNode result = Tasks.JSON.createObjectNode();
        String company = rendered ? (String) jobHeaders.get(Jobs.COMPANY_FIELD) : companyField;
        if (company != null && task.hasNonNull(company)) {
            result.put("company", task.get(company).asText());
        }
        boolean batchLine = BatchResults.isBatchLine(jobHeaders);
        if (batchLine) { // a line of an OpenAI batch: its output line's response, beside the usual fields
            BatchResults.identify(result, jobHeaders);
            Object asked = jobHeaders.get(Jobs.MODEL);
            BatchResults.succeeded(result, completion, asked == null ? null : asked.toString(), BatchResults.requestId(jobHeaders));
        } else {
            result.put(rendered ? String.valueOf(jobHeaders.getOrDefault(Jobs.OUTPUT_FIELD, "output")) : "intro", completion.text());
        }
        OutputChecks.Verdict verdict = exchange.getVariable(OutputChecks.VERDICT, OutputChecks.Verdict.class);
        // the GPU time of every call the task took, repair requests included
        double seconds = verdict != null ? verdict.seconds() : completion.seconds();
        result.put("spends", BigDecimal.valueOf(completion.seconds()).setScale(3, RoundingMode.HALF_UP));
        result.put("gpu_seconds", BigDecimal.valueOf(seconds * gpusPerSlot).setScale(3, RoundingMode.HALF_UP));
        if (!batchLine) {
            result.set("task", task);
        }
        result.put("model_name", rendered && jobHeaders.get(Jobs.MODEL) != null ? jobHeaders.get(Jobs.MODEL).toString() : model);
        if (rendered) {
            result.put("job", String.valueOf(jobHeaders.get(Jobs.JOB)));
            result.put("prompt_version", String.valueOf(jobHeaders.get(Jobs.PROMPT_VERSION)));
            result.put("request_hash", String.valueOf(jobHeaders.get(Jobs.REQUEST_HASH)));
        } else { // the seed's job, its prompt made here from this worker's template
            result.put("job", defaultJob);
            result.put("prompt_version", localPromptVersion());
        }
        if (completion.servedModel() != null) {
            result.put("served_model", completion.servedModel()); // what the server says it ran
        }
        if (completion.finishReason() != null) {
            result.put("finish_reason", completion.finishReason()); // "length": cut at max_tokens
        }
        result.put("worker_host", host);
        result.put("gpu", gpu);
        result.put("backend", completion.backend());
        if (completion.promptTokens() != null) {
            result.put("prompt_tokens", completion.promptTokens());
        }
        if (completion.completionTokens() != null) {
            result.put("completion_tokens", completion.completionTokens());
        }
        result.put("started_at", exchange.getProperty(STARTED_AT, OffsetDateTime.class).toString());
        result.put("finished_at", OffsetDateTime.now(ZoneOffset.UTC).toString());
        result.put("attempts", completion.attempts());
        if (verdict != null && verdict.isChecked()) { // what the job's status counts as passed or repaired
            ObjectNode checks = result.putObject("checks").put("repairs", verdict.getRepairs());
            if (!verdict.failedChecks().isEmpty()) {
                verdict.failedChecks().forEach(checks.putArray("failed")::add);
            }
        }
        if (Boolean.TRUE.equals(exchange.getProperty(TASK_REDELIVERED, Boolean.class))) {
            result.put("redelivered", true); // the broker delivered the task before (to this or another worker)
        }
        Long deliveries = exchange.getProperty(TASK_DELIVERY_COUNT, Long.class);
        if (deliveries != null) {
            result.put("delivery_count", deliveries);
        }
        String id = exchange.getProperty(TASK_MESSAGE_ID, String.class);
        Map<String, Object> headers = new LinkedHashMap<>();
        headers.put(ConfirmingPublisher.SOURCE_HEADER, "worker:" + host);
        if (rendered) { // where and under which key the collector stores it
            headers.put(Jobs.PID, jobHeaders.get(Jobs.PID));
            headers.put(Jobs.COLLECTION, jobHeaders.get(Jobs.COLLECTION));
            headers.put(Jobs.JOB, jobHeaders.get(Jobs.JOB));
        }
        publisher.publishOne(resultsQueue, new OutboundMessage(Tasks.JSON.writeValueAsBytes(result),
                id != null ? id : Tasks.messageId(task), headers, 0));
        completed.incrementAndGet();
        if (verdict != null && verdict.isChecked()) {
            Meters.outputChecked(String.valueOf(jobHeaders.get(Jobs.JOB)), verdict.getRepairs() == 0 ? "passed" : "repaired");
        }
    }

    /**
     * The GPUs one LLM slot stands for (this worker's GPUs over its slots): a result's {@code gpu_seconds} is its call's
     * seconds times this, what a job's GPU time and cost add up.
     */
    public Worker gpusPerSlot(double share) {
        this.gpusPerSlot = share;
        return this;
    }

    /** Results this worker published since it started. */
    public long completed() {
        return completed.get();
    }

    /**
     * Publishes the task as received to the dead-letter queue, with why in its headers; the route then ends
     * normally, so the task is acknowledged and never loops.
     */
    public void deadLetter(Exchange exchange) throws IOException {
        Exception e = exchange.getProperty(Exchange.EXCEPTION_CAUGHT, Exception.class);
        // the dead-letter path runs on the original message: the job's fields come from what parseTask read of it
        Map<String, Object> fields = jobFields(exchange);
        if (fields.get(Jobs.BATCH) != null) {
            // a line of an OpenAI batch fails into its batch's error file (the Batch API's contract: a failed request is
            // reported, not queued again), so it goes to the results as a failed line rather than to a dead-letter queue
            Map<String, Object> jobHeaders = fields;
            ObjectNode result = lineResult(exchange, jobHeaders);
            BatchResults.failed(result, BatchResults.requestId(jobHeaders), e instanceof LlmRejectedException
                    || e instanceof PoisonTaskException, e == null ? "unknown" : String.valueOf(e.getMessage()));
            publishLine(exchange, jobHeaders, result);
            LOG.warn("Line {} of batch {} failed: {}", jobHeaders.get(Jobs.CUSTOM_ID), jobHeaders.get(Jobs.BATCH), e == null ? "" : e.getMessage());
            return;
        }
        Map<String, Object> headers = new LinkedHashMap<>();
        LlmBalancer.Attempts attempts = exchange.getProperty(LlmBalancer.ATTEMPTS, LlmBalancer.Attempts.class);
        headers.put("x-llmbatch-attempts", e instanceof LlmRejectedException r ? r.attempts() : attempts == null ? 0 : attempts.calls());
        headers.put("x-llmbatch-worker-host", host);
        headers.put(ConfirmingPublisher.SOURCE_HEADER, "worker:" + host);
        // a job's task goes to its job's dead-letter queue and keeps what it needs to be re-driven: a body that carries its
        // job has it all, and its headers name the job and key (a prompt in a header could be over an AMQP frame)
        Object job = fields.get(Jobs.JOB);
        boolean enveloped = Boolean.TRUE.equals(exchange.getProperty(TASK_ENVELOPED, Boolean.class));
        fields.forEach((h, v) -> {
            if (!enveloped || !h.equals(Jobs.REQUEST) && !h.equals(Jobs.CHECKS)) {
                headers.put(h, v);
            }
        });
        OutputChecks.Verdict verdict = exchange.getVariable(OutputChecks.VERDICT, OutputChecks.Verdict.class);
        if (e instanceof OutputCheckFailedException && verdict != null) { // the last answer, to see what the model made
            String answer = verdict.answer() == null ? "" : verdict.answer();
            headers.put("x-llmbatch-last-answer", answer.length() > OutputChecks.MAX_ANSWER_IN_HEADER
                    ? answer.substring(0, OutputChecks.MAX_ANSWER_IN_HEADER) : answer);
            headers.put("x-llmbatch-check", verdict.getCheck());
            headers.put("x-llmbatch-repairs", verdict.getRepairs());
        }
        // what failed its output checks has its own dead-letter queue: its depth is the job's exact count of them
        String queue = e instanceof OutputCheckFailedException ? outputCheckQueueOf(job == null ? null : job.toString())
                : deadLetterQueueOf(job == null ? null : job.toString());
        String reason = publisher.deadLetter(queue, exchange, headers);
        LOG.warn("Task {} dead-lettered to {}: {}", exchange.getMessage().getHeader(MESSAGE_ID), queue, reason);
        if (e instanceof OutputCheckFailedException) {
            Meters.outputChecked(job == null ? defaultJob : job.toString(), "failed");
        }
    }

    /** Where the worker learns which OpenAI batches are cancelled; null: it runs every line. */
    public Worker cancelledBatches(io.llmbatch.jobs.CancelledBatches cancelled) {
        this.cancelledBatches = cancelled;
        return this;
    }

    /** Whether the task is a line of a cancelled OpenAI batch (not to be run: see {@link #skipCancelled}). */
    public boolean batchCancelled(Exchange exchange) {
        @SuppressWarnings("unchecked")
        Map<String, Object> jobHeaders = exchange.getProperty(TASK_JOB_HEADERS, Map.class);
        io.llmbatch.jobs.CancelledBatches cancelled = cancelledBatches;
        return cancelled != null && BatchResults.isBatchLine(jobHeaders) && cancelled.isCancelled(jobHeaders.get(Jobs.BATCH).toString());
    }

    /** A line of a cancelled batch: not run; its result says so (the batch's error file lists it as batch_cancelled). */
    public void skipCancelled(Exchange exchange) throws IOException {
        @SuppressWarnings("unchecked")
        Map<String, Object> jobHeaders = exchange.getProperty(TASK_JOB_HEADERS, Map.class);
        ObjectNode result = lineResult(exchange, jobHeaders);
        BatchResults.cancelled(result);
        publishLine(exchange, jobHeaders, result);
    }

    /**
     * The job's fields of the task in flight, as {@link #parseTask} read them (from its body, or from the headers of a
     * message queued by an older ingest node), or, when the task never got that far, from the message's headers.
     */
    private static Map<String, Object> jobFields(Exchange exchange) {
        @SuppressWarnings("unchecked")
        Map<String, Object> read = exchange.getProperty(TASK_JOB_HEADERS, Map.class);
        if (read != null) {
            return read;
        }
        Map<String, Object> h = new LinkedHashMap<>();
        for (String name : TaskEnvelope.HEADERS) {
            Object v = exchange.getMessage().getHeader(name);
            if (v != null) {
                h.put(name, v.toString());
            }
        }
        return h;
    }

    private ObjectNode lineResult(Exchange exchange, Map<String, Object> jobHeaders) {
        ObjectNode result = Tasks.JSON.createObjectNode();
        BatchResults.identify(result, jobHeaders);
        result.put("job", String.valueOf(jobHeaders.get(Jobs.JOB)));
        Object model = jobHeaders.get(Jobs.MODEL);
        result.put("model_name", model == null ? this.model : model.toString());
        result.put("request_hash", String.valueOf(jobHeaders.get(Jobs.REQUEST_HASH)));
        result.put("worker_host", host);
        result.put("finished_at", OffsetDateTime.now(ZoneOffset.UTC).toString());
        return result;
    }

    private void publishLine(Exchange exchange, Map<String, Object> jobHeaders, ObjectNode result) throws IOException {
        Map<String, Object> headers = new LinkedHashMap<>();
        headers.put(ConfirmingPublisher.SOURCE_HEADER, "worker:" + host);
        headers.put(Jobs.PID, jobHeaders.get(Jobs.PID));
        headers.put(Jobs.COLLECTION, jobHeaders.get(Jobs.COLLECTION));
        headers.put(Jobs.JOB, jobHeaders.get(Jobs.JOB));
        String id = exchange.getMessage().getHeader(MESSAGE_ID, String.class);
        publisher.publishOne(resultsQueue, new OutboundMessage(Tasks.JSON.writeValueAsBytes(result),
                id != null ? id : "batch-line-" + jobHeaders.get(Jobs.PID), headers, 0));
    }

    private volatile String[] promptVersion = { null, null };

    /** The version of this worker's own template and system prompt (as the ingest node computes a job's), cached per text. */
    private String localPromptVersion() {
        String systemText = system.text();
        String text = prompt.text() + "\u0000" + (systemText == null ? "" : systemText);
        String[] cached = promptVersion;
        if (!text.equals(cached[0])) {
            cached = new String[] { text, io.llmbatch.jobs.JobDefinition.sha256(text).substring(0, 12) };
            promptVersion = cached;
        }
        return cached[1];
    }

    /** The job of a task in flight (its job header, else the default job). */
    public String jobOf(Exchange exchange) {
        Object headers = exchange.getProperty(TASK_JOB_HEADERS);
        Object job = headers instanceof Map<?, ?> m ? m.get(Jobs.JOB) : null;
        return job != null ? job.toString() : defaultJob;
    }


    /** The seed's job (and tasks in its form) dead-letter to llmbatch.queue.tasks-dlq, any other job to its own. */
    public String deadLetterQueueOf(String job) {
        return job == null || job.equals(defaultJob) ? deadLetterQueue : deadLetterQueue + "." + job;
    }

    /** Every answer of the task failed its output checks, the repairs included: dead-lettered with the last answer. */
    public static class OutputCheckFailedException extends RuntimeException {
        public OutputCheckFailedException(String message) {
            super(message);
        }
    }

    /**
     * Where a job's tasks whose answers failed their output checks go: {@code llmbatch.queue.tasks-dlq} +
     * {@code .output-check.<job>} (a job's own dead-letter queue is {@code <tasks-dlq>.<job>}, one segment: no clash).
     */
    public String outputCheckQueueOf(String job) {
        return outputCheckQueue(deadLetterQueue, job == null ? defaultJob : job);
    }

    /** The output-check dead-letter queue of {@code job} under the tasks' dead-letter queue {@code tasksDeadLetterQueue}. */
    public static String outputCheckQueue(String tasksDeadLetterQueue, String job) {
        return tasksDeadLetterQueue + ".output-check." + job;
    }

    /** The task itself is wrong (not JSON, a field missing): no retry can help. */
    public static class PoisonTaskException extends RuntimeException {
        public PoisonTaskException(String message) {
            super(message);
        }
    }
}
