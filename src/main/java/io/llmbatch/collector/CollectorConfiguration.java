package io.llmbatch.collector;

import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import com.mongodb.ConnectionString;
import com.mongodb.MongoClientSettings;
import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import org.apache.camel.CamelConfiguration;
import org.apache.camel.CamelContext;
import org.apache.camel.PropertyInject;
import org.apache.camel.spi.Registry;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.llmbatch.Roles;
import io.llmbatch.Urls;
import io.llmbatch.Wiring;
import io.llmbatch.embedded.Embedded;
import io.llmbatch.ops.HealthChecks;
import io.llmbatch.ops.StatusReporter;
import io.llmbatch.rabbit.BrokerConfiguration;
import io.llmbatch.rabbit.ConfirmingPublisher;

/** The collector role: MongoDB ({@code llmbatch.mongodb.uri}, embedded when unset), its indexes and the bulk writer. */
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

    @Override
    public void configure(CamelContext camelContext) throws Exception {
        if (!Wiring.node(camelContext).roles().has(Roles.COLLECTOR)) {
            return;
        }
        Registry registry = camelContext.getRegistry();
        ConfirmingPublisher publisher = registry.lookupByNameAndType(BrokerConfiguration.PUBLISHER, ConfirmingPublisher.class);
        // resolved here, not injected: a process without the collector role needs no MongoDB setting (prod profile)
        // (strict: in the prod profile a missing MONGODB_URI stops the start, it never falls back to embedded)
        String uri = camelContext.resolvePropertyPlaceholders("{{llmbatch.mongodb.uri}}");
        if (Embedded.EMBEDDED.equals(uri.trim())) {
            uri = Wiring.embedded(camelContext, Embedded.mongo(Path.of(embeddedDataDir), embeddedMongoPort));
        }
        MongoClient mongo = MongoClients.create(mongoSettings(uri));
        Wiring.stopWith(camelContext, mongo::close);
        registry.bind("mongoClient", mongo);
        registry.bind("mongoHealth", HealthChecks.mongo(mongo, uri));
        Collector collector = new Collector(mongo.getDatabase(database).getCollection(collection), defaultModelName, publisher,
                resultsDeadLetterQueue, camelContext);
        registry.bind("collector", collector);
        registry.lookupByNameAndType(BrokerConfiguration.STATUS, StatusReporter.class)
                .with("collector", () -> Map.of("stored", collector.stored(), "documents", collector.documents()));
        LOG.info("Collector: MongoDB at {}, {}.{}", Urls.mask(uri), database, collection);
        // create the indexes now, without holding up the start for MongoDB's server-selection timeout when it is
        // down; the first write creates them otherwise
        Thread indexes = new Thread(() -> {
            try {
                collector.ensureIndexes();
                LOG.info("MongoDB indexes on {}.{}: pid (unique), company, model_name", database, collection);
            } catch (RuntimeException e) {
                LOG.warn("Cannot create the MongoDB indexes yet (unreachable?); the first write retries: {}", e.getMessage());
            }
        }, "mongodb-indexes");
        indexes.setDaemon(true);
        indexes.start();
        publisher.declare(resultsDeadLetterQueue, false);
    }

    /**
     * The URI's settings, with bounds where it sets none: the driver's default read timeout is infinite, so a
     * server that accepts a request and never answers (restarting, a dropped network path) would hang the
     * collector's write forever instead of failing it into a retry.
     */
    static MongoClientSettings mongoSettings(String uri) {
        ConnectionString cs = new ConnectionString(uri);
        return MongoClientSettings.builder().applyConnectionString(cs).applyToSocketSettings(socket -> {
            if (cs.getConnectTimeout() == null) {
                socket.connectTimeout(10, TimeUnit.SECONDS);
            }
            if (cs.getSocketTimeout() == null) {
                socket.readTimeout(60, TimeUnit.SECONDS);
            }
        }).build();
    }
}
