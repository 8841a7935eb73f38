package io.llmbatch.support;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.rabbitmq.client.GetResponse;

import static org.awaitility.Awaitility.await;

/**
 * A worker test's three queues ({@code <prefix>_tasks}, {@code _results}, {@code _tasks.dlq}) on the real broker:
 * publish seed-format tasks, wait for what the worker made of them. Queues are purged, never deleted, so the
 * worker's consumers stay on them.
 */
public final class WorkerQueues implements AutoCloseable {

    static final ObjectMapper JSON = new ObjectMapper();

    public final Broker broker;
    public final String tasks;
    public final String results;
    public final String dlq;
    private final List<JsonNode> got = new ArrayList<>();
    private final List<GetResponse> dead = new ArrayList<>();

    public WorkerQueues(String prefix) throws Exception {
        this.broker = new Broker();
        this.tasks = prefix + "_tasks";
        this.results = prefix + "_results";
        this.dlq = prefix + "_tasks.dlq";
    }

    /** The properties a {@code @CamelMainTest} needs for these queues. */
    public static String[] properties(String prefix) {
        return new String[] { "llmbatch.queue.tasks=" + prefix + "_tasks", "llmbatch.queue.results=" + prefix + "_results",
                              "llmbatch.queue.tasks-dlq=" + prefix + "_tasks.dlq" };
    }

    /** Empties the queues (declaring missing ones as classic durable queues). */
    public WorkerQueues purge() throws Exception {
        for (String q : List.of(tasks, results, dlq)) {
            if (broker.count(q) >= 0) {
                broker.channel().queuePurge(q);
            } else {
                broker.declare(q, null);
            }
        }
        return this;
    }

    /** Purges the queues of {@code prefix} at once (from a test class's static initializer, before its worker starts). */
    public static void purgeNow(String prefix) {
        try (WorkerQueues q = new WorkerQueues(prefix)) {
            q.purge();
        } catch (Exception e) {
            throw new IllegalStateException("cannot purge the " + prefix + " queues (is RabbitMQ running?)", e);
        }
    }

    /** A seed-format task. */
    public static String task(String company) {
        return "{\"reg_dt\": \"2015-03-02\", \"addr\": \"北京市海淀区中关村大街1号\", \"ent_table_name\": \"" + company + "\"}";
    }

    /** The prompt the seed's template makes of {@link #task}. */
    public static String prompt(String company) {
        return "成立日期:2015-03-02\n注册地址:北京市海淀区中关村大街1号\n" + company + "简介,字数在100-200字之间";
    }

    public void publish(String... companies) throws Exception {
        List<byte[]> bodies = new ArrayList<>();
        for (String c : companies) {
            bodies.add(task(c).getBytes(StandardCharsets.UTF_8));
        }
        broker.publishAll(tasks, bodies);
    }

    /** {@code n} companies named {@code prefix + i}. */
    public static String[] companies(String prefix, int n) {
        String[] all = new String[n];
        for (int i = 0; i < n; i++) {
            all[i] = prefix + i;
        }
        return all;
    }

    /** Waits until the worker consumes the task queue (its consumers are registered at the broker). */
    public void awaitConsumers() {
        await().atMost(Duration.ofSeconds(30)).ignoreExceptions().until(() -> broker.consumers(tasks) > 0);
    }

    /** Every result received so far, after waiting for at least {@code n}. */
    public List<JsonNode> awaitResults(int n, Duration within) {
        await().atMost(within).ignoreExceptions().until(() -> {
            for (GetResponse r : broker.drain(results)) {
                got.add(JSON.readTree(r.getBody()));
            }
            return got.size() >= n;
        });
        return List.copyOf(got);
    }

    /** Every dead letter received so far, after waiting for at least {@code n}. */
    public List<GetResponse> awaitDead(int n, Duration within) {
        await().atMost(within).ignoreExceptions().until(() -> {
            dead.addAll(broker.drain(dlq));
            return dead.size() >= n;
        });
        return List.copyOf(dead);
    }

    /** Results and dead letters that arrive within {@code millis} from now (after those already taken). */
    public int drainFor(long millis) throws Exception {
        Thread.sleep(millis);
        int before = got.size() + dead.size();
        for (GetResponse r : broker.drain(results)) {
            got.add(JSON.readTree(r.getBody()));
        }
        dead.addAll(broker.drain(dlq));
        return got.size() + dead.size() - before;
    }

    @Override
    public void close() throws Exception {
        broker.close();
    }
}
