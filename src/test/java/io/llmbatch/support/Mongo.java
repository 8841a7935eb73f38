package io.llmbatch.support;

import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;

import io.llmbatch.embedded.Embedded;

/**
 * A MongoDB-wire server in the test JVM (mongo-java-server): no real mongod can be installed on these machines.
 * It enforces unique indexes and supports unordered bulk upserts with $set/$setOnInsert, which is what the
 * collector relies on; it ignores non-unique indexes.
 */
public final class Mongo {

    private static MongoServer server;
    private static MemoryBackend backend;

    private Mongo() {
    }

    /** Starts (or restarts, keeping the data) the server on 127.0.0.1:port. */
    public static synchronized void start(int port) {
        if (server == null) {
            if (backend == null) {
                backend = new MemoryBackend();
                backend.version(Embedded.MONGO_4_2);
            }
            server = new MongoServer(backend);
            server.bind("127.0.0.1", port);
        }
    }

    /** Stops listening and cuts every connection; the data stays for a restart. */
    public static synchronized void stop() {
        if (server != null) {
            server.shutdownNow();
            server = null;
        }
    }

    /** Forgets all data. */
    public static synchronized void reset(int port) {
        stop();
        backend = null;
        start(port);
    }
}
