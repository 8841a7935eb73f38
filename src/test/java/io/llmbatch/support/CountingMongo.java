package io.llmbatch.support;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.backend.h2.H2Backend;
import de.bwaldvogel.mongo.bson.Document;
import io.netty.channel.Channel;

import io.llmbatch.embedded.Embedded;

/**
 * A MongoDB-wire server (mongo-java-server, H2 file: the data survives a restart) that counts every upsert it
 * applies per {@code pid}, so a test sees a result written twice (redone work) even though the unique pid index keeps
 * one document; and that can hold the answer to one bulk write after applying it, so a test can kill the collector
 * while its batch is stored but not yet acknowledged.
 */
public final class CountingMongo implements AutoCloseable {

    private static final Map<String, AtomicLong> WRITES = new ConcurrentHashMap<>();
    private static final AtomicReference<Hold> HOLD = new AtomicReference<>();

    /** One write to hold: signalled once it is applied, answered after {@code millis}. */
    public static final class Hold {
        final long millis;
        final CountDownLatch applied = new CountDownLatch(1);
        volatile int upserts;

        Hold(long millis) {
            this.millis = millis;
        }

        /** Waits until the held write is applied; its upserts. */
        public int awaitApplied(long timeoutSeconds) throws InterruptedException {
            if (!applied.await(timeoutSeconds, TimeUnit.SECONDS)) {
                throw new AssertionError("no bulk write reached MongoDB within " + timeoutSeconds + " s");
            }
            return upserts;
        }
    }

    private final MongoServer server;

    private CountingMongo(MongoServer server) {
        this.server = server;
    }

    /** Starts the server on 127.0.0.1:port with its data in {@code dir}; the counts go on across restarts. */
    public static CountingMongo start(Path dir, int port) throws IOException {
        Files.createDirectories(dir);
        H2Backend backend = new H2Backend(dir.resolve("mongodb.mv").toAbsolutePath().toString()) {
            @Override
            public Document handleCommand(Channel channel, String database, String command, Document query) {
                Document answer = super.handleCommand(channel, database, command, query);
                if ("update".equals(command) && query.get("updates") instanceof List<?> updates) {
                    for (Object u : updates) {
                        if (u instanceof Document d && d.get("q") instanceof Document q && q.get("pid") != null) {
                            WRITES.computeIfAbsent(String.valueOf(q.get("pid")), k -> new AtomicLong()).incrementAndGet();
                        }
                    }
                    Hold hold = HOLD.getAndSet(null);
                    if (hold != null) {
                        hold.upserts = updates.size();
                        hold.applied.countDown();
                        sleep(hold.millis); // applied, not yet answered: the collector has not acknowledged anything
                    }
                }
                return answer;
            }
        };
        backend.version(Embedded.MONGO_4_2);
        MongoServer server = new MongoServer(backend);
        server.bind("127.0.0.1", port);
        return new CountingMongo(server);
    }

    /** The next bulk write is applied and then answered only after {@code millis}. */
    public static Hold holdNextWrite(long millis) {
        Hold hold = new Hold(millis);
        HOLD.set(hold);
        return hold;
    }

    /** Upserts applied, over all pids, since {@link #reset()}. */
    public static long writes() {
        return WRITES.values().stream().mapToLong(AtomicLong::get).sum();
    }

    /** Pids written more than once, and how often beyond the first. */
    public static long writesBeyondFirst() {
        return WRITES.values().stream().mapToLong(n -> Math.max(0, n.get() - 1)).sum();
    }

    public static void reset() {
        WRITES.clear();
        HOLD.set(null);
    }

    private static void sleep(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Stops listening and cuts every connection. */
    @Override
    public void close() {
        server.shutdownNow();
    }
}
