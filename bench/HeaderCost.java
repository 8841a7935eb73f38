import com.rabbitmq.client.AMQP;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.ConnectionFactory;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.UUID;

/**
 * What RabbitMQ spends on a task message's headers: the same persistent task body (a seed task with its
 * {@code _llmbatch} envelope, about 900 bytes) published with confirms (a window of 1,000) with no headers, with only
 * {@code x-llmbatch-source}, and with the source plus the two headers Spring AMQP's RabbitTemplate adds to a
 * mandatory publish with correlation data ({@code spring_listener_return_correlation},
 * {@code spring_returned_message_correlation}), i.e. what an ingest node sends. The variants alternate, each on a
 * fresh queue; the broker's CPU comes from /proc/&lt;beam.smp&gt;/stat. Needs RabbitMQ on 127.0.0.1:5672, run on its machine.
 *
 * usage: java -cp "$(ls ~/.m2/repository/com/rabbitmq/amqp-client/5.22.0/*.jar):$(ls ~/.m2/repository/org/slf4j/slf4j-api/2.0.17/*.jar)" \
 *          bench/HeaderCost.java [messages=56000] [rounds=3]
 */
public class HeaderCost {

    public static void main(String[] args) throws Exception {
        int n = args.length > 0 ? Integer.parseInt(args[0]) : 56_000;
        int rounds = args.length > 1 ? Integer.parseInt(args[1]) : 3;
        long beam = ProcessHandle.allProcesses()
                .filter(p -> p.info().command().orElse("").endsWith("beam.smp"))
                .mapToLong(ProcessHandle::pid).findFirst()
                .orElseThrow(() -> new IllegalStateException("no beam.smp process: is RabbitMQ running here?"));
        byte[] body = ("{\"reg_dt\":\"2015-03-02\",\"addr\":\"北京市海淀区中关村大街1号\",\"ent_table_name\":\"北京测试科技有限公司\","
                       + "\"_llmbatch\":{\"job\":\"company_intro\",\"request\":\"{\\\"model\\\":\\\"chatglm2_6b_int4\\\",\\\"prompt\\\":"
                       + "\\\"成立日期:2015-03-02\\\\n注册地址:北京市海淀区中关村大街1号\\\\n公司名称:北京测试科技有限公司\\\\n"
                       + "请根据以上信息写一段100到200字的公司简介。\\\"}\",\"request_hash\":\"" + "5f1c".repeat(16) + "\","
                       + "\"prompt_version\":\"8d0e41c2a7b3\",\"pid\":\"" + "3b8e".repeat(8) + "\",\"collection\":\"company_intro\","
                       + "\"model\":\"chatglm2_6b_int4\",\"output_field\":\"intro\",\"company_field\":\"ent_table_name\","
                       + "\"checks\":\"{\\\"min_chars\\\":100,\\\"max_chars\\\":200,\\\"refuse_finish_reasons\\\":[\\\"length\\\"]}\"}}")
                .getBytes(StandardCharsets.UTF_8);
        ConnectionFactory cf = new ConnectionFactory();
        cf.setHost("127.0.0.1");
        String uuid = UUID.randomUUID().toString();
        String[] variants = { "none", "source", "source+spring" };
        System.out.printf("%d messages of %d bytes, persistent, confirms (window 1,000), beam.smp pid %d%n", n, body.length, beam);
        System.out.println("| round | headers | broker CPU | wall |");
        System.out.println("|---|---|---|---|");
        try (Connection c = cf.newConnection()) {
            for (int round = 1; round <= rounds; round++) {
                for (String v : variants) {
                    String q = "bench_header_cost";
                    try (Channel ch = c.createChannel()) {
                        ch.queueDelete(q);
                        ch.queueDeclare(q, true, false, false, null);
                        ch.confirmSelect();
                        long cpu0 = cpu(beam);
                        long t0 = System.nanoTime();
                        for (int i = 0; i < n; i++) {
                            Map<String, Object> h = null;
                            if (!v.equals("none")) {
                                h = new LinkedHashMap<>();
                                h.put("x-llmbatch-source", "http:/send_workq_message/#" + i);
                                if (v.equals("source+spring")) {
                                    h.put("spring_listener_return_correlation", uuid);
                                    h.put("spring_returned_message_correlation", Integer.toString(i));
                                }
                            }
                            AMQP.BasicProperties p = new AMQP.BasicProperties.Builder().contentType("application/json")
                                    .contentEncoding("UTF-8").deliveryMode(2).messageId("id-" + i).appId("llm-batch").headers(h).build();
                            ch.basicPublish("", q, true, p, body);
                            if ((i + 1) % 1000 == 0) {
                                ch.waitForConfirmsOrDie(60_000);
                            }
                        }
                        ch.waitForConfirmsOrDie(60_000);
                        double wall = (System.nanoTime() - t0) / 1e9;
                        double cpu = (cpu(beam) - cpu0) / 100.0;
                        System.out.printf("| %d | %s | %.2f s | %.2f s |%n", round, v, cpu, wall);
                        ch.queueDelete(q);
                    }
                }
            }
        }
    }

    /** utime + stime of a process, in clock ticks (1/100 s). */
    static long cpu(long pid) throws Exception {
        String stat = Files.readString(Path.of("/proc/" + pid + "/stat"));
        String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
        return Long.parseLong(f[11]) + Long.parseLong(f[12]);
    }
}
