package io.llmbatch.support;

import java.util.List;

import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;

/**
 * A MongoDB-wire server in the test JVM (mongo-java-server): no real mongod can be installed on these machines.
 * It enforces unique indexes and supports unordered bulk upserts with $set/$setOnInsert, which is what the
 * collector relies on; it ignores non-unique indexes.
 */
public final class Mongo {

    /**
     * mongo-java-server 1.46 (the newest on netty 4.1, which Vert.x needs) announces MongoDB 4.0 at most; driver 5.x
     * refuses servers below wire version 8 (4.2). The commands the collector uses are the same in 4.2.
     */
    private static final MongoVersion MONGO_4_2 = new MongoVersion() {
        @Override
        public List<Integer> getVersionArray() {
            return List.of(4, 2, 0);
        }

        @Override
        public int getWireVersion() {
            return 8;
        }
    };

    private static MongoServer server;
    private static MemoryBackend backend;

    private Mongo() {
    }

    /** Starts (or restarts, keeping the data) the server on 127.0.0.1:port. */
    public static synchronized void start(int port) {
        if (server == null) {
            if (backend == null) {
                backend = new MemoryBackend();
                backend.version(MONGO_4_2);
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
