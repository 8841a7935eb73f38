package io.llmbatch.collector;

import java.nio.charset.StandardCharsets;
import java.time.Duration;

import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import org.apache.camel.BeanInject;
import org.apache.camel.CamelContext;
import org.apache.camel.test.main.junit5.CamelMainTest;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.Broker;
import io.llmbatch.support.Mongo;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * A graceful stop (SIGTERM, or the context stopped) while a batch is being filled: its results are written and
 * acknowledged before the consumers' channels close, not thrown away to be redelivered and written again.
 */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=collector",
        "llmbatch.queue.results=" + CollectorStopTest.RESULTS,
        "llmbatch.queue.results-dlq=" + CollectorStopTest.RESULTS + ".dlq",
        "llmbatch.mongodb.uri=mongodb://127.0.0.1:" + CollectorStopTest.MONGO_PORT + "/?serverSelectionTimeoutMS=1000",
        // a partial batch that only the stop can complete
        "llmbatch.collector.batch-size=100",
        "llmbatch.collector.batch-timeout=600000",
        "camel.main.routesReloadEnabled=false" })
class CollectorStopTest {

    static final String RESULTS = "t11c_stop_results";
    static final int MONGO_PORT = 20224;

    static {
        Mongo.reset(MONGO_PORT);
        try (Broker broker = new Broker()) {
            broker.purge(RESULTS);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    @BeanInject
    CamelContext context;

    @AfterAll
    static void cleanUp() throws Exception {
        try (Broker broker = new Broker()) {
            broker.reset(RESULTS, RESULTS + ".dlq");
        }
    }

    @Test
    void a_graceful_stop_writes_and_acknowledges_the_batch_being_filled() throws Exception {
        try (Broker broker = new Broker(); MongoClient client = MongoClients.create("mongodb://127.0.0.1:" + MONGO_PORT)) {
            for (int i = 0; i < 5; i++) {
                broker.publish(RESULTS, ("{\"company\": \"停机公司" + i + "\", \"intro\": \"x\"}").getBytes(StandardCharsets.UTF_8), null);
            }
            // all five delivered and waiting in the aggregator, none stored yet
            await().atMost(Duration.ofSeconds(20)).until(() -> broker.count(RESULTS) == 0);
            assertThat(client.getDatabase("llm").getCollection("company_intro").countDocuments()).isZero();

            context.stop();

            assertThat(client.getDatabase("llm").getCollection("company_intro").countDocuments()).as("written").isEqualTo(5);
            assertThat(broker.count(RESULTS)).as("and acknowledged: nothing comes back to be written again").isZero();
        }
    }
}
