package io.llmbatch.collector;

import io.llmbatch.mongo.MongoErrors;
import io.llmbatch.mongo.WriteConcerns;
import io.llmbatch.ops.Meters;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Date;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import com.mongodb.ErrorCategory;
import com.mongodb.MongoBulkWriteException;
import com.mongodb.MongoException;
import com.mongodb.MongoWriteConcernException;
import com.mongodb.bulk.WriteConcernError;
import com.mongodb.bulk.BulkWriteError;
import com.mongodb.client.MongoCollection;
import com.mongodb.client.model.BulkWriteOptions;
import com.mongodb.client.model.Filters;
import com.mongodb.client.model.UpdateOneModel;
import com.mongodb.client.model.UpdateOptions;
import com.mongodb.client.model.WriteModel;
import com.rabbitmq.client.Channel;
import org.apache.camel.CamelContext;
import org.apache.camel.Exchange;
import org.apache.camel.component.springrabbit.SpringRabbitMQConstants;
import org.bson.Document;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.llmbatch.rabbit.ConfirmingPublisher;

/**
 * The steps of the collector route. Results are consumed with MANUAL acknowledgement: the Aggregator completes
 * each incoming exchange as soon as it joins a batch, so acknowledging there (AUTO) would lose the batch in a
 * crash. Here a result is acknowledged only after the bulk write that contains it succeeded; a crash before that
 * leaves it unacknowledged and the broker redelivers it, and the upsert by {@code pid} makes that harmless.
 */
public class Collector {

    private static final Logger LOG = LoggerFactory.getLogger(Collector.class);
    private static final long MAX_BACKOFF_MILLIS = 30_000;
    private static final UpdateOptions UPSERT = new UpdateOptions().upsert(true);
    private static final BulkWriteOptions UNORDERED = new BulkWriteOptions().ordered(false);

    private final MongoCollection<Document> collection;
    /** The collections of other jobs (results carrying x-llmbatch-collection), each with its indexes checked once. */
    private final java.util.function.Function<String, Target> targets;
    private final String defaultModel;
    private final ConfirmingPublisher publisher;
    private final java.util.concurrent.atomic.AtomicLong stored = new java.util.concurrent.atomic.AtomicLong();
    private final String deadLetterQueue;
    private final CamelContext camelContext;
    private volatile CollectionIndexes indexes;
    private volatile String writeProblem;

    /** Where a group of results goes: a collection and its indexes (whose lock keeps index work and writes apart). */
    public record Target(MongoCollection<Document> collection, CollectionIndexes indexes) {
    }

    public Collector(MongoCollection<Document> collection, String defaultModel, ConfirmingPublisher publisher,
                     String deadLetterQueue, CamelContext camelContext) {
        this(collection, null, defaultModel, publisher, deadLetterQueue, camelContext);
    }

    /** @param targets the collection (and its indexes) of another job's results, by name; null: only the default one */
    public Collector(MongoCollection<Document> collection, java.util.function.Function<String, Target> targets, String defaultModel,
                     ConfirmingPublisher publisher, String deadLetterQueue, CamelContext camelContext) {
        this.collection = collection;
        this.targets = targets;
        this.defaultModel = defaultModel;
        this.publisher = publisher;
        this.deadLetterQueue = deadLetterQueue;
        this.camelContext = camelContext;
    }

    /** The indexes' state joins {@link #problem()} (readiness). */
    public Collector reportingIndexes(CollectionIndexes indexes) {
        this.indexes = indexes;
        return this;
    }

    /**
     * One result waiting in a batch: its document, its collection (null: the configured one) and how to acknowledge it.
     */
    public record Pending(String pid, Document document, Channel channel, long deliveryTag, String collection) {

        public Pending(String pid, Document document, Channel channel, long deliveryTag) {
            this(pid, document, channel, deliveryTag, null);
        }
    }

    /** The seed's key: lowercase hex MD5 of the UTF-8 bytes of {@code company + model_name}. */
    public static String pid(String company, String modelName) {
        return io.llmbatch.jobs.Jobs.md5(company + modelName);
    }

    /** Parses a result into the document to store; a malformed one is refused (and dead-lettered by the route). */
    public Pending prepare(Exchange exchange) {
        byte[] body = exchange.getMessage().getBody(byte[].class);
        String json = body == null ? "" : new String(body, StandardCharsets.UTF_8).strip();
        if (!json.startsWith("{")) {
            throw new MalformedResultException(json.isEmpty() ? "result is empty"
                    : json.startsWith("[") ? "result must be a JSON object, got an array"
                    : "result is not valid JSON: expected an object, found '" + (json.length() > 40 ? json.substring(0, 40) + "..." : json) + "'");
        }
        Document doc;
        try {
            doc = Document.parse(json);
        } catch (RuntimeException e) {
            throw new MalformedResultException("result is not valid JSON: " + e.getMessage());
        }
        Object model = doc.get("model_name");
        String modelName = model instanceof String m && !m.isBlank() ? m : defaultModel;
        doc.put("model_name", modelName);
        // a result of a job rendered at ingest carries its key and collection; one in the seed's form has a company
        String pid = exchange.getMessage().getHeader(io.llmbatch.jobs.Jobs.PID, String.class);
        String target = exchange.getMessage().getHeader(io.llmbatch.jobs.Jobs.COLLECTION, String.class);
        if (pid == null) {
            Object company = doc.get("company");
            if (!(company instanceof String name) || name.isBlank()) {
                throw new MalformedResultException("result has no 'company' (a non-empty string)");
            }
            pid = pid(name, modelName);
        } else if (!pid.matches("[0-9a-f]{32}")) {
            throw new MalformedResultException("result's x-llmbatch-pid is not an md5: " + pid);
        }
        doc.put("pid", pid);
        doc.remove("_id");
        doc.remove("created_at");
        doc.remove("updated_at");
        if (target != null && (target.equals(collection.getNamespace().getCollectionName()) || targets == null)) {
            target = null;
        }
        return new Pending(pid, doc, channel(exchange), deliveryTag(exchange), target);
    }

    /**
     * Writes a batch as one unordered bulk upsert keyed by {@code pid} and acknowledges its results afterwards.
     * While MongoDB fails the batch is retried with backoff and nothing is acknowledged, so the broker stops
     * delivering once the prefetch is used up: what waits behind a failing write is bounded by the consumers'
     * prefetch. Before every attempt the results whose channel has closed (the broker's consumer timeout, a broker
     * restart) leave the batch: the broker redelivers them, so writing them here too would write them twice, and
     * their acknowledgement could not be sent anyway. A document MongoDB refuses for itself (not for being down) is
     * dead-lettered with the refusal, so it cannot block the collector. A write that is applied but not acknowledged
     * as {@code llmbatch.mongodb.write-concern} asks is not stored yet: it is retried, and reported as the reason
     * readiness is DOWN, like a refusal that retrying cannot end (no permission). Whatever escapes (the collector
     * stopping, an unexpected error) sends every result still held back to the queue at once.
     */
    public int write(List<Pending> batch) {
        Map<String, List<Pending>> byCollection = new LinkedHashMap<>();
        for (Pending p : batch) {
            byCollection.computeIfAbsent(p.collection() == null ? "" : p.collection(), k -> new ArrayList<>()).add(p);
        }
        if (byCollection.size() == 1 && byCollection.containsKey("")) {
            return write(new Target(collection, indexes), batch);
        }
        int written = 0;
        List<List<Pending>> groups = new ArrayList<>(byCollection.values());
        for (int g = 0; g < groups.size(); g++) {
            List<Pending> group = groups.get(g);
            String name = group.get(0).collection();
            boolean resolved = false;
            try {
                Target target = name == null ? new Target(collection, indexes) : target(name);
                resolved = true;
                written += write(target, group);
            } catch (RuntimeException | Error e) {
                // not written: back to the queue too (this group itself when its collection could not be had)
                for (List<Pending> rest : groups.subList(resolved ? g + 1 : g, groups.size())) {
                    Map<String, List<Pending>> left = new LinkedHashMap<>();
                    rest.forEach(p -> left.computeIfAbsent(p.pid(), k -> new ArrayList<>()).add(p));
                    nack(left);
                }
                throw e;
            }
        }
        return written;
    }

    /**
     * Another job's collection, its indexes checked at its first results: while MongoDB is unreachable this is retried
     * with backoff like a write, nothing acknowledged (thrown once the collector stops).
     */
    private Target target(String name) {
        long backoff = 500;
        while (true) {
            try {
                return targets.apply(name);
            } catch (MongoException e) {
                if (stopping()) {
                    throw e;
                }
                LOG.warn("Cannot check the MongoDB indexes of {} before its first results, retrying in {} ms (nothing "
                         + "acknowledged): {}", name, backoff, e.getMessage());
                Meters.retried("mongodb");
                sleep(backoff);
                backoff = Math.min(backoff * 2, MAX_BACKOFF_MILLIS);
            }
        }
    }

    /** Writes one collection's share of a batch (see {@link #write(List)}). */
    private int write(Target target, List<Pending> batch) {
        // per pid, every delivery carrying it (the same company twice in one batch: the last one is written, since
        // two upserts of one new pid in one bulk can collide, and all of them are acknowledged)
        Map<String, List<Pending>> byPid = new LinkedHashMap<>();
        for (Pending p : batch) {
            byPid.computeIfAbsent(p.pid(), k -> new ArrayList<>()).add(p);
        }
        java.util.Set<String> unwritten = new java.util.LinkedHashSet<>(byPid.keySet());
        int dropped = 0;
        boolean wrote = false;
        long backoff = 500;
        try {
            while (true) {
                dropped += dropClosed(byPid, unwritten);
                if (unwritten.isEmpty()) {
                    break;
                }
                List<Pending> toWrite = new ArrayList<>(unwritten.size());
                for (String pid : unwritten) {
                    List<Pending> deliveries = byPid.get(pid);
                    toWrite.add(deliveries.get(deliveries.size() - 1));
                }
                String failure;
                try {
                    bulkWrite(target, toWrite);
                    unwritten.clear();
                    wrote = true;
                    continue;
                } catch (MongoBulkWriteException e) {
                    // unordered: every operation without an error was applied
                    java.util.Set<String> again = new java.util.LinkedHashSet<>();
                    for (BulkWriteError error : e.getWriteErrors()) {
                        Pending p = toWrite.get(error.getIndex());
                        if (error.getCategory() == ErrorCategory.DUPLICATE_KEY) {
                            again.add(p.pid()); // two collectors upserting a new pid at once: the retry updates
                        } else {
                            refused(p, "MongoDB refused the document: " + error.getMessage());
                            unwritten.remove(p.pid());
                        }
                    }
                    WriteConcernError wce = e.getWriteConcernError();
                    if (wce == null) {
                        unwritten.retainAll(again);
                        continue; // only duplicate-key races left: retry those at once
                    }
                    failure = writeConcernFailure(wce);
                } catch (MongoWriteConcernException e) {
                    failure = writeConcernFailure(e.getWriteConcernError());
                } catch (MongoException e) {
                    if (stopping()) {
                        throw e;
                    }
                    String permanent = MongoErrors.permanent(e);
                    failure = permanent != null ? permanent : e.getMessage();
                    report(failure, permanent != null, false);
                } catch (RuntimeException e) {
                    if (stopping()) {
                        throw e; // stopping: the client may be closed already (IllegalStateException), no document's fault
                    }
                    // the driver cannot even encode the bulk (e.g. a document over 16 MB): find the culprit(s) one by one
                    for (Pending p : toWrite) {
                        try {
                            bulkWrite(target, List.of(p));
                            unwritten.remove(p.pid());
                        } catch (MongoException retry) {
                            // written with the others at the next attempt
                        } catch (RuntimeException bad) {
                            refused(p, "cannot write the document to MongoDB: " + bad);
                            unwritten.remove(p.pid());
                        }
                    }
                    continue;
                }
                if (stopping()) {
                    throw new IllegalStateException("stopping with " + unwritten.size() + " result(s) not stored: " + failure);
                }
                LOG.warn("MongoDB write of {} result(s) failed, retrying in {} ms (nothing acknowledged): {}", unwritten.size(),
                        backoff, failure);
                Meters.retried("mongodb");
                sleep(backoff);
                backoff = Math.min(backoff * 2, MAX_BACKOFF_MILLIS);
            }
        } catch (RuntimeException | Error e) {
            int requeued = nack(byPid);
            LOG.warn("{} result(s) of a batch not stored ({}): back to the queue now", requeued, e.toString());
            throw e;
        }
        if (wrote && writeProblem != null) {
            LOG.info("MongoDB takes writes again");
            writeProblem = null;
        }
        if (dropped > 0) {
            LOG.info("{} result(s) left their batch unwritten: their channel closed before they were stored (the connection to "
                     + "the broker was lost), the broker redelivers them", dropped);
        }
        int acknowledged = 0;
        for (List<Pending> deliveries : byPid.values()) {
            for (Pending p : deliveries) {
                ack(p.channel(), p.deliveryTag());
                acknowledged++;
            }
        }
        Meters.stored(acknowledged);
        stored.addAndGet(acknowledged);
        LOG.debug("Stored {} result(s) ({} distinct)", acknowledged, byPid.size());
        return acknowledged;
    }

    /** One unordered bulk upsert, while no index work of this process runs. */
    private static void bulkWrite(Target target, List<Pending> pendings) {
        CollectionIndexes i = target.indexes();
        java.util.concurrent.locks.Lock lock = i == null ? null : i.writes();
        if (lock != null) {
            lock.lock();
        }
        try {
            target.collection().bulkWrite(upserts(pendings), UNORDERED);
        } finally {
            if (lock != null) {
                lock.unlock();
            }
        }
    }

    /** Removes the deliveries whose channel has closed; a pid without deliveries is no longer written. */
    private static int dropClosed(Map<String, List<Pending>> byPid, java.util.Set<String> unwritten) {
        int dropped = 0;
        for (java.util.Iterator<Map.Entry<String, List<Pending>>> it = byPid.entrySet().iterator(); it.hasNext(); ) {
            Map.Entry<String, List<Pending>> e = it.next();
            int before = e.getValue().size();
            e.getValue().removeIf(p -> p.channel() != null && !p.channel().isOpen());
            dropped += before - e.getValue().size();
            if (e.getValue().isEmpty()) {
                it.remove();
                unwritten.remove(e.getKey());
            }
        }
        return dropped;
    }

    /** Applied on the primary but not acknowledged as asked: not durable yet, so not acknowledged to the broker. */
    private String writeConcernFailure(WriteConcernError error) {
        String failure = "write concern " + writeConcern() + " not satisfied: " + MongoErrors.describe(error);
        report(failure, MongoErrors.permanent(error), true);
        return failure;
    }

    /** A refusal or an unsatisfied write concern is the reason readiness is DOWN until a write goes through. */
    private void report(String failure, boolean permanent, boolean writeConcern) {
        if (!permanent && !writeConcern) {
            return; // MongoDB unreachable: the cluster state says so already
        }
        String problem = (writeConcern ? "" : "MongoDB refuses writes: ") + failure;
        if (permanent && !problem.equals(writeProblem)) {
            LOG.error("{}: nothing is acknowledged, results wait in the queue until this is fixed (readiness DOWN)", problem);
        }
        writeProblem = problem;
    }

    /** Sends every delivery still held back to its queue (requeue), skipping channels that closed (already back). */
    private static int nack(Map<String, List<Pending>> byPid) {
        int n = 0;
        for (List<Pending> deliveries : byPid.values()) {
            for (Pending p : deliveries) {
                if (p.channel() == null || p.deliveryTag() < 0 || !p.channel().isOpen()) {
                    continue;
                }
                try {
                    p.channel().basicNack(p.deliveryTag(), false, true);
                    n++;
                } catch (IOException | RuntimeException e) {
                    LOG.warn("Cannot requeue a result (it returns when its channel closes): {}", e.toString());
                }
            }
        }
        return n;
    }

    /**
     * Why MongoDB cannot take the collector's writes, or its indexes are not as they must be, when retrying cannot
     * end it by itself; null when all is well. Readiness is DOWN while this says something.
     */
    public String problem() {
        String w = writeProblem;
        String i = indexes == null ? null : indexes.problem();
        return w == null ? i : i == null ? w : w + "; " + i;
    }

    /** The write concern of the writes, as configured. */
    public String writeConcern() {
        return WriteConcerns.describe(collection.getWriteConcern());
    }

    private static List<WriteModel<Document>> upserts(List<Pending> pendings) {
        Date now = new Date();
        List<WriteModel<Document>> upserts = new ArrayList<>(pendings.size());
        for (Pending p : pendings) {
            // one $set document (encoded directly) rather than a $set per field (converted one by one)
            Document set = new Document(p.document()).append("updated_at", now);
            Document update = new Document("$set", set).append("$setOnInsert", new Document("created_at", now));
            if (!set.containsKey("checks")) { // an unchecked answer replaces a checked one: the job's check counts stay exact
                update.append("$unset", new Document("checks", ""));
            }
            upserts.add(new UpdateOneModel<>(Filters.eq("pid", p.pid()), update, UPSERT));
        }
        return upserts;
    }

    /** A document MongoDB will never take: to the results dead-letter queue (it is acknowledged with its batch). */
    private void refused(Pending p, String reason) {
        publisher.deadLetter(deadLetterQueue, p.document().toJson().getBytes(StandardCharsets.UTF_8), null, reason,
                "MongoDB write error", Map.of());
        LOG.warn("Result for {} dead-lettered to {}: {}", p.document().get("company"), deadLetterQueue, reason);
    }

    /** Publishes a malformed result, as received, to the results dead-letter queue, then acknowledges it. */
    public void deadLetter(Exchange exchange) {
        String reason = publisher.deadLetter(deadLetterQueue, exchange, Map.of());
        ack(channel(exchange), deliveryTag(exchange));
        LOG.warn("Result dead-lettered to {}: {}", deadLetterQueue, reason);
    }

    /** Results this collector wrote (and acknowledged) since it started. */
    public long stored() {
        return stored.get();
    }

    /** Documents in the collection, from its metadata (cheap); -1 while MongoDB cannot tell. */
    public long documents() {
        try {
            return collection.estimatedDocumentCount();
        } catch (RuntimeException e) {
            return -1;
        }
    }

    private static Channel channel(Exchange exchange) {
        return exchange.getProperty(SpringRabbitMQConstants.CHANNEL, Channel.class);
    }

    private static long deliveryTag(Exchange exchange) {
        Long tag = exchange.getMessage().getHeader(SpringRabbitMQConstants.DELIVERY_TAG, Long.class);
        return tag == null ? -1 : tag;
    }

    private static void ack(Channel channel, long tag) {
        if (channel == null || tag < 0) {
            return;
        }
        try {
            channel.basicAck(tag, false);
        } catch (IOException | RuntimeException e) {
            // the channel closed (broker restart): the broker redelivers, the upsert by pid absorbs it
            LOG.warn("Cannot acknowledge a stored result (it will be redelivered and upserted again): {}", e.toString());
        }
    }

    /** The collector is stopping (or not started): what fails now goes back to the queue instead of being retried. */
    private boolean stopping() {
        return !camelContext.isStarted() || camelContext.isStopping();
    }

    private static void sleep(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while waiting for MongoDB", e);
        }
    }

    /** A result the collector cannot store (not JSON, no company): dead-lettered, never retried. */
    public static class MalformedResultException extends RuntimeException {
        public MalformedResultException(String message) {
            super(message);
        }
    }
}
