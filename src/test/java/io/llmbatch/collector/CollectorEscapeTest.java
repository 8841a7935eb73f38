package io.llmbatch.collector;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicInteger;

import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import com.mongodb.client.MongoCollection;
import org.apache.camel.builder.AdviceWithRouteBuilder;
import org.apache.camel.test.main.junit5.AdviceRouteMapping;
import org.apache.camel.test.main.junit5.CamelMainTest;
import org.bson.Document;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.Broker;
import io.llmbatch.support.Mongo;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * The collector consumes with MANUAL acknowledgement, where Spring's listener container settles nothing itself: an
 * exception that escapes the route (here a step made to throw once, for one result) left the delivery unacknowledged
 * until the broker's consumer timeout (30 min) closed the channel. It must go back to the queue at once.
 */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=collector",
        "llmbatch.queue.results=" + CollectorEscapeTest.RESULTS,
        "llmbatch.queue.results-dlq=" + CollectorEscapeTest.RESULTS + ".dlq",
        "llmbatch.mongodb.uri=mongodb://127.0.0.1:" + CollectorEscapeTest.MONGO_PORT + "/?serverSelectionTimeoutMS=1000",
        "llmbatch.collector.batch-timeout=300",
        "camel.main.routesReloadEnabled=false" },
        advices = @AdviceRouteMapping(route = "collector-results", advice = CollectorEscapeTest.ThrowOnce.class))
class CollectorEscapeTest {

    static final String RESULTS = "t11c_escape_results";
    static final int MONGO_PORT = 20223;
    static final AtomicInteger THROWN = new AtomicInteger();

    static {
        Mongo.reset(MONGO_PORT);
        try (Broker broker = new Broker()) {
            broker.purge(RESULTS);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    /** The first delivery of the result for 逃逸公司 fails with an exception no route handler catches. */
    public static class ThrowOnce extends AdviceWithRouteBuilder {
        @Override
        public void configure() {
            weaveById("parse-result").before().process(exchange -> {
                String body = exchange.getMessage().getBody(String.class);
                if (body.contains("逃逸公司") && THROWN.getAndIncrement() == 0) {
                    throw new IllegalStateException("an unexpected failure escaping the collector route");
                }
            });
        }
    }

    @AfterAll
    static void cleanUp() throws Exception {
        try (Broker broker = new Broker()) {
            broker.reset(RESULTS, RESULTS + ".dlq");
        }
    }

    @Test
    void a_result_whose_processing_escapes_the_route_is_requeued_at_once_and_stored() throws Exception {
        try (Broker broker = new Broker(); MongoClient client = MongoClients.create("mongodb://127.0.0.1:" + MONGO_PORT)) {
            MongoCollection<Document> docs = client.getDatabase("llm").getCollection("company_intro");
            broker.publish(RESULTS, "{\"company\": \"逃逸公司\", \"intro\": \"x\"}".getBytes(StandardCharsets.UTF_8), null);
            broker.publish(RESULTS, "{\"company\": \"正常公司\", \"intro\": \"y\"}".getBytes(StandardCharsets.UTF_8), null);
            // well within the broker's 30-minute consumer timeout: redelivered because it was requeued, not timed out
            await().atMost(Duration.ofSeconds(20)).until(() -> docs.countDocuments() == 2);
            assertThat(THROWN.get()).as("the failure happened, then the redelivery went through").isGreaterThanOrEqualTo(2);
            await().atMost(Duration.ofSeconds(10)).until(() -> broker.count(RESULTS) == 0);
        }
    }
}
