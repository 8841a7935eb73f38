package io.llmbatch.jobs;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

import com.fasterxml.jackson.databind.node.ObjectNode;
import com.mongodb.MongoException;
import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import com.mongodb.client.MongoCollection;
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import de.bwaldvogel.mongo.exception.MongoServerError;
import io.netty.channel.Channel;
import org.bson.Document;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import io.llmbatch.embedded.Embedded;
import io.llmbatch.ingest.Tasks;
import io.llmbatch.support.JobsDir;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The skip decision against a MongoDB that is not on this machine: every query waits a round trip. The ingest node asks
 * for its tasks' stored results in blocks of pids; asked one after the other, 280 blocks of a 28,000-task POST cost 280
 * round trips before the first task is published (5.6 s at 20 ms; {@code MONGO_ONE_WAY_MS=10 bench/skip.sh}). The
 * MongoDB here is mongo-java-server with each find on the results collection held for a round trip; it counts how many
 * are in flight at once. A query MongoDB refuses is thrown as the driver's own exception, with MongoDB's code.
 */
class SkipLookupTest {

    static final int PORT = 21301;
    static final long ROUND_TRIP_MS = 40;
    static final AtomicInteger IN_FLIGHT = new AtomicInteger();
    static final AtomicInteger MOST_IN_FLIGHT = new AtomicInteger();
    static volatile String refusePid;

    MongoServer server;
    MongoClient client;
    Jobs jobs;
    JobDefinition job;

    @BeforeEach
    void start() throws Exception {
        MemoryBackend backend = new MemoryBackend() {
            @Override
            public de.bwaldvogel.mongo.bson.Document handleCommand(Channel channel, String database, String command,
                                                                   de.bwaldvogel.mongo.bson.Document query) {
                if (!"find".equals(command) || !"company_intro".equals(query.get("find"))) {
                    return super.handleCommand(channel, database, command, query);
                }
                MOST_IN_FLIGHT.accumulateAndGet(IN_FLIGHT.incrementAndGet(), Math::max);
                try {
                    Thread.sleep(ROUND_TRIP_MS);
                    if (refusePid != null && String.valueOf(query.get("filter")).contains(refusePid)) {
                        // what a real mongod answers a user without the find privilege on this collection
                        throw new MongoServerError(13, "Unauthorized", "not authorized on llm to execute command { find: \"company_intro\" }");
                    }
                    return super.handleCommand(channel, database, command, query);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IllegalStateException(e);
                } finally {
                    IN_FLIGHT.decrementAndGet();
                }
            }
        };
        backend.version(Embedded.MONGO_4_2);
        server = new MongoServer(backend);
        server.bind("127.0.0.1", PORT);
        client = MongoClients.create("mongodb://127.0.0.1:" + PORT);
        Path base = JobsDir.fresh(Path.of("target/skip-lookup"));
        jobs = new Jobs(base.resolve("jobs"), "company_intro", "chatglm2_6b_int4");
        job = jobs.defaultJob();
        MOST_IN_FLIGHT.set(0);
        refusePid = null;
    }

    @AfterEach
    void stop() {
        client.close();
        server.shutdownNow();
    }

    List<Jobs.Rendered> render(int n) {
        List<Jobs.Rendered> tasks = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            ObjectNode task = Tasks.JSON.createObjectNode().put("reg_dt", "2015-03-02").put("addr", "北京市海淀区" + i + "号")
                    .put("ent_table_name", "北京测试科技有限公司" + i);
            tasks.add(jobs.render(job, task));
        }
        return tasks;
    }

    @Test
    void the_blocks_of_pids_are_asked_at_once_and_decide_the_same() {
        List<Jobs.Rendered> tasks = render(1000); // 10 blocks
        // stored: the first 600 from the same request, the next 200 from another (an older prompt), the last 200 not at all
        MongoCollection<Document> results = client.getDatabase("llm").getCollection("company_intro");
        List<Document> stored = new ArrayList<>();
        for (int i = 0; i < 800; i++) {
            Jobs.Rendered t = tasks.get(i);
            stored.add(new Document("pid", t.pid()).append("job", "company_intro")
                    .append("request_hash", i < 600 ? t.requestHash() : "an older request"));
        }
        results.insertMany(stored);

        JobStore.Admission admission = new JobStore(client.getDatabase("llm")).decide(job, tasks, false);

        assertThat(admission.publish()).containsExactlyElementsOf(tasks.subList(600, 1000));
        assertThat(admission.entries()).hasSize(1000);
        assertThat(MOST_IN_FLIGHT.get()).as("lookups in flight at once, at most").isGreaterThan(1);
    }

    @Test
    void a_lookup_MongoDB_refuses_fails_the_decision_with_the_drivers_exception_and_MongoDBs_code() {
        List<Jobs.Rendered> tasks = render(1000);
        refusePid = tasks.get(750).pid(); // the 8th block of 10

        assertThatThrownBy(() -> new JobStore(client.getDatabase("llm")).decide(job, tasks, false))
                .isInstanceOf(MongoException.class)
                .satisfies(e -> assertThat(((MongoException) e).getCode()).isEqualTo(13))
                .hasMessageContaining("not authorized");
    }
}
