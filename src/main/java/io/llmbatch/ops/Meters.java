package io.llmbatch.ops;

import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.DistributionSummary;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Metrics;
import io.micrometer.core.instrument.Timer;

/**
 * llm-batch's own meters, next to Camel's route metrics on {@code /observe/metrics}. They live in Micrometer's
 * global registry, to which each running context adds its Prometheus registry ({@link #publishTo}), so the beans
 * count without being handed a registry. Labels stay few: backends, queues, exception class names.
 */
public final class Meters {

    private static final MeterRegistry GLOBAL = Metrics.globalRegistry;

    private Meters() {
    }

    /** Makes every llm-batch meter visible in {@code registry}; returns the undo for the context's stop. */
    public static Runnable publishTo(MeterRegistry registry) {
        Metrics.addRegistry(registry);
        return () -> Metrics.removeRegistry(registry);
    }

    /** Tasks confirmed by the broker, by source ({@code http}, {@code file}). */
    public static void ingested(String source, long tasks) {
        Counter.builder("llmbatch.tasks.ingested").description("Tasks published and confirmed by the broker")
                .tag("source", source).register(GLOBAL).increment(tasks);
    }

    /** A bulk upsert that succeeded: the results it stored and the batch size. */
    public static void stored(int results) {
        Counter.builder("llmbatch.results.stored").description("Results written to MongoDB").register(GLOBAL).increment(results);
        DistributionSummary.builder("llmbatch.collector.batch.size").description("Results per MongoDB bulk upsert")
                .register(GLOBAL).record(results);
    }

    /** A message sent to a dead-letter queue; {@code exception} is the class name of the cause. */
    public static void deadLettered(String queue, String exception) {
        String reason = exception == null ? "unknown" : exception.substring(exception.lastIndexOf('.') + 1);
        Counter.builder("llmbatch.dead.lettered").description("Messages sent to a dead-letter queue, by the exception that sent them")
                .tag("queue", queue).tag("reason", reason).register(GLOBAL).increment();
    }

    /** Something tried again: {@code llm} (another attempt), {@code mongodb} (a bulk write), {@code requeue} (a task). */
    public static void retried(String what) {
        Counter.builder("llmbatch.retries").description("Attempts repeated after a failure").tag("kind", what)
                .register(GLOBAL).increment();
    }

    /** One LLM call and how it ended ({@code ok}, {@code error}, {@code timeout}, {@code refused}). */
    public static void llmCall(String backend, String outcome, long nanos) {
        Timer.builder("llmbatch.llm.latency").description("LLM call duration per backend").tag("backend", backend)
                .tag("outcome", outcome).publishPercentileHistogram().register(GLOBAL).record(nanos, TimeUnit.NANOSECONDS);
    }

    /** Tokens reported by an OpenAI-compatible backend ({@code prompt}, {@code completion}). */
    public static void tokens(String backend, String kind, Integer tokens) {
        if (tokens != null) {
            Counter.builder("llmbatch.llm.tokens").description("Tokens reported by the LLM backend").tag("backend", backend)
                    .tag("kind", kind).register(GLOBAL).increment(tokens);
        }
    }

    /**
     * A checked task's outcome, by job: {@code passed} (its first answer), {@code repaired} (an answer after a repair
     * request), {@code failed} (dead-lettered, {@code output-check: <check>}).
     */
    public static void outputChecked(String job, String outcome) {
        Counter.builder("llmbatch.output.checks").description("Tasks whose answers were checked, by job and outcome")
                .tag("job", job).tag("outcome", outcome).register(GLOBAL).increment();
    }

    /** One answer that failed a check (each repaired or dead-lettered task has one or more). */
    public static void outputCheckFailed(String job, String check) {
        Counter.builder("llmbatch.output.check.failures").description("Answers that failed an output check, by job and check")
                .tag("job", job).tag("check", check).register(GLOBAL).increment();
    }

    /** Requests in flight on a backend, read when scraped. */
    public static void inFlight(String backend, Supplier<Number> requests) {
        Gauge.builder("llmbatch.llm.in.flight", requests).description("LLM requests in flight per backend")
                .tag("backend", backend).strongReference(true).register(GLOBAL);
    }
}
