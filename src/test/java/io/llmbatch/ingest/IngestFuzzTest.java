package io.llmbatch.ingest;

import java.nio.charset.StandardCharsets;
import java.util.Random;

import org.apache.camel.test.main.junit5.CamelMainTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.Broker;
import io.llmbatch.support.Http;
import io.llmbatch.support.Http.Answer;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * 10,000 random and mutated bodies against both ingest endpoints (seeded, so a failure replays): the answer is
 * always JSON with a documented status (never a 5xx; 503 only if the broker fails, which it does not here), and
 * the queue ends up holding exactly the messages the 200 answers counted: nothing published unannounced.
 */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=ingest",
        "llmbatch.queue.tasks=test_fuzz_tasks",
        "llmbatch.queue.results=test_fuzz_results",
        "llmbatch.ingest.allowed-queues=test_fuzz_tasks",
        "llmbatch.ingest.max-body=20000",
        "llmbatch.ingest.inbox=target/test-inbox-fuzz",
        "camel.server.port=18185",
        "camel.main.routesReloadEnabled=false" })
class IngestFuzzTest {

    static final int PORT = 18185;
    static final String QUEUE = "test_fuzz_tasks";
    static final String[] SEEDS = {
            "{\"rabbit\": \"rabbit01\", \"routing_key\": \"test_fuzz_tasks\", \"durable\": true, \"queue\": \"test_fuzz_tasks\","
            + " \"message_list\": [{\"reg_dt\": \"2015-03-02\", \"addr\": \"北京\", \"ent_table_name\": \"甲公司\"},"
            + " {\"reg_dt\": \"2016-01-01\", \"addr\": \"上海\", \"ent_table_name\": \"乙公司\", \"task_id\": 7}]}",
            "[{\"reg_dt\": \"2015-03-02\", \"addr\": \"北京\", \"ent_table_name\": \"甲公司\"}, {\"reg_dt\": \"1\", \"addr\": \"a\", \"ent_table_name\": \"b\"}]",
            "{\"reg_dt\": \"2015\", \"addr\": \"a\", \"ent_table_name\": \"x\"}\n{\"reg_dt\": \"2016\", \"addr\": \"b\", \"ent_table_name\": \"y\"}\n" };
    /** Mostly what producers send; text/plain is what a cross-site page would send (415, nothing published). */
    static final String[] TYPES = { "application/json", "application/json; charset=utf-8", "application/x-ndjson", "text/plain" };
    static final String[] TOKENS = { "{", "}", "[", "]", ",", ":", "\"", "null", "true", "1e309", "-0", "\\u0000", "\\ud800",
                                     "\"queue\"", "\"message_list\"", "\"task_id\"", "{}", "[]", "\"\"", "\n", " ", "9999999999999999999999" };

    @Test
    void random_and_mutated_bodies_never_get_a_5xx_and_every_published_message_is_counted() throws Exception {
        Random rnd = new Random(20261125L);
        long counted = 0;
        int[] statuses = new int[600];
        try (Broker broker = new Broker().purge(QUEUE)) {
            for (int i = 0; i < 10_000; i++) {
                byte[] body = body(rnd);
                String path = rnd.nextBoolean() ? "/send_workq_message/" : "/api/tasks";
                String type = TYPES[rnd.nextInt(TYPES.length)];
                Answer answer = Http.post(PORT, path, body, "Content-Type", type);
                statuses[answer.status()]++;
                assertThat(answer.status()).as("body #%d on %s as %s: %s", i, path, type, new String(body, StandardCharsets.UTF_8))
                        .isIn(200, 400, 403, 413, 415);
                assertThat(answer.status() == 415).as("415 exactly for the types a browser sends cross-site: " + type)
                        .isEqualTo(type.startsWith("text/"));
                assertThat(answer.json().isObject()).isTrue();
                if (answer.status() == 200) {
                    counted += answer.json().get("published").asLong();
                } else {
                    assertThat(answer.json().get("error").asText()).isNotBlank();
                }
            }
            assertThat(statuses[200]).as("some bodies must get through for the count to mean anything").isGreaterThan(100);
            assertThat(statuses[400]).isGreaterThan(1000);
            assertThat(broker.count(QUEUE)).isEqualTo(counted);
        }
    }

    static byte[] body(Random rnd) {
        int kind = rnd.nextInt(10);
        if (kind == 0) { // pure noise, including invalid UTF-8
            byte[] b = new byte[rnd.nextInt(200)];
            rnd.nextBytes(b);
            return b;
        }
        if (kind == 1) { // deep nesting
            int depth = 1 + rnd.nextInt(3000);
            return ("[".repeat(depth) + "]".repeat(rnd.nextBoolean() ? depth : depth / 2)).getBytes(StandardCharsets.UTF_8);
        }
        if (kind == 2) { // over the size limit
            return ("[" + "{\"reg_dt\":\"1\",\"addr\":\"a\",\"ent_table_name\":\"x\"},".repeat(500) + "{}]").getBytes(StandardCharsets.UTF_8);
        }
        StringBuilder s = new StringBuilder(SEEDS[rnd.nextInt(SEEDS.length)]);
        int mutations = kind >= 7 ? 0 : 1 + rnd.nextInt(4); // some bodies stay valid
        for (int m = 0; m < mutations && s.length() > 0; m++) {
            int at = rnd.nextInt(s.length());
            switch (rnd.nextInt(4)) {
                case 0 -> s.deleteCharAt(at);
                case 1 -> s.insert(at, TOKENS[rnd.nextInt(TOKENS.length)]);
                case 2 -> s.setCharAt(at, (char) (32 + rnd.nextInt(0x4e00)));
                default -> s.setLength(at);
            }
        }
        return s.toString().getBytes(StandardCharsets.UTF_8);
    }
}
