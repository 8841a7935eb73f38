package io.llmbatch.jobs;

import java.util.ArrayList;
import java.util.Date;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;

import com.mongodb.client.MongoCollection;
import com.mongodb.client.MongoCursor;
import com.mongodb.client.MongoDatabase;
import com.mongodb.client.model.Accumulators;
import com.mongodb.client.model.Aggregates;
import com.mongodb.client.model.BulkWriteOptions;
import com.mongodb.client.model.Filters;
import com.mongodb.client.model.IndexOptions;
import com.mongodb.client.model.Indexes;
import com.mongodb.client.model.Projections;
import com.mongodb.client.model.UpdateOneModel;
import com.mongodb.client.model.UpdateOptions;
import com.mongodb.client.model.Updates;
import com.mongodb.client.model.WriteModel;
import org.bson.Document;
import org.bson.conversions.Bson;

/**
 * What MongoDB knows of each job, the source of its exact counts: the task ledger ({@code llmbatch_tasks}, one document
 * per job and key, written by the ingest node before it publishes: how often the task was submitted, how often skipped)
 * and the job's results (its collection, the documents of that job). Both survive any process's restart.
 *
 * <p>The ledger also decides what not to generate twice: a task whose result is already stored for the same job and key,
 * made from the same request (prompt, system prompt, model, params: its request hash), is skipped unless forced.
 */
public final class JobStore {

    public static final String LEDGER = "llmbatch_tasks";
    private static final UpdateOptions UPSERT = new UpdateOptions().upsert(true);
    private static final BulkWriteOptions UNORDERED = new BulkWriteOptions().ordered(false);
    /** pids per skip lookup query (see storedFromTheSameRequest) */
    private static final int LOOKUP_BLOCK = 100;
    /** skip lookup queries at once, over every request of this process (threads gone when idle) */
    private static final int LOOKUPS_IN_FLIGHT = 8;
    private static final ThreadPoolExecutor LOOKUPS = new ThreadPoolExecutor(LOOKUPS_IN_FLIGHT, LOOKUPS_IN_FLIGHT, 30,
            TimeUnit.SECONDS, new LinkedBlockingQueue<>(), r -> {
                Thread t = new Thread(r, "llmbatch-skip-lookup");
                t.setDaemon(true);
                return t;
            });

    static {
        LOOKUPS.allowCoreThreadTimeOut(true);
    }

    private final MongoDatabase database;
    private final MongoCollection<Document> ledger;
    private volatile boolean indexed;

    public JobStore(MongoDatabase database) {
        this.database = database;
        this.ledger = database.getCollection(LEDGER);
    }

    /** The collection a job's results go to. */
    public MongoCollection<Document> results(JobDefinition job) {
        return database.getCollection(job.collection());
    }

    /**
     * What to do with the tasks of one job about to be published: those to publish, and their entries in the job's
     * ledger (see {@link #enter}).
     */
    public record Admission(List<Jobs.Rendered> publish, List<WriteModel<Document>> entries) {
    }

    /**
     * Records the tasks of one job about to be published and returns those to publish: {@link #decide} then
     * {@link #enter}, so a crash after it at most counts a task that is then submitted again (the count is of distinct
     * tasks).
     */
    public List<Jobs.Rendered> admit(JobDefinition job, List<Jobs.Rendered> tasks, boolean force) {
        Admission a = decide(job, tasks, force);
        enter(a);
        return a.publish();
    }

    /**
     * Decides which tasks of one job to publish, writing nothing but the ledger's index (once per process): without
     * {@code force}, a task whose result is stored from the same request is left out (and entered as skipped).
     */
    public Admission decide(JobDefinition job, List<Jobs.Rendered> tasks, boolean force) {
        if (tasks.isEmpty()) {
            return new Admission(tasks, List.of());
        }
        ensureIndexes();
        Set<String> stored = force ? Set.of() : storedFromTheSameRequest(job, tasks);
        Date now = new Date();
        List<WriteModel<Document>> writes = new ArrayList<>(tasks.size());
        List<Jobs.Rendered> publish = new ArrayList<>(tasks.size());
        Set<String> seen = new HashSet<>();
        for (Jobs.Rendered t : tasks) {
            boolean skip = stored.contains(t.pid() + " " + t.requestHash());
            if (!skip) {
                publish.add(t);
            }
            if (!seen.add(t.pid() + (skip ? "s" : "p"))) {
                continue; // the same task twice in one batch counts once
            }
            Bson update = Updates.combine(Updates.setOnInsert("job", job.name()), Updates.setOnInsert("pid", t.pid()),
                    Updates.setOnInsert("first_submitted_at", now), Updates.set("last_submitted_at", now),
                    Updates.set("request_hash", t.requestHash()), Updates.set("prompt_version", t.promptVersion()),
                    Updates.inc(skip ? "skipped" : "submitted", 1));
            writes.add(new UpdateOneModel<>(Filters.eq("_id", job.name() + "/" + t.pid()), update, UPSERT));
        }
        return new Admission(publish, writes);
    }

    /** Writes an admission's entries to the job's ledger (one unordered bulk write). */
    public void enter(Admission admission) {
        if (!admission.entries().isEmpty()) {
            ledger.bulkWrite(admission.entries(), UNORDERED);
        }
    }

    /** "pid request_hash" of the tasks whose result is stored from exactly that request. */
    private Set<String> storedFromTheSameRequest(JobDefinition job, List<Jobs.Rendered> tasks) {
        List<String> pids = tasks.stream().map(Jobs.Rendered::pid).distinct().toList();
        // by pid alone, the job compared here: the unique pid index answers it (mongo-java-server scans the whole
        // collection for the same $in joined with the job). In blocks: mongo-java-server matches each indexed candidate
        // against the whole $in list, so one $in of 28,000 pids took 28 s, blocks of 100 take 0.4 s. The blocks are asked
        // LOOKUPS_IN_FLIGHT at a time: one after the other, 280 blocks cost 280 round trips, 5.6 s at a MongoDB 20 ms away
        List<List<String>> blocks = new ArrayList<>();
        for (int from = 0; from < pids.size(); from += LOOKUP_BLOCK) {
            blocks.add(pids.subList(from, Math.min(pids.size(), from + LOOKUP_BLOCK)));
        }
        if (blocks.size() == 1) {
            return lookup(job, blocks.get(0));
        }
        List<Future<Set<String>>> asked = new ArrayList<>(blocks.size());
        try {
            for (List<String> block : blocks) {
                asked.add(LOOKUPS.submit(() -> lookup(job, block)));
            }
            Set<String> stored = new HashSet<>();
            for (Future<Set<String>> f : asked) {
                stored.addAll(f.get());
            }
            return stored;
        } catch (ExecutionException e) {
            throw e.getCause() instanceof RuntimeException r ? r : new IllegalStateException(e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while looking up stored results", e);
        } finally {
            asked.forEach(f -> f.cancel(false)); // after a failure, the blocks not yet asked are not
        }
    }

    /** "pid request_hash" of one block of pids whose result is stored for the job. */
    private Set<String> lookup(JobDefinition job, List<String> pids) {
        Set<String> stored = new HashSet<>();
        try (MongoCursor<Document> c = results(job).find(Filters.in("pid", pids))
                .projection(Projections.include("pid", "request_hash", "job")).iterator()) {
            while (c.hasNext()) {
                Document d = c.next();
                if (d.get("request_hash") != null && job.name().equals(d.getString("job"))) {
                    stored.add(d.getString("pid") + " " + d.getString("request_hash"));
                }
            }
        }
        return stored;
    }

    /**
     * The exact counts of a job: submitted (distinct tasks), skipped (submissions), stored, of the stored the checked ones
     * whose first answer passed and those passed after a repair, tokens, GPU time, times.
     */
    public Map<String, Object> counts(JobDefinition job) {
        Map<String, Object> c = new LinkedHashMap<>();
        Document ledgerSums = ledger.aggregate(List.of(Aggregates.match(Filters.eq("job", job.name())),
                Aggregates.group(null, Accumulators.sum("tasks", 1), Accumulators.sum("skipped", "$skipped"),
                        Accumulators.min("started", "$first_submitted_at"), Accumulators.max("last", "$last_submitted_at"))))
                .first();
        Document resultSums = results(job).aggregate(List.of(Aggregates.match(Filters.eq("job", job.name())),
                Aggregates.group(null, Accumulators.sum("stored", 1), Accumulators.sum("prompt_tokens", "$prompt_tokens"),
                        Accumulators.sum("completion_tokens", "$completion_tokens"), Accumulators.sum("gpu_seconds", "$gpu_seconds"),
                        Accumulators.max("last", "$updated_at"),
                        // output checks: a result's checks.repairs says whether its first answer passed or a repaired one
                        Accumulators.sum("passed", when(new Document("$eq", List.of("$checks.repairs", 0)))),
                        Accumulators.sum("repaired", when(new Document("$gt", List.of("$checks.repairs", 0))))))).first();
        c.put("submitted", ledgerSums == null ? 0L : number(ledgerSums.get("tasks")));
        c.put("skipped", ledgerSums == null ? 0L : number(ledgerSums.get("skipped")));
        c.put("stored", resultSums == null ? 0L : number(resultSums.get("stored")));
        c.put("prompt_tokens", resultSums == null ? 0L : number(resultSums.get("prompt_tokens")));
        c.put("completion_tokens", resultSums == null ? 0L : number(resultSums.get("completion_tokens")));
        c.put("gpu_seconds", resultSums == null ? 0.0 : resultSums.get("gpu_seconds") instanceof Number n ? n.doubleValue() : 0.0);
        c.put("checks_passed", resultSums == null ? 0L : number(resultSums.get("passed")));
        c.put("checks_repaired", resultSums == null ? 0L : number(resultSums.get("repaired")));
        c.put("started_at", ledgerSums == null ? null : ledgerSums.get("started"));
        c.put("last_submitted_at", ledgerSums == null ? null : ledgerSums.get("last"));
        c.put("last_stored_at", resultSums == null ? null : resultSums.get("last"));
        return c;
    }

    /** Every stored result of a job, oldest first (by the order MongoDB holds them), without MongoDB's _id. */
    public MongoCursor<Document> stored(JobDefinition job, int batchSize) {
        return results(job).find(Filters.eq("job", job.name())).projection(Projections.exclude("_id")).batchSize(batchSize)
                .noCursorTimeout(false).iterator();
    }

    private void ensureIndexes() {
        if (!indexed) {
            ledger.createIndex(Indexes.ascending("job"), new IndexOptions().background(true));
            indexed = true;
        }
    }

    /** 1 for a document the condition holds for, else 0 (for a $sum). */
    private static Document when(Document condition) {
        return new Document("$cond", List.of(condition, 1, 0));
    }

    private static long number(Object o) {
        return o instanceof Number n ? n.longValue() : 0L;
    }
}
