package io.llmbatch.mongo;

import java.time.Duration;
import java.util.concurrent.atomic.AtomicInteger;

import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import io.llmbatch.support.Mongo;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * The real driver's cluster events on a MongoDB-wire server: the client connects as soon as it is made, so a role that
 * registers its "MongoDB is writable" task later (the collector's index check at start) must still get it run. It did
 * not: the collector's unique pid index was never created at start (seen in bench/skip.sh, every upsert a scan).
 */
class WritableTest {

    static final int PORT = 21221;

    @BeforeAll
    static void up() {
        Mongo.reset(PORT);
    }

    @AfterAll
    static void down() {
        Mongo.stop();
    }

    @Test
    void a_task_registered_once_mongodb_is_writable_runs_at_once_and_again_after_an_outage() throws Exception {
        MongoConfiguration.Writable writable = new MongoConfiguration.Writable();
        try (MongoClient client = MongoClients.create(MongoConfiguration.settings("mongodb://127.0.0.1:" + PORT
                                                                                  + "/?heartbeatFrequencyMS=500", writable))) {
            await().atMost(Duration.ofSeconds(10)).until(() -> client.getClusterDescription().hasWritableServer());
            AtomicInteger runs = new AtomicInteger();
            writable.add(runs::incrementAndGet);
            assertThat(runs.get()).as("run when registered on a writable MongoDB").isEqualTo(1);

            Mongo.stop();
            await().atMost(Duration.ofSeconds(20)).until(() -> !client.getClusterDescription().hasWritableServer());
            Mongo.start(PORT);
            await().atMost(Duration.ofSeconds(20)).until(() -> runs.get() == 2);
        }
    }
}
