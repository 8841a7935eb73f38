package io.llmbatch.support;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;
import java.util.Collection;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;

import com.mongodb.client.ListIndexesIterable;
import com.mongodb.client.MongoCollection;
import com.mongodb.client.model.WriteModel;
import org.bson.BsonDocument;
import org.bson.Document;
import org.bson.conversions.Bson;

/**
 * A {@link MongoCollection} that forwards to a real one (mongo-java-server) except where a test makes it answer as a
 * real MongoDB would in a condition mongo-java-server cannot produce: it ignores non-unique indexes (so it can list
 * the seed's {@code pid_1} only when told to), refuses nothing an index conflict would refuse, and has no write
 * concern. Those answers are the MongoDB driver's own exception types with the real server's codes, and the double
 * counts what was written, so a test can tell a duplicate write from a duplicate document.
 */
public final class MongoDouble {

    private final MongoCollection<Document> real;
    private volatile List<Document> listedIndexes;
    private volatile RuntimeException listingRefusal;
    private volatile Function<Bson, RuntimeException> onCreateIndex = keys -> null;
    private volatile Function<Integer, RuntimeException> onBulkWrite = attempt -> null;
    private final AtomicInteger bulkAttempts = new AtomicInteger();
    private final AtomicInteger calls = new AtomicInteger();
    private final AtomicInteger upserts = new AtomicInteger();
    private final List<String> createdIndexes = new java.util.concurrent.CopyOnWriteArrayList<>();

    public MongoDouble(MongoCollection<Document> real) {
        this.real = real;
    }

    /** listIndexes answers these (as a real MongoDB holding them would), not what mongo-java-server kept. */
    public MongoDouble listing(List<Document> indexes) {
        this.listedIndexes = List.copyOf(indexes);
        return this;
    }

    /** listIndexes throws this (e.g. Unauthorized for a user without listIndexes). */
    public MongoDouble listingFails(RuntimeException refusal) {
        this.listingRefusal = refusal;
        return this;
    }

    /** createIndex throws what this returns for the index keys (null: the real collection creates it). */
    public MongoDouble onCreateIndex(Function<Bson, RuntimeException> answer) {
        this.onCreateIndex = answer;
        return this;
    }

    /** bulkWrite throws what this returns for the n-th attempt, counted from 1 (null: the real collection writes). */
    public MongoDouble onBulkWrite(Function<Integer, RuntimeException> answer) {
        this.onBulkWrite = answer;
        return this;
    }

    /** Bulk writes tried, whatever their outcome. */
    public int bulkAttempts() {
        return bulkAttempts.get();
    }

    /** Calls of any method that talks to MongoDB (writes, index work), whatever their outcome. */
    public int calls() {
        return calls.get();
    }

    /** Upserts sent in bulk writes the real collection accepted: every write that cost MongoDB work. */
    public int upserts() {
        return upserts.get();
    }

    /** Keys of the indexes createIndex was called for (as JSON), refused or not. */
    public List<String> createIndexCalls() {
        return List.copyOf(createdIndexes);
    }

    /** An index document as listIndexes answers it. */
    public static Document index(String name, String field, boolean unique) {
        return index(name, new Document(field, 1), unique);
    }

    public static Document index(String name, Document key, boolean unique) {
        Document d = new Document("v", 2).append("key", key).append("name", name);
        return unique ? d.append("unique", true) : d;
    }

    /** The seed's collection, made by pymongo's create_index: _id_, pid_1, company_1, model_name_1, none unique. */
    public static List<Document> seedIndexes() {
        return List.of(index("_id_", "_id", false), index("pid_1", "pid", false), index("company_1", "company", false),
                index("model_name_1", "model_name", false));
    }

    @SuppressWarnings("unchecked")
    public MongoCollection<Document> collection() {
        return (MongoCollection<Document>) Proxy.newProxyInstance(MongoCollection.class.getClassLoader(),
                new Class<?>[] { MongoCollection.class }, (proxy, method, args) -> {
                    if (!method.getName().startsWith("get") && !method.getName().startsWith("with")) {
                        calls.incrementAndGet();
                    }
                    switch (method.getName()) {
                        case "listIndexes":
                            if (listingRefusal != null) {
                                throw listingRefusal;
                            }
                            if (listedIndexes != null && (args == null || args.length == 0)) {
                                return listed(listedIndexes);
                            }
                            break;
                        case "createIndex":
                            if (args != null && args.length >= 1 && args[0] instanceof Bson keys) {
                                createdIndexes.add(keys.toBsonDocument(BsonDocument.class, real.getCodecRegistry()).toJson());
                                RuntimeException refusal = onCreateIndex.apply(keys);
                                if (refusal != null) {
                                    throw refusal;
                                }
                            }
                            break;
                        case "bulkWrite":
                            RuntimeException failure = onBulkWrite.apply(bulkAttempts.incrementAndGet());
                            if (failure != null) {
                                throw failure;
                            }
                            Object result = invoke(method, args);
                            upserts.addAndGet(((List<? extends WriteModel<?>>) args[0]).size());
                            return result;
                        default:
                            break;
                    }
                    return invoke(method, args);
                });
    }

    private Object invoke(java.lang.reflect.Method method, Object[] args) throws Throwable {
        try {
            return method.invoke(real, args);
        } catch (InvocationTargetException e) {
            throw e.getCause();
        }
    }

    @SuppressWarnings("unchecked")
    private static ListIndexesIterable<Document> listed(List<Document> indexes) {
        return (ListIndexesIterable<Document>) Proxy.newProxyInstance(ListIndexesIterable.class.getClassLoader(),
                new Class<?>[] { ListIndexesIterable.class }, (proxy, method, args) -> switch (method.getName()) {
                    case "into" -> {
                        ((Collection<Document>) args[0]).addAll(indexes);
                        yield args[0];
                    }
                    case "first" -> indexes.isEmpty() ? null : indexes.get(0);
                    case "forEach" -> {
                        indexes.forEach((java.util.function.Consumer<Document>) args[0]);
                        yield null;
                    }
                    default -> throw new UnsupportedOperationException("MongoDouble listIndexes: " + method.getName());
                });
    }
}
