package io.llmbatch.mongo;

import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

import com.mongodb.ConnectionString;
import com.mongodb.MongoClientSettings;
import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import com.mongodb.client.MongoDatabase;
import com.mongodb.event.ClusterDescriptionChangedEvent;
import com.mongodb.event.ClusterListener;
import org.apache.camel.CamelConfiguration;
import org.apache.camel.CamelContext;
import org.apache.camel.PropertyInject;
import org.apache.camel.spi.Registry;

import io.llmbatch.Roles;
import io.llmbatch.Wiring;

import io.llmbatch.embedded.Embedded;

/**
 * The MongoDB connection of the roles that use it: the collector (it stores the results) and the ingest node (job
 * status, the task ledger that makes counts exact and repeats skippable, export). {@code llmbatch.mongodb.uri}, embedded
 * when unset (for a process with the collector role); one client per process, whatever its roles. An ingest node
 * without one still publishes tasks; it only has no job status.
 */
public class MongoConfiguration implements CamelConfiguration {

    private static final org.slf4j.Logger LOG = org.slf4j.LoggerFactory.getLogger(MongoConfiguration.class);

    /** Registry name of the {@link Mongo}. */
    public static final String MONGO = "llmbatchMongo";

    @PropertyInject("llmbatch.mongodb.database")
    String database;
    @PropertyInject("llmbatch.embedded.data-dir")
    String embeddedDataDir;
    @PropertyInject("llmbatch.embedded.mongodb-port")
    int embeddedMongoPort;
    @PropertyInject("llmbatch.mongodb.write-concern")
    String writeConcernSetting;

    /**
     * The connection: the client, the database, the write concern in force, and who to tell when MongoDB becomes writable
     * again (index checks after an outage).
     */
    public static final class Mongo {
        private final MongoClient client;
        private final String uri;
        private final MongoDatabase database;
        private final WriteConcerns.Chosen writeConcern;
        private final Writable onWritable;

        Mongo(MongoClient client, String uri, MongoDatabase database, WriteConcerns.Chosen writeConcern, Writable onWritable) {
            this.client = client;
            this.uri = uri;
            this.database = database;
            this.writeConcern = writeConcern;
            this.onWritable = onWritable;
        }

        public MongoClient client() {
            return client;
        }

        /** The URI as configured (may hold credentials: mask it before logging). */
        public String uri() {
            return uri;
        }

        /** {@code llmbatch.mongodb.database}, with the write concern in force. */
        public MongoDatabase database() {
            return database;
        }

        public WriteConcerns.Chosen writeConcern() {
            return writeConcern;
        }

        /**
         * Runs {@code task} each time MongoDB becomes writable, and at once when it is writable already (on the caller's or
         * the driver's monitor thread: hand long work to another).
         */
        public void onWritable(Runnable task) {
            onWritable.add(task);
        }
    }

    /**
     * Who to tell when MongoDB becomes writable. The client starts connecting when it is made, so it is often writable
     * before a role registers its task: a task registered then runs at once (the collector's index check at start was
     * otherwise never made: no unique pid index, every upsert a collection scan). A task may so run twice; it must not
     * mind.
     */
    static final class Writable implements ClusterListener {
        private final List<Runnable> tasks = new CopyOnWriteArrayList<>();
        private volatile boolean writable;

        @Override
        public void clusterDescriptionChanged(ClusterDescriptionChangedEvent event) {
            boolean now = event.getNewDescription().hasWritableServer();
            boolean before = writable;
            writable = now;
            if (now && !before) {
                tasks.forEach(Runnable::run);
            }
        }

        void add(Runnable task) {
            tasks.add(task);
            if (writable) {
                task.run();
            }
        }
    }

    @Override
    public void configure(CamelContext camelContext) throws Exception {
        Roles roles = Wiring.node(camelContext).roles();
        if (!roles.has(Roles.COLLECTOR) && !roles.has(Roles.INGEST)) {
            return;
        }
        // resolved here, not injected: a worker-only process needs no MongoDB setting (strict in the prod profile: a
        // missing MONGODB_URI stops a collector's start, it never falls back to embedded)
        String uri;
        try {
            uri = camelContext.resolvePropertyPlaceholders("{{llmbatch.mongodb.uri}}");
        } catch (RuntimeException e) {
            if (roles.has(Roles.COLLECTOR)) {
                throw e;
            }
            LOG.warn("Ingest without MongoDB (MONGODB_URI is not set): tasks are published as ever, but jobs have no status, "
                     + "export or skipping of answers already stored; set MONGODB_URI on this node for those");
            return;
        }
        if (Embedded.EMBEDDED.equals(uri.trim())) {
            if (!roles.has(Roles.COLLECTOR)) {
                // an embedded MongoDB serves the collector of this process; an ingest node alone has none to share
                LOG.warn("Ingest without MongoDB (llmbatch.mongodb.uri is embedded and this process has no collector): jobs have "
                         + "no status, export or skipping; set MONGODB_URI to the collector's MongoDB for those");
                return;
            }
            uri = Wiring.embedded(camelContext, Embedded.mongo(Path.of(embeddedDataDir), embeddedMongoPort));
        }
        ConnectionString connection = new ConnectionString(uri);
        WriteConcerns.Chosen writeConcern = WriteConcerns.choose(writeConcernSetting, connection);
        Writable onWritable = new Writable();
        MongoClient client = MongoClients.create(settings(uri, onWritable));
        Wiring.stopWith(camelContext, client::close);
        Registry registry = camelContext.getRegistry();
        registry.bind("mongoClient", client);
        registry.bind(MONGO, new Mongo(client, uri, client.getDatabase(database).withWriteConcern(writeConcern.writeConcern()),
                writeConcern, onWritable));
    }

    /** The MongoDB connection of this process, or null when an ingest node runs without one. */
    public static Mongo orNull(CamelContext camelContext) {
        return camelContext.getRegistry().lookupByNameAndType(MONGO, Mongo.class);
    }

    /** The MongoDB connection of this process (bound when a role needs one). */
    public static Mongo of(CamelContext camelContext) {
        Mongo m = camelContext.getRegistry().lookupByNameAndType(MONGO, Mongo.class);
        if (m == null) {
            throw new IllegalStateException("io.llmbatch.mongo.MongoConfiguration must come before the collector and ingest "
                                            + "configurations in camel.main.configurationClasses");
        }
        return m;
    }

    /**
     * The URI's settings, with bounds where it sets none: the driver's default read timeout is infinite, so a server
     * that accepts a request and never answers (restarting, a dropped network path) would hang a write forever instead
     * of failing it into a retry.
     */
    public static MongoClientSettings settings(String uri, ClusterListener listener) {
        ConnectionString cs = new ConnectionString(uri);
        return MongoClientSettings.builder().applyConnectionString(cs)
                .applyToClusterSettings(cluster -> cluster.addClusterListener(listener)).applyToSocketSettings(socket -> {
            if (cs.getConnectTimeout() == null) {
                socket.connectTimeout(10, TimeUnit.SECONDS);
            }
            if (cs.getSocketTimeout() == null) {
                socket.readTimeout(60, TimeUnit.SECONDS);
            }
        }).build();
    }
}
