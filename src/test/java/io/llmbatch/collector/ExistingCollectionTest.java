package io.llmbatch.collector;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import com.mongodb.MongoBulkWriteException;
import com.mongodb.MongoCommandException;
import com.mongodb.ServerAddress;
import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import com.mongodb.client.MongoCollection;
import com.mongodb.client.model.IndexOptions;
import com.mongodb.client.model.Indexes;
import com.mongodb.bulk.BulkWriteResult;
import com.mongodb.bulk.WriteConcernError;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.GetResponse;
import org.apache.camel.CamelContextAware;
import org.apache.camel.health.HealthCheck;
import org.apache.camel.impl.DefaultCamelContext;
import org.bson.BsonDocument;
import org.bson.Document;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.ops.HealthChecks;
import io.llmbatch.support.Broker;
import io.llmbatch.support.Mongo;
import io.llmbatch.support.MongoDouble;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

/**
 * The collector on a collection that already exists, as the seed left it, and on a MongoDB that refuses for good
 * (an index conflict, no permission, duplicates that stop a unique index). mongo-java-server ignores non-unique
 * indexes and never refuses an index, so {@link MongoDouble} answers listIndexes and createIndex as a real MongoDB
 * would, with the driver's own exception types and the server's error codes; documents are stored for real.
 */
@ExtendWith(RabbitMQRequired.class)
class ExistingCollectionTest {

    static final int MONGO_PORT = 20222;
    static final String RESULTS = "t11c_existing_results";

    Broker broker;
    MongoClient client;
    MongoCollection<Document> docs;
    DefaultCamelContext camel;
    Channel channel;

    @BeforeEach
    void setUp() throws Exception {
        Mongo.reset(MONGO_PORT);
        broker = new Broker().purge(RESULTS);
        client = MongoClients.create("mongodb://127.0.0.1:" + MONGO_PORT + "/?serverSelectionTimeoutMS=1000");
        docs = client.getDatabase("llm").getCollection("company_intro");
        camel = new DefaultCamelContext();
        camel.start();
        channel = broker.channel().getConnection().createChannel();
    }

    @AfterEach
    void tearDown() throws Exception {
        if (channel.isOpen()) {
            channel.close();
        }
        camel.stop();
        client.close();
        broker.reset(RESULTS);
        broker.close();
    }

    /** What a real MongoDB answers to createIndex({pid: 1}, {name: "pid_unique", unique: true}) next to the seed's pid_1. */
    static MongoCommandException conflict(int code, String codeName, String message) {
        return new MongoCommandException(BsonDocument.parse("{ok: 0, code: " + code + ", codeName: '" + codeName + "', errmsg: '"
                                                            + message + "'}"), new ServerAddress());
    }

    List<Collector.Pending> held(int n) throws Exception {
        List<byte[]> bodies = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            bodies.add(("{\"company\": \"旧库公司" + i + "\", \"intro\": \"x\"}").getBytes(StandardCharsets.UTF_8));
        }
        broker.publishAll(RESULTS, bodies);
        List<Collector.Pending> pendings = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            GetResponse r;
            while ((r = channel.basicGet(RESULTS, false)) == null) {
                Thread.sleep(20);
            }
            Document doc = Document.parse(new String(r.getBody(), StandardCharsets.UTF_8));
            String pid = Collector.pid(doc.getString("company"), "chatglm2_6b_int4");
            pendings.add(new Collector.Pending(pid, doc.append("pid", pid).append("model_name", "chatglm2_6b_int4"), channel,
                    r.getEnvelope().getDeliveryTag()));
        }
        return pendings;
    }

    /** Readiness as CollectorConfiguration wires it. */
    HealthCheck.Result readiness(Collector collector, CollectionIndexes indexes) {
        HealthCheck check = HealthChecks.mongo(client, "mongodb://127.0.0.1:" + MONGO_PORT, collector::problem,
                Map.of("pid index", indexes::pidIndex));
        ((CamelContextAware) check).setCamelContext(camel);
        return check.call();
    }

    Collector collector(MongoDouble mongo, CollectionIndexes indexes) {
        return new Collector(mongo.collection(), "chatglm2_6b_int4", null, "unused.dlq", camel).reportingIndexes(indexes);
    }

    @Test
    void the_seeds_collection_with_default_index_names_takes_batches() throws Exception {
        MongoDouble seed = new MongoDouble(docs).listing(MongoDouble.seedIndexes()).onCreateIndex(keys -> keys.toBsonDocument()
                .containsKey("job") ? null : conflict(85, "IndexOptionsConflict", "Index already exists with a different name"));
        Collector collector = new Collector(seed.collection(), "chatglm2_6b_int4", null, "unused.dlq", camel);
        List<Collector.Pending> batch = held(10);

        assertTimeoutPreemptively(Duration.ofSeconds(20), () -> collector.write(batch), "the batch is stored, not retried forever");
        assertThat(docs.countDocuments()).isEqualTo(10);
        channel.close();
        assertThat(broker.count(RESULTS)).as("acknowledged").isZero();
    }

    @Test
    void a_non_unique_pid_index_is_adopted_by_key_never_created_again_and_readiness_stays_up() {
        MongoDouble seed = new MongoDouble(docs).listing(MongoDouble.seedIndexes()).onCreateIndex(keys -> keys.toBsonDocument()
                .containsKey("job") ? null : conflict(85, "IndexOptionsConflict", "Index already exists with a different name"));
        CollectionIndexes indexes = new CollectionIndexes(seed.collection());
        indexes.ensure();
        assertThat(seed.createIndexCalls()).as("every index of the seed's matched by its key; only job's is new")
                .containsExactly("{\"job\": 1}");
        assertThat(indexes.pidUnique()).isFalse();
        assertThat(indexes.problem()).isNull();
        HealthCheck.Result ready = readiness(collector(seed, indexes), indexes);
        assertThat(ready.getState()).isEqualTo(HealthCheck.State.UP);
        assertThat(ready.getDetails().get("pid index").toString()).startsWith("pid_1 (NOT unique");
    }

    @Test
    void an_existing_unique_pid_index_of_any_name_is_used_as_it_is() {
        docs.createIndex(Indexes.ascending("pid"), new IndexOptions().unique(true).name("pid_unique")); // made by an older llm-batch
        MongoDouble mongo = new MongoDouble(docs);
        CollectionIndexes indexes = new CollectionIndexes(mongo.collection());
        indexes.ensure();
        assertThat(mongo.createIndexCalls()).doesNotContain("{\"pid\": 1}");
        assertThat(indexes.pidUnique()).isTrue();
        assertThat(indexes.pidIndex()).isEqualTo("pid_unique (unique)");
        assertThat(docs.listIndexes().into(new ArrayList<>())).filteredOn(ix -> ix.get("key", Document.class).containsKey("pid"))
                .extracting(ix -> ix.getString("name")).containsExactly("pid_unique");
    }

    @Test
    void an_index_conflict_makes_readiness_down_with_the_reason_while_results_are_still_stored() throws Exception {
        // someone's hashed index on company under the name MongoDB would give ours: a real MongoDB answers 86
        MongoDouble mongo = new MongoDouble(docs).listing(List.of(MongoDouble.index("_id_", "_id", false),
                        MongoDouble.index("pid_1", "pid", true), MongoDouble.index("company_1", new Document("company", "hashed"), false),
                        MongoDouble.index("model_name_1", "model_name", false)))
                .onCreateIndex(keys -> conflict(86, "IndexKeySpecsConflict",
                        "An existing index has the same name as the requested index but different keys"));
        CollectionIndexes indexes = new CollectionIndexes(mongo.collection());
        indexes.ensure();
        Collector collector = collector(mongo, indexes);

        HealthCheck.Result ready = readiness(collector, indexes);
        assertThat(ready.getState()).isEqualTo(HealthCheck.State.DOWN);
        assertThat(ready.getMessage()).hasValueSatisfying(m -> assertThat(m).contains("index on company", "IndexKeySpecsConflict (86)"));
        // a missing secondary index slows queries, it does not make storing unsafe: results go on being stored
        List<Collector.Pending> batch = held(5);
        assertTimeoutPreemptively(Duration.ofSeconds(20), () -> collector.write(batch));
        assertThat(docs.countDocuments()).isEqualTo(5);
    }

    @Test
    void duplicates_that_stop_the_unique_pid_index_make_readiness_down_and_storing_goes_on() throws Exception {
        MongoDouble mongo = new MongoDouble(docs).listing(List.of(MongoDouble.index("_id_", "_id", false)))
                .onCreateIndex(keys -> keys.toBsonDocument().containsKey("pid") ? conflict(11000, "DuplicateKey",
                        "Index build failed: E11000 duplicate key error collection: llm.company_intro index: pid_1 dup key: { pid: \\\"9e46\\\" }")
                        : null);
        CollectionIndexes indexes = new CollectionIndexes(mongo.collection());
        indexes.ensure();
        Collector collector = collector(mongo, indexes);

        HealthCheck.Result ready = readiness(collector, indexes);
        assertThat(ready.getState()).isEqualTo(HealthCheck.State.DOWN);
        assertThat(ready.getMessage()).hasValueSatisfying(m -> assertThat(m)
                .contains("index on pid", "DuplicateKey (11000)", "two documents for one pid"));
        assertThat(indexes.pidUnique()).isFalse();
        // decided: storing goes on. Holding every result back would stall the whole job on duplicates that are
        // already there, and an upsert by pid still keeps one document per pid unless two upserts race
        List<Collector.Pending> batch = held(5);
        assertTimeoutPreemptively(Duration.ofSeconds(20), () -> collector.write(batch));
        assertThat(docs.countDocuments()).isEqualTo(5);
        channel.close();
        assertThat(broker.count(RESULTS)).isZero();
    }

    @Test
    void a_user_without_permission_to_list_indexes_is_reported_not_retried_in_silence() {
        MongoDouble mongo = new MongoDouble(docs).listingFails(conflict(13, "Unauthorized",
                "not authorized on llm to execute command { listIndexes: \\\"company_intro\\\" }"));
        CollectionIndexes indexes = new CollectionIndexes(mongo.collection());
        indexes.ensure(); // returns: a refusal is a verdict, not an outage
        HealthCheck.Result ready = readiness(collector(mongo, indexes), indexes);
        assertThat(ready.getState()).isEqualTo(HealthCheck.State.DOWN);
        assertThat(ready.getMessage()).hasValueSatisfying(m -> assertThat(m).contains("Unauthorized (13)"));
    }

    @Test
    void a_write_concern_error_is_not_success_and_says_why_until_the_write_is_acknowledged() throws Exception {
        // applied on the primary, not acknowledged by a majority within wtimeout: what a real replica set answers
        MongoDouble mongo = new MongoDouble(docs).onBulkWrite(attempt -> attempt <= 2 ? new MongoBulkWriteException(
                BulkWriteResult.acknowledged(0, 0, 0, 0, List.of(), List.of()), List.of(),
                new WriteConcernError(64, "WriteConcernFailed", "waiting for replication timed out", new BsonDocument()),
                new ServerAddress(), Set.of()) : null);
        CollectionIndexes indexes = new CollectionIndexes(docs);
        indexes.ensure();
        Collector collector = collector(mongo, indexes);
        List<Collector.Pending> batch = held(5);

        CompletableFuture<Integer> write = CompletableFuture.supplyAsync(() -> collector.write(batch));
        await().atMost(Duration.ofSeconds(10)).until(() -> collector.problem() != null);
        assertThat(write).as("not acknowledged as if stored").isNotDone();
        HealthCheck.Result failing = readiness(collector, indexes);
        assertThat(failing.getState()).isEqualTo(HealthCheck.State.DOWN);
        assertThat(failing.getMessage()).hasValueSatisfying(m -> assertThat(m).contains("write concern", "WriteConcernFailed (64)"));

        assertThat(write.get(30, TimeUnit.SECONDS)).isEqualTo(5);
        assertThat(mongo.bulkAttempts()).isEqualTo(3);
        assertThat(readiness(collector, indexes).getState()).isEqualTo(HealthCheck.State.UP);
        channel.close();
        assertThat(broker.count(RESULTS)).isZero();
    }

    @Test
    void a_write_mongodb_refuses_for_good_is_held_reported_and_stored_once_allowed() throws Exception {
        AtomicBoolean allowed = new AtomicBoolean();
        MongoDouble mongo = new MongoDouble(docs).onBulkWrite(attempt -> allowed.get() ? null
                : conflict(13, "Unauthorized", "not authorized on llm to execute command { update: \\\"company_intro\\\" }"));
        CollectionIndexes indexes = new CollectionIndexes(docs);
        indexes.ensure();
        Collector collector = collector(mongo, indexes);
        List<Collector.Pending> batch = held(5);

        CompletableFuture<Integer> write = CompletableFuture.supplyAsync(() -> collector.write(batch));
        await().atMost(Duration.ofSeconds(10)).until(() -> collector.problem() != null);
        assertThat(readiness(collector, indexes).getMessage()).hasValueSatisfying(m -> assertThat(m)
                .contains("MongoDB refuses writes", "Unauthorized (13)"));
        assertThat(write).isNotDone();
        allowed.set(true); // the DBA grants readWrite
        assertThat(write.get(60, TimeUnit.SECONDS)).isEqualTo(5);
        assertThat(docs.countDocuments()).isEqualTo(5);
        assertThat(collector.problem()).isNull();
    }
}
