package io.llmbatch.jobs;

import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import io.llmbatch.ingest.Tasks;
import io.llmbatch.rabbit.ConfirmingPublisher;
import io.llmbatch.rabbit.OutboundMessage;

/**
 * What the ingest paths (HTTP, inbox, re-drive) make of a task for the task queue: its job (its {@code job} field, the
 * job the path names, or the default job), the fields that job requires, the prompt rendered into the message's job
 * headers, and whether it must be sent at all: a task whose result is stored from the same request is skipped (unless
 * forced, by the request, the file or the job), and every task is entered in the job's ledger, so its counts are exact.
 */
public final class TaskRenderer {

    private final Jobs jobs;
    private final JobStore store;
    private final ConfirmingPublisher publisher;

    /** @param store null: no MongoDB on this ingest node (nothing skipped, no counts) */
    public TaskRenderer(Jobs jobs, JobStore store, ConfirmingPublisher publisher) {
        this.jobs = jobs;
        this.store = store;
        this.publisher = publisher;
    }

    public Jobs jobs() {
        return jobs;
    }

    /** A task made ready: its message (with job headers when rendered), or why it cannot go. */
    public record Prepared(OutboundMessage message, Jobs.Rendered rendered, String problem) {
    }

    /**
     * Checks and renders one task.
     *
     * @param named     the job the path names (POST /api/jobs/{name}/tasks, inbox/{name}/), or null
     * @param schemaFree the seed's /send_workq_message/: a task its job cannot render is published as it came, as the
     *                   seed's agent did (the worker then dead-letters it with the reason)
     */
    public Prepared prepare(JsonNode task, String named, String source, long position, boolean schemaFree) {
        if (!task.isObject()) {
            return new Prepared(null, null, "expected a JSON object, got " + Tasks.typeOf(task));
        }
        JobDefinition job;
        try {
            job = jobs.jobOf(task, named);
        } catch (Jobs.UnknownJobException e) {
            return new Prepared(null, null, e.getMessage());
        }
        String problem = Tasks.problem(task, job.requiredFields());
        Jobs.Rendered rendered = null;
        if (problem == null) {
            try {
                rendered = jobs.render(job, (ObjectNode) task);
            } catch (PromptTemplate.MissingFieldException | PromptTemplate.PromptUnavailableException e) {
                problem = e.getMessage();
            }
        }
        if (problem != null && schemaFree && !task.hasNonNull("job")) {
            problem = Tasks.problem(task, List.of()); // only what any message must be
            rendered = null;
        }
        if (problem != null) {
            return new Prepared(null, null, problem);
        }
        OutboundMessage m = Tasks.toMessage((ObjectNode) task, source, position);
        if (rendered != null) {
            Map<String, Object> headers = new LinkedHashMap<>(m.headers());
            headers.putAll(rendered.headers());
            // the job's fields go into the body as the message is sent (TaskEnvelope.wrap): a request of 28,000 tasks
            // holds each rendered request once, not a second time in its body
            m = new OutboundMessage(m.body(), m.messageId(), headers, m.position());
        }
        String refusal = Tasks.refusal(publisher, m, task);
        return refusal != null ? new Prepared(null, null, refusal) : new Prepared(m, rendered, null);
    }

    /** The prepared tasks to publish, in the order they came, and the ledger entries of all (see {@link #enter}). */
    public record Admitted(List<Prepared> publish, List<JobStore.Admission> admissions) {
    }

    /**
     * The prepared tasks that must be published: a task of a job whose result is stored from the same request is left
     * out unless {@code force} (or the job's {@code force: true}); every rendered task enters its job's ledger first.
     */
    public List<Prepared> admit(List<Prepared> tasks, boolean force) {
        Admitted admitted = decide(tasks, force);
        enter(admitted);
        return admitted.publish();
    }

    /**
     * As {@link #admit} but without writing the ledger: the caller enters it with {@link #enter}, while it publishes
     * (HTTP ingest).
     */
    public Admitted decide(List<Prepared> tasks, boolean force) {
        if (store == null) {
            return new Admitted(tasks, List.of());
        }
        Map<String, List<Prepared>> byJob = new LinkedHashMap<>();
        List<Prepared> publish = new ArrayList<>(tasks.size());
        for (Prepared p : tasks) {
            if (p.rendered() == null) {
                publish.add(p); // the seed's form, not rendered here: published as it came
            } else {
                byJob.computeIfAbsent(p.rendered().job().name(), k -> new ArrayList<>()).add(p);
            }
        }
        List<JobStore.Admission> admissions = new ArrayList<>(byJob.size());
        for (List<Prepared> ofJob : byJob.values()) {
            JobDefinition job = ofJob.get(0).rendered().job();
            JobStore.Admission admission = store.decide(job, ofJob.stream().map(Prepared::rendered).toList(), force || job.force());
            admissions.add(admission);
            Set<Jobs.Rendered> keep = Collections.newSetFromMap(new IdentityHashMap<>());
            keep.addAll(admission.publish());
            for (Prepared p : ofJob) {
                if (keep.contains(p.rendered())) {
                    publish.add(p);
                }
            }
        }
        if (publish.size() > 1 && !byJob.isEmpty()) {
            publish.sort(Comparator.comparingLong(p -> p.message().position())); // the order they came in
        }
        return new Admitted(publish, admissions);
    }

    /** Enters the decided tasks in their jobs' ledgers. */
    public void enter(Admitted admitted) {
        for (JobStore.Admission a : admitted.admissions()) {
            store.enter(a);
        }
    }
}
