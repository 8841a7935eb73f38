import java.nio.charset.StandardCharsets;

import com.rabbitmq.client.AMQP;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.ConnectionFactory;

/**
 * Benchmark driver for bench/worker.sh: purges the bench queues, publishes N seed tasks (persistent, confirmed)
 * to the task queue, then waits until the result queue holds N messages (or the timeout passes) and prints
 * one line: tasks, results, dead letters, seconds from the first publish to the last result, tasks/s.
 * Compiled and run against target/llm-batch.jar (which carries the RabbitMQ client).
 *
 * usage: java WorkerLoad.java N tasksQueue resultsQueue dlq timeoutSeconds
 */
public class WorkerLoad {
    public static void main(String[] args) throws Exception {
        int n = Integer.parseInt(args[0]);
        String tasks = args[1], results = args[2], dlq = args[3];
        long timeoutMs = Long.parseLong(args[4]) * 1000;
        ConnectionFactory cf = new ConnectionFactory();
        cf.setUri(System.getenv().getOrDefault("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"));
        try (Connection c = cf.newConnection("bench worker-load"); Channel ch = c.createChannel()) {
            for (String q : new String[] { tasks, results, dlq }) {
                ch.queueDeclare(q, true, false, false, null);
                ch.queuePurge(q);
            }
            ch.confirmSelect();
            AMQP.BasicProperties props = new AMQP.BasicProperties.Builder().deliveryMode(2).contentType("application/json").build();
            long start = System.nanoTime();
            for (int i = 0; i < n; i++) {
                String task = "{\"reg_dt\":\"2015-03-02\",\"addr\":\"北京市海淀区中关村大街" + i + "号\",\"ent_table_name\":\"北京测试科技有限公司"
                              + i + "\"}";
                ch.basicPublish("", tasks, props.builder().messageId("bench-" + i).build(), task.getBytes(StandardCharsets.UTF_8));
                if (i % 500 == 499) {
                    ch.waitForConfirmsOrDie(30_000);
                }
            }
            ch.waitForConfirmsOrDie(30_000);
            long done;
            long got;
            long dead;
            while (true) {
                got = ch.queueDeclarePassive(results).getMessageCount();
                dead = ch.queueDeclarePassive(dlq).getMessageCount();
                done = System.nanoTime();
                if (got + dead >= n || (done - start) / 1_000_000 > timeoutMs) {
                    break;
                }
                Thread.sleep(10);
            }
            double secs = (done - start) / 1e9;
            System.out.printf("tasks=%d results=%d dead=%d seconds=%.2f rate=%.3f%n", n, got, dead, secs, got / secs);
        }
    }
}
