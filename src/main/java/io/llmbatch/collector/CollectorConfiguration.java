package io.llmbatch.collector;

import io.llmbatch.mongo.WriteConcerns;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import com.mongodb.ConnectionString;
import com.mongodb.MongoClientSettings;
import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import com.mongodb.client.MongoCollection;
import com.mongodb.client.MongoDatabase;
import com.mongodb.event.ClusterDescriptionChangedEvent;
import com.mongodb.event.ClusterListener;
import org.apache.camel.CamelConfiguration;
import org.apache.camel.CamelContext;
import org.apache.camel.PropertyInject;
import org.apache.camel.spi.Registry;
import org.bson.Document;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.llmbatch.Roles;
import io.llmbatch.Urls;
import io.llmbatch.Wiring;
import io.llmbatch.mongo.MongoConfiguration;
import io.llmbatch.ops.HealthChecks;
import io.llmbatch.ops.StatusReporter;
import io.llmbatch.rabbit.BrokerConfiguration;
import io.llmbatch.rabbit.ConfirmingPublisher;

/**
 * The collector role: MongoDB ({@code llmbatch.mongodb.uri}, embedded when unset) with its write concern, the
 * indexes (checked at start and whenever MongoDB becomes writable again), readiness, and the bulk writer.
 */
public class CollectorConfiguration implements CamelConfiguration {

    private static final Logger LOG = LoggerFactory.getLogger(CollectorConfiguration.class);

    @PropertyInject("llmbatch.mongodb.database")
    String database;
    @PropertyInject("llmbatch.mongodb.collection")
    String collection;
    @PropertyInject("llmbatch.collector.model-name")
    String defaultModelName;
    @PropertyInject("llmbatch.queue.results-dlq")
    String resultsDeadLetterQueue;
    @PropertyInject("llmbatch.embedded.data-dir")
    String embeddedDataDir;
    @PropertyInject("llmbatch.embedded.mongodb-port")
    int embeddedMongoPort;
    @PropertyInject("llmbatch.mongodb.write-concern")
    String writeConcernSetting;

    @Override
    public void configure(CamelContext camelContext) throws Exception {
        if (!Wiring.node(camelContext).roles().has(Roles.COLLECTOR)) {
            return;
        }
        Registry registry = camelContext.getRegistry();
        ConfirmingPublisher publisher = registry.lookupByNameAndType(BrokerConfiguration.PUBLISHER, ConfirmingPublisher.class);
        MongoConfiguration.Mongo connection = MongoConfiguration.of(camelContext);
        String uri = connection.uri();
        WriteConcerns.Chosen writeConcern = connection.writeConcern();
        // index work at start and whenever MongoDB becomes writable again (a restore, a new primary), never in a write;
        // on its own thread: the listener runs on the driver's monitor thread, which must not wait for MongoDB
        ScheduledExecutorService indexWork = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "mongodb-indexes");
            t.setDaemon(true);
            return t;
        });
        Wiring.stopWith(camelContext, indexWork::shutdownNow);
        AtomicReference<Runnable> checkIndexes = new AtomicReference<>(() -> { });
        MongoClient mongo = connection.client();
        MongoCollection<Document> results = mongo.getDatabase(database).getCollection(collection)
                .withWriteConcern(writeConcern.writeConcern());
        CollectionIndexes indexes = new CollectionIndexes(results);
        checkIndexes.set(new Runnable() {
            @Override
            public void run() {
                try {
                    indexes.ensure();
                } catch (RuntimeException e) {
                    // reachable a moment ago: try again shortly, and in any case at the next reconnect
                    LOG.warn("Cannot check the MongoDB indexes of {}.{} yet, trying again in 10 s: {}", database, collection,
                            Urls.mask(e.getMessage()));
                    if (!indexWork.isShutdown()) {
                        indexWork.schedule(this, 10, TimeUnit.SECONDS);
                    }
                }
            }
        });
        // other jobs' collections (jobs/*.yaml collection:), their indexes checked at first use and at every reconnect
        Map<String, Collector.Target> others = new java.util.concurrent.ConcurrentHashMap<>();
        Runnable checkDefault = checkIndexes.get();
        checkIndexes.set(() -> {
            checkDefault.run();
            others.values().forEach(t -> {
                try {
                    t.indexes().ensure();
                } catch (RuntimeException e) {
                    LOG.warn("Cannot check the MongoDB indexes of {} yet: {}", t.collection().getNamespace(), Urls.mask(e.getMessage()));
                }
            });
        });
        // registered once the check is complete: when MongoDB is writable already it runs at once
        connection.onWritable(() -> indexWork.execute(checkIndexes.get()));
        MongoDatabase db = mongo.getDatabase(database);
        java.util.function.Function<String, Collector.Target> targets = name -> others.computeIfAbsent(name, n -> {
            MongoCollection<Document> c = db.getCollection(n).withWriteConcern(writeConcern.writeConcern());
            CollectionIndexes i = new CollectionIndexes(c);
            i.ensure(); // throws while MongoDB is unreachable: the collector retries with backoff, nothing acknowledged
            LOG.info("Collector: results of another job go to {}.{}", database, n);
            return new Collector.Target(c, i);
        });
        Collector collector = new Collector(results, targets, defaultModelName, publisher, resultsDeadLetterQueue, camelContext)
                .reportingIndexes(indexes);
        registry.bind("mongoHealth", HealthChecks.mongo(mongo, uri, collector::problem,
                Map.of("pid index", indexes::pidIndex, "write concern", collector::writeConcern)));
        registry.bind("collector", collector);
        registry.bind("collectorNackOnEscape", new NackOnEscape());
        registry.lookupByNameAndType(BrokerConfiguration.STATUS, StatusReporter.class)
                .with("collector", () -> Map.of("stored", collector.stored(), "documents", collector.documents()));
        LOG.info("Collector: MongoDB at {}, {}.{}, write concern {}", Urls.mask(uri), database, collection, writeConcern.describe());
        publisher.declare(resultsDeadLetterQueue, false);
    }
}
