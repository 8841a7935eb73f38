package io.llmbatch.collector;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import com.mongodb.client.MongoCollection;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.GetResponse;
import org.apache.camel.impl.DefaultCamelContext;
import org.bson.Document;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.Broker;
import io.llmbatch.support.Mongo;
import io.llmbatch.support.MongoDouble;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

/**
 * The collector's bulk write through a MongoDB outage, with results held on real broker channels (the test's own
 * connection, so the test can close a channel the way the broker's consumer timeout does; the shared broker's
 * consumer_timeout is never changed). MongoDB is mongo-java-server, stopped and started again; a counting double in
 * front of it tells how many upserts reached MongoDB, because a duplicate write is what costs.
 */
@ExtendWith(RabbitMQRequired.class)
class CollectorOutageTest {

    static final int MONGO_PORT = 20221;
    static final String RESULTS = "t11c_outage_results";

    Broker broker;
    MongoClient client;
    MongoCollection<Document> docs;
    MongoDouble mongo;
    DefaultCamelContext camel;
    Collector collector;
    final List<Channel> channels = new ArrayList<>();

    @BeforeEach
    void setUp() throws Exception {
        Mongo.reset(MONGO_PORT);
        broker = new Broker().purge(RESULTS);
        client = MongoClients.create("mongodb://127.0.0.1:" + MONGO_PORT + "/?serverSelectionTimeoutMS=1000&connectTimeoutMS=1000");
        docs = client.getDatabase("llm").getCollection("company_intro");
        mongo = new MongoDouble(docs);
        camel = new DefaultCamelContext();
        camel.start();
        collector = new Collector(mongo.collection(), "chatglm2_6b_int4", null, "unused.dlq", camel);
    }

    @AfterEach
    void tearDown() throws Exception {
        Mongo.start(MONGO_PORT);
        for (Channel ch : channels) {
            if (ch.isOpen()) {
                ch.close();
            }
        }
        camel.stop();
        client.close();
        broker.reset(RESULTS);
        broker.close();
    }

    /** n results published, then taken (unacknowledged) on a channel of their own, as a collector consumer holds them. */
    List<Collector.Pending> held(Channel channel, int n) throws Exception {
        List<Collector.Pending> pendings = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            GetResponse r;
            while ((r = channel.basicGet(RESULTS, false)) == null) {
                Thread.sleep(20);
            }
            Document doc = Document.parse(new String(r.getBody(), StandardCharsets.UTF_8));
            String pid = Collector.pid(doc.getString("company"), "chatglm2_6b_int4");
            pendings.add(new Collector.Pending(pid, doc.append("pid", pid).append("model_name", "chatglm2_6b_int4"), channel,
                    r.getEnvelope().getDeliveryTag()));
        }
        return pendings;
    }

    void publish(int from, int to) throws Exception {
        List<byte[]> bodies = new ArrayList<>();
        for (int i = from; i < to; i++) {
            bodies.add(("{\"company\": \"停电公司" + i + "\", \"intro\": \"x\"}").getBytes(StandardCharsets.UTF_8));
        }
        broker.publishAll(RESULTS, bodies);
    }

    Channel channel() throws Exception {
        Channel ch = broker.channel().getConnection().createChannel();
        channels.add(ch);
        return ch;
    }

    @Test
    void results_whose_channel_closed_during_an_outage_are_written_once_after_it() throws Exception {
        publish(0, 20);
        Channel a = channel();
        Channel b = channel();
        List<Collector.Pending> batch = new ArrayList<>(held(a, 10));
        batch.addAll(held(b, 10));

        Mongo.stop();
        CompletableFuture<Integer> first = CompletableFuture.supplyAsync(() -> collector.write(batch));
        await().atMost(Duration.ofSeconds(10)).until(() -> mongo.calls() >= 1);
        // the broker's consumer timeout closes channel a: its 10 results are redelivered, to another consumer
        a.close();
        Channel c = channel();
        List<Collector.Pending> redelivered = held(c, 10);
        int attempts = mongo.calls();
        CompletableFuture<Integer> second = CompletableFuture.supplyAsync(() -> collector.write(redelivered));
        await().atMost(Duration.ofSeconds(10)).until(() -> mongo.calls() > attempts);

        Mongo.start(MONGO_PORT);
        first.get(60, TimeUnit.SECONDS);
        second.get(60, TimeUnit.SECONDS);

        assertThat(docs.countDocuments()).isEqualTo(20);
        assertThat(mongo.upserts()).as("upserts that reached MongoDB: each result written once").isEqualTo(20);
        b.close();
        c.close();
        assertThat(broker.count(RESULTS)).as("every held result acknowledged").isZero();
    }

    @Test
    void a_batch_that_cannot_be_written_when_the_collector_stops_goes_back_to_the_queue_at_once() throws Exception {
        publish(0, 5);
        Channel a = channel();
        List<Collector.Pending> batch = held(a, 5);
        Mongo.stop();
        camel.stop(); // stopping: the write gives up instead of retrying
        assertThatThrownBy(() -> collector.write(batch)).isInstanceOf(RuntimeException.class);
        // requeued while the channel is still open: not left unacknowledged until the channel closes
        await().atMost(Duration.ofSeconds(5)).until(() -> broker.count(RESULTS) == 5);
        assertThat(a.isOpen()).isTrue();
    }

    @Test
    void results_of_a_jobs_collection_first_seen_while_mongodb_is_down_wait_and_are_written_once_it_is_back() throws Exception {
        // as CollectorConfiguration makes the targets of other jobs: the collection's indexes are checked at its first use
        java.util.Map<String, Collector.Target> others = new java.util.concurrent.ConcurrentHashMap<>();
        Collector jobs = new Collector(mongo.collection(), name -> others.computeIfAbsent(name, n -> {
            MongoCollection<Document> c = client.getDatabase("llm").getCollection(n);
            CollectionIndexes i = new CollectionIndexes(c);
            i.ensure();
            return new Collector.Target(c, i);
        }), "chatglm2_6b_int4", null, "unused.dlq", camel);
        publish(0, 10);
        Channel a = channel();
        List<Collector.Pending> batch = held(a, 10).stream()
                .map(p -> new Collector.Pending(p.pid(), p.document(), p.channel(), p.deliveryTag(), "t11c_other_job")).toList();

        Mongo.stop();
        CompletableFuture<Integer> write = CompletableFuture.supplyAsync(() -> jobs.write(batch));
        Thread.sleep(3_000); // the index check fails (server selection 1 s) and is tried again
        assertThat(write).as("waiting for MongoDB, not given up").isNotDone();

        Mongo.start(MONGO_PORT);
        assertThat(write.get(60, TimeUnit.SECONDS)).isEqualTo(10);
        assertThat(client.getDatabase("llm").getCollection("t11c_other_job").countDocuments()).isEqualTo(10);
        a.close();
        assertThat(broker.count(RESULTS)).as("every held result acknowledged").isZero();
    }

    @Test
    void a_mongodb_client_closed_by_a_forced_stop_sends_the_batch_back_instead_of_dead_lettering_it() throws Exception {
        // the shutdown timeout expired while the write waited: Camel stopped and the process's MongoDB client closed, so
        // the driver throws IllegalStateException ("state should be: open"), not a MongoException; a real publisher
        // would dead-letter every result of the batch if that were taken for a document MongoDB cannot take
        String dlq = RESULTS + ".dlq";
        broker.purge(dlq);
        org.springframework.amqp.rabbit.connection.CachingConnectionFactory connections =
                new org.springframework.amqp.rabbit.connection.CachingConnectionFactory("127.0.0.1", 5672);
        connections.setPublisherConfirmType(org.springframework.amqp.rabbit.connection.CachingConnectionFactory.ConfirmType.CORRELATED);
        connections.setPublisherReturns(true);
        try {
            io.llmbatch.rabbit.ConfirmingPublisher publisher = new io.llmbatch.rabbit.ConfirmingPublisher(connections.getPublisherConnectionFactory(),
                    new org.springframework.amqp.rabbit.core.RabbitAdmin(connections), 16, 5000, q -> java.util.Map.of(), 1 << 20);
            MongoClient closing = MongoClients.create("mongodb://127.0.0.1:" + MONGO_PORT + "/?serverSelectionTimeoutMS=1000");
            Collector stopping = new Collector(closing.getDatabase("llm").getCollection("company_intro"), "chatglm2_6b_int4",
                    publisher, dlq, camel);
            publish(0, 5);
            Channel a = channel();
            List<Collector.Pending> batch = held(a, 5);
            camel.stop();
            closing.close();
            assertThatThrownBy(() -> stopping.write(batch)).isInstanceOf(IllegalStateException.class);
            await().atMost(Duration.ofSeconds(5)).until(() -> broker.count(RESULTS) == 5);
            assertThat(broker.count(dlq)).as("nothing dead-lettered").isZero();
        } finally {
            connections.destroy();
            broker.reset(dlq);
        }
    }
}
