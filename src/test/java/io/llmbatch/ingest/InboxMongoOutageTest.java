package io.llmbatch.ingest;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import com.rabbitmq.client.GetResponse;
import org.apache.camel.test.main.junit5.CamelMainTest;
import org.apache.camel.util.FileUtil;
import org.bson.Document;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.jobs.JobStore;
import io.llmbatch.support.Broker;
import io.llmbatch.support.Mongo;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * An inbox file with the job's ledger in a MongoDB that is down: each block of the file has its stored results looked up
 * and its tasks entered before they are sent, and a MongoDB outage must make the file wait, as a broker outage does,
 * not fail it (moved to .failed/, its position forgotten, the rest never sent). MongoDB is mongo-java-server, stopped
 * and started again (its data kept).
 */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=ingest",
        "llmbatch.queue.tasks=t14_outage_tasks",
        "llmbatch.ingest.allowed-queues=t14_outage_tasks",
        "llmbatch.ingest.inbox=target/t14-inbox-outage",
        "llmbatch.ingest.poll-delay=200",
        "llmbatch.mongodb.uri=mongodb://127.0.0.1:" + InboxMongoOutageTest.MONGO_PORT + "/?serverSelectionTimeoutMS=1000",
        "camel.server.port=21307",
        "camel.main.routesReloadEnabled=false" })
class InboxMongoOutageTest {

    static final int MONGO_PORT = 21306;
    static final String TASKS = "t14_outage_tasks";
    static final Path INBOX = Path.of("target/t14-inbox-outage");
    static final ObjectMapper JSON = new ObjectMapper();

    static {
        Mongo.reset(MONGO_PORT);
    }

    Broker broker;
    MongoClient client;

    @BeforeEach
    void clean() throws Exception {
        Mongo.start(MONGO_PORT);
        broker = new Broker().reset(TASKS);
        client = MongoClients.create("mongodb://127.0.0.1:" + MONGO_PORT);
        client.getDatabase("llm").getCollection(JobStore.LEDGER).deleteMany(new Document());
        FileUtil.removeDir(INBOX.toFile());
        Files.createDirectories(INBOX);
    }

    @AfterEach
    void close() throws Exception {
        Mongo.start(MONGO_PORT);
        client.close();
        broker.close();
    }

    @Test
    void a_file_that_arrives_while_mongodb_is_down_waits_and_is_sent_whole_once_it_is_back() throws Exception {
        int rows = 1_200; // three blocks of the inbox's admission
        StringBuilder csv = new StringBuilder("reg_dt,addr,ent_table_name\n");
        for (int i = 0; i < rows; i++) {
            csv.append("2015-01-01,addr,停机公司").append(i).append('\n');
        }
        Mongo.stop();
        Path tmp = Files.createTempFile(INBOX.getParent(), "drop", ".tmp"); // written elsewhere, moved in at once
        Files.writeString(tmp, csv);
        Files.move(tmp, INBOX.resolve("outage.csv"), java.nio.file.StandardCopyOption.ATOMIC_MOVE);

        Thread.sleep(5_000); // several tries of 1 s each, with the backoff between them
        assertThat(INBOX.resolve("outage.csv")).as("the file waits in the inbox").exists();
        assertThat(INBOX.resolve(".failed")).as("nothing failed").doesNotExist();
        assertThat(broker.count(TASKS)).as("nothing sent unentered").isZero();

        Mongo.start(MONGO_PORT);
        await().atMost(Duration.ofSeconds(60)).until(() -> Files.exists(INBOX.resolve(".done/outage.csv")));
        Set<String> names = new HashSet<>();
        List<GetResponse> tasks = broker.drain(TASKS);
        for (GetResponse m : tasks) {
            names.add(JSON.readTree(m.getBody()).get("ent_table_name").asText());
        }
        assertThat(tasks).hasSize(rows);
        assertThat(names).hasSize(rows);
        assertThat(client.getDatabase("llm").getCollection(JobStore.LEDGER).countDocuments()).as("every task entered").isEqualTo(rows);
        assertThat(INBOX.resolve(".failed")).doesNotExist();
    }
}
