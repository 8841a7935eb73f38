package io.llmbatch.worker;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.camel.Exchange;

import io.llmbatch.jobs.JobChecks;
import io.llmbatch.jobs.Jobs;
import io.llmbatch.llm.Completion;
import io.llmbatch.llm.LlmBackends;
import io.llmbatch.ops.Meters;

/**
 * The leaves of the worker's check-and-repair loop ({@code routes/worker.camel.yaml}): {@link #check} judges one answer
 * against the checks its task carries ({@link Jobs#CHECKS}) and returns the {@link Verdict} the route loops on;
 * {@link #repair} adds the failed answer and the repair prompt to the request for the next call. A task without
 * checks (a job without {@code checks:}, a task in the seed's form from another producer) always passes.
 */
public class OutputChecks {

    /**
     * The exchange variable the routes decide on: {@code passed}, {@code repair} or {@code failed} (a plain string, so
     * the route's simple conditions compare it without calling a bean, which costs Camel a copy of the exchange).
     */
    public static final String STATE = "outputCheck";
    /** The exchange variable holding the last {@link Verdict}, the details ({@code ${variable.outputCheckVerdict.reason}}). */
    public static final String VERDICT = "outputCheckVerdict";
    /**
     * The longest answer kept in a dead letter's {@code x-llmbatch-last-answer} header, in characters (at most 24 KB of
     * UTF-8): every header travels in one frame (128 KiB by default, with the rendered request beside it).
     */
    static final int MAX_ANSWER_IN_HEADER = 8_000;

    /** What the checks said of the last answer, and what the route does next. */
    public static final class Verdict {
        private final boolean checked;
        private final JobChecks.Failure failure;
        private final int repairs;
        private final int maxRepairs;
        private final String answer;
        private final List<String> failedChecks;
        private final double seconds;

        Verdict(boolean checked, JobChecks.Failure failure, int repairs, int maxRepairs, String answer, List<String> failedChecks,
                double seconds) {
            this.checked = checked;
            this.failure = failure;
            this.repairs = repairs;
            this.maxRepairs = maxRepairs;
            this.answer = answer;
            this.failedChecks = List.copyOf(failedChecks);
            this.seconds = seconds;
        }

        /** Whether the task had checks at all. */
        public boolean isChecked() {
            return checked;
        }

        /**
         * What the route does next, the {@link #STATE} variable: {@code passed}; {@code repair}, the last answer failed
         * and may be asked again; {@code failed}, no repair is left and the task is dead-lettered.
         */
        public String state() {
            return failure == null ? "passed" : repairs < maxRepairs ? "repair" : "failed";
        }

        /** The failed check's name (min_chars, max_chars, json, json_schema, pattern, finish_reason), or null. */
        public String getCheck() {
            return failure == null ? null : failure.check();
        }

        /** The dead-letter reason: {@code output-check: <check> (<what is wrong>; <n> repairs)}. */
        public String getReason() {
            return failure == null ? null : "output-check: " + failure.check() + " (" + failure.message() + "; after " + repairs
                                             + " repair" + (repairs == 1 ? "" : "s") + ")";
        }

        /** Repair requests made so far. */
        public int getRepairs() {
            return repairs;
        }

        public JobChecks.Failure failure() {
            return failure;
        }

        public String answer() {
            return answer;
        }

        /** The checks each repaired answer failed, in order. */
        public List<String> failedChecks() {
            return failedChecks;
        }

        /** Seconds of every LLM call of the task (the repairs cost GPU time too). */
        public double seconds() {
            return seconds;
        }
    }

    /** Judges the completion in the body against the task's checks: the verdict in the variables {@link #STATE} and {@link #VERDICT}. */
    public void check(Completion completion, Exchange exchange) {
        Verdict v = judge(completion, exchange);
        exchange.setVariable(VERDICT, v);
        exchange.setVariable(STATE, v.state());
    }

    private Verdict judge(Completion completion, Exchange exchange) {
        Verdict before = exchange.getVariable(VERDICT, Verdict.class);
        int repairs = before == null ? 0 : before.repairs;
        double seconds = (before == null ? 0 : before.seconds) + completion.seconds();
        List<String> failed = before == null ? List.of() : before.failedChecks;
        JobChecks checks = checksOf(exchange);
        if (checks == null) {
            return new Verdict(false, null, 0, 0, completion.text(), List.of(), seconds);
        }
        JobChecks.Failure failure = checks.evaluate(completion.text(), completion.finishReason());
        if (failure != null) {
            Meters.outputCheckFailed(jobOf(exchange), failure.check());
            List<String> all = new ArrayList<>(failed);
            all.add(failure.check());
            failed = all;
        }
        return new Verdict(true, failure, repairs, checks.maxRepairs(), completion.text(), failed, seconds);
    }

    /**
     * The request for the next call: the one before with the failed answer and the repair prompt appended as
     * {@code repairs: [{answer, ask}, ...]}, which the request routes turn into an assistant and a user message
     * (OpenAI-compatible servers) or into api.py's history and prompt.
     */
    public ObjectNode repair(Exchange exchange) {
        Verdict v = exchange.getVariable(VERDICT, Verdict.class);
        JobChecks checks = checksOf(exchange);
        ObjectNode request = exchange.getVariable(LlmBackends.REQUEST, ObjectNode.class).deepCopy();
        request.withArray("repairs").addObject().put("answer", v.answer()).put("ask", checks.repairPrompt(v.failure(), v.answer()));
        exchange.setVariable(VERDICT, new Verdict(true, v.failure(), v.repairs + 1, v.maxRepairs, v.answer(), v.failedChecks, v.seconds));
        exchange.setVariable(LlmBackends.REQUEST, request);
        return request;
    }

    private static JobChecks checksOf(Exchange exchange) {
        @SuppressWarnings("unchecked")
        Map<String, Object> headers = exchange.getProperty(Worker.TASK_JOB_HEADERS, Map.class);
        Object header = headers == null ? null : headers.get(Jobs.CHECKS);
        if (header == null) {
            return null;
        }
        // the request (its response_format holds the schema when the header names it)
        JsonNode request = exchange.getVariable(LlmBackends.REQUEST, JsonNode.class);
        try {
            return JobChecks.fromHeader(header.toString(), request);
        } catch (IllegalArgumentException e) {
            throw new Worker.PoisonTaskException("the task's output checks cannot be read: " + e.getMessage());
        }
    }

    private static String jobOf(Exchange exchange) {
        @SuppressWarnings("unchecked")
        Map<String, Object> headers = exchange.getProperty(Worker.TASK_JOB_HEADERS, Map.class);
        Object job = headers == null ? null : headers.get(Jobs.JOB);
        return job == null ? "unknown" : job.toString();
    }
}
