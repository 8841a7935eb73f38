package io.llmbatch.collector;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.locks.Lock;
import java.util.concurrent.locks.ReentrantReadWriteLock;

import com.mongodb.MongoException;
import com.mongodb.client.MongoCollection;
import com.mongodb.client.model.IndexOptions;
import com.mongodb.client.model.Indexes;
import org.bson.Document;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.llmbatch.mongo.MongoErrors;

/**
 * The collection's indexes: a unique one on {@code pid}, plain ones on {@code company} and {@code model_name}, as the
 * seed's collector made them, and one on {@code job}. Existing indexes are matched by their key, whatever their name (the seed's pymongo
 * {@code create_index} named them {@code pid_1}, {@code company_1}, {@code model_name_1}; MongoDB refuses the same
 * key again under another name, codes 85/86). An existing unique pid index is used as it is; an existing
 * non-unique one is adopted with a warning, never blocked on. Missing ones are created with MongoDB's default names.
 * A refusal (no permission, a conflict, duplicates that stop the unique index) is kept as {@link #problem()} for
 * readiness and logged once as an ERROR; an unreachable MongoDB propagates, for the caller to try again later.
 */
public final class CollectionIndexes {

    private static final Logger LOG = LoggerFactory.getLogger(CollectionIndexes.class);
    /** pid (unique) and the seed's two, plus job: a job's counts and export select by it. */
    static final List<String> FIELDS = List.of("pid", "company", "model_name", "job");

    private final MongoCollection<Document> collection;
    private final String where;
    /** Index work excludes this process's writes (they share it): see {@link #writes()}. */
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    private volatile String problem;
    private volatile String pidIndex = "not checked yet";
    private volatile Boolean pidUnique;
    private String warned;

    public CollectionIndexes(MongoCollection<Document> collection) {
        this.collection = collection;
        this.where = collection.getNamespace().getFullName();
    }

    /**
     * Lists the indexes, creates the missing ones. Returns normally once MongoDB answered, also when it refused
     * (see {@link #problem()}); throws when MongoDB could not be reached.
     */
    public void ensure() {
        lock.writeLock().lock();
        try {
            doEnsure();
        } finally {
            lock.writeLock().unlock();
        }
    }

    /**
     * Held by each bulk write of this process while it runs: writes go on side by side, and wait while the indexes are
     * checked or built. A unique index built under concurrent upserts can fail on a duplicate that slipped in meanwhile,
     * and mongo-java-server (the embedded default, the tests) corrupts its index when one is built under writes.
     */
    public Lock writes() {
        return lock.readLock();
    }

    private void doEnsure() {
        List<Document> existing;
        try {
            existing = collection.listIndexes().into(new ArrayList<>());
        } catch (MongoException e) {
            String reason = MongoErrors.permanent(e);
            if (reason == null) {
                throw e;
            }
            refused("cannot list the indexes of " + where + ": " + reason);
            return;
        }
        List<String> problems = new ArrayList<>();
        List<String> created = new ArrayList<>();
        for (String field : FIELDS) {
            Document found = byKey(existing, field);
            boolean pid = field.equals("pid");
            if (found != null) {
                if (pid) {
                    adopt(found);
                }
                continue;
            }
            try {
                collection.createIndex(Indexes.ascending(field), new IndexOptions().unique(pid));
                created.add(field + (pid ? " (unique)" : ""));
                if (pid) {
                    pidUnique = true;
                    pidIndex = "pid_1 (unique, created)";
                }
            } catch (MongoException e) {
                String reason = MongoErrors.permanent(e);
                if (reason == null) {
                    throw e;
                }
                if (pid) {
                    pidUnique = false;
                    pidIndex = "missing: " + reason;
                }
                problems.add("cannot create the index on " + field + ": " + reason
                             + (pid && reason.startsWith("DuplicateKey") ? " (the collection already holds several documents for one pid)" : ""));
            }
        }
        if (!created.isEmpty()) {
            LOG.info("MongoDB indexes created on {}: {}", where, String.join(", ", created));
        }
        if (problems.isEmpty()) {
            if (problem != null) {
                LOG.info("MongoDB indexes of {} are fine again", where);
            }
            problem = null;
            warned = null;
        } else {
            refused(String.join("; ", problems) + ". Results are still stored"
                    + (Boolean.TRUE.equals(pidUnique) ? "" : ", but without a unique pid index two collectors (or a redelivery "
                                                              + "racing an upsert) can store two documents for one pid"));
        }
    }

    /** Why the indexes are not as they should be and cannot become so by retrying; null when they are fine. */
    public String problem() {
        return problem;
    }

    /** The pid index in use, for the readiness details. */
    public String pidIndex() {
        return pidIndex;
    }

    /** Whether a unique pid index is known to exist (null: not checked yet). */
    public Boolean pidUnique() {
        return pidUnique;
    }

    public Map<String, Object> details() {
        Map<String, Object> d = new LinkedHashMap<>();
        d.put("pid index", pidIndex);
        return d;
    }

    private void adopt(Document index) {
        String name = index.getString("name");
        boolean unique = index.getBoolean("unique", false);
        pidUnique = unique;
        if (unique) {
            pidIndex = name + " (unique)";
            return;
        }
        pidIndex = name + " (NOT unique: adopted, see the README to migrate)";
        if (!Objects.equals(warned, name)) {
            warned = name;
            LOG.warn("MongoDB index {} on {}.pid is not unique (the seed's create_index('pid')): using it as it is. The cost: two "
                     + "collectors, or a redelivered result racing its first upsert, can store two documents for one pid. "
                     + "To migrate, on MongoDB 6.0+: db.getSiblingDB('{}').runCommand({collMod: '{}', index: {keyPattern: {pid: 1}, "
                     + "prepareUnique: true}}), then the same with unique: true instead of prepareUnique (README: The collector)",
                    name, where, collection.getNamespace().getDatabaseName(), collection.getNamespace().getCollectionName());
        }
    }

    private void refused(String reason) {
        if (!reason.equals(problem)) {
            LOG.error("MongoDB {}: {}. Readiness is DOWN until this is fixed (checked again at every reconnect and start)", where, reason);
        }
        problem = reason;
    }

    /** The index whose key is exactly {@code field}, ascending or descending (a hashed or compound one is not it). */
    static Document byKey(List<Document> indexes, String field) {
        for (Document index : indexes) {
            Object key = index.get("key");
            if (key instanceof Document k && k.size() == 1 && k.get(field) instanceof Number) {
                return index;
            }
        }
        return null;
    }
}
