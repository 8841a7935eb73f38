package io.llmbatch.collector;

import io.llmbatch.ops.Meters;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Date;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import com.mongodb.ErrorCategory;
import com.mongodb.MongoBulkWriteException;
import com.mongodb.MongoException;
import com.mongodb.bulk.BulkWriteError;
import com.mongodb.client.MongoCollection;
import com.mongodb.client.model.BulkWriteOptions;
import com.mongodb.client.model.Filters;
import com.mongodb.client.model.IndexOptions;
import com.mongodb.client.model.Indexes;
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
    private final String defaultModel;
    private final ConfirmingPublisher publisher;
    private final java.util.concurrent.atomic.AtomicLong stored = new java.util.concurrent.atomic.AtomicLong();
    private final String deadLetterQueue;
    private final CamelContext camelContext;
    private volatile boolean indexed;

    public Collector(MongoCollection<Document> collection, String defaultModel, ConfirmingPublisher publisher,
                     String deadLetterQueue, CamelContext camelContext) {
        this.collection = collection;
        this.defaultModel = defaultModel;
        this.publisher = publisher;
        this.deadLetterQueue = deadLetterQueue;
        this.camelContext = camelContext;
    }

    /** One result waiting in a batch: its document and how to acknowledge it. */
    public record Pending(String pid, Document document, Channel channel, long deliveryTag) {
    }

    /** The seed's key: lowercase hex MD5 of the UTF-8 bytes of {@code company + model_name}. */
    public static String pid(String company, String modelName) {
        try {
            byte[] md5 = MessageDigest.getInstance("MD5").digest((company + modelName).getBytes(StandardCharsets.UTF_8));
            return HexFormat.of().formatHex(md5);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
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
        Object company = doc.get("company");
        if (!(company instanceof String name) || name.isBlank()) {
            throw new MalformedResultException("result has no 'company' (a non-empty string)");
        }
        Object model = doc.get("model_name");
        String modelName = model instanceof String m && !m.isBlank() ? m : defaultModel;
        doc.put("model_name", modelName);
        String pid = pid(name, modelName);
        doc.put("pid", pid);
        doc.remove("_id");
        doc.remove("created_at");
        doc.remove("updated_at");
        return new Pending(pid, doc, channel(exchange), deliveryTag(exchange));
    }

    /**
     * Writes a batch as one unordered bulk upsert keyed by {@code pid} and acknowledges its results afterwards.
     * While MongoDB fails the batch is retried with backoff and nothing is acknowledged, so the broker stops
     * delivering once the prefetch is used up: intake pauses until MongoDB is back. A document MongoDB refuses
     * for itself (not for being down) is dead-lettered with the refusal, so it cannot block the collector.
     */
    public int write(List<Pending> batch) {
        // the same company twice in one batch: keep the last (two upserts of one new pid in one bulk can collide)
        Map<String, Pending> byPid = new LinkedHashMap<>();
        for (Pending p : batch) {
            byPid.put(p.pid(), p);
        }
        List<Pending> toWrite = new ArrayList<>(byPid.values());
        long backoff = 500;
        while (!toWrite.isEmpty()) {
            try {
                ensureIndexes();
                collection.bulkWrite(upserts(toWrite), UNORDERED);
                toWrite = List.of();
            } catch (MongoBulkWriteException e) {
                // unordered: every operation without an error was applied
                List<Pending> again = new ArrayList<>();
                for (BulkWriteError error : e.getWriteErrors()) {
                    Pending p = toWrite.get(error.getIndex());
                    if (error.getCategory() == ErrorCategory.DUPLICATE_KEY) {
                        again.add(p); // two collectors upserting a new pid at once: the retry updates
                    } else {
                        refused(p, "MongoDB refused the document: " + error.getMessage());
                    }
                }
                toWrite = e.getWriteConcernError() != null ? toWrite : again;
            } catch (MongoException e) {
                if (!camelContext.isStarted() || camelContext.isStopping()) {
                    LOG.warn("Stopping with a batch of {} unwritten: they stay unacknowledged and return to the queue", batch.size());
                    throw e;
                }
                LOG.warn("MongoDB write of {} result(s) failed, retrying in {} ms (nothing acknowledged): {}", toWrite.size(),
                        backoff, e.getMessage());
                Meters.retried("mongodb");
                sleep(backoff);
                backoff = Math.min(backoff * 2, MAX_BACKOFF_MILLIS);
            } catch (RuntimeException e) {
                // the driver cannot even encode the bulk (e.g. a document over 16 MB): find the culprit(s) one by one
                List<Pending> again = new ArrayList<>();
                for (Pending p : toWrite) {
                    try {
                        collection.bulkWrite(upserts(List.of(p)), UNORDERED);
                    } catch (MongoException retry) {
                        again.add(p);
                    } catch (RuntimeException bad) {
                        refused(p, "cannot write the document to MongoDB: " + bad);
                    }
                }
                toWrite = again;
            }
        }
        for (Pending p : batch) {
            ack(p.channel(), p.deliveryTag());
        }
        Meters.stored(batch.size());
        stored.addAndGet(batch.size());
        LOG.debug("Stored {} result(s) ({} distinct)", batch.size(), byPid.size());
        return batch.size();
    }

    private static List<WriteModel<Document>> upserts(List<Pending> pendings) {
        Date now = new Date();
        List<WriteModel<Document>> upserts = new ArrayList<>(pendings.size());
        for (Pending p : pendings) {
            // one $set document (encoded directly) rather than a $set per field (converted one by one)
            Document set = new Document(p.document()).append("updated_at", now);
            Document update = new Document("$set", set).append("$setOnInsert", new Document("created_at", now));
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

    /** Unique index on pid, indexes on company and model_name; idempotent, retried until MongoDB answers. */
    public void ensureIndexes() {
        if (!indexed) {
            collection.createIndex(Indexes.ascending("pid"), new IndexOptions().unique(true).name("pid_unique"));
            collection.createIndex(Indexes.ascending("company"), new IndexOptions().name("company"));
            collection.createIndex(Indexes.ascending("model_name"), new IndexOptions().name("model_name"));
            indexed = true;
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
