package io.llmbatch.rabbit;

import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.rabbitmq.client.GetResponse;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.llm.LlmSimulator;
import io.llmbatch.support.AppProcess;
import io.llmbatch.support.Broker;
import io.llmbatch.support.LatencyProxy;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * A worker's connection to the broker is lost (a proxy between them resets it, as a WAN link or a dying cluster node
 * does) while the worker holds prefetched tasks. The broker requeues every unacknowledged task at once; the worker must
 * not spend GPU time on the copies it still holds on the dead channel, whose acknowledgements can never arrive.
 */
@ExtendWith(RabbitMQRequired.class)
class LostConnectionIT {

    static final String TASKS = "t15_lost_tasks";
    static final String RESULTS = "t15_lost_results";
    static final int N = 40;

    @Test
    void tasks_prefetched_on_a_lost_connection_are_not_sent_to_the_llm() throws Exception {
        URI broker = URI.create(RabbitMQRequired.URL);
        try (Broker amqp = new Broker().reset(TASKS, RESULTS, TASKS + ".dlq");
             LlmSimulator sim = LlmSimulator.start(20451, 300, 1);
             LatencyProxy proxy = LatencyProxy.start(new InetSocketAddress("127.0.0.1", 20450),
                     new InetSocketAddress(broker.getHost(), broker.getPort() > 0 ? broker.getPort() : 5672), 0, 0, 0)) {
            String viaProxy = RabbitMQRequired.URL.replaceFirst("@[^/]+", "@127.0.0.1:" + proxy.port());
            try (AppProcess worker = AppProcess.startWithEnvironment("lost-connection-worker", Map.of(),
                    "llmbatch.rabbitmq.url=" + viaProxy, "llmbatch.roles=worker", "llmbatch.queue.tasks=" + TASKS,
                    "llmbatch.queue.results=" + RESULTS, "llmbatch.queue.tasks-dlq=" + TASKS + ".dlq",
                    "llmbatch.llm.endpoints=" + sim.url() + ";slots=1", "llmbatch.worker.concurrency=1",
                    "llmbatch.worker.prefetch=20", "camel.management.port=20452", "camel.main.routesReloadEnabled=false")) {
                await().atMost(Duration.ofSeconds(60)).until(() -> amqp.consumers(TASKS) == 1);
                List<byte[]> bodies = new ArrayList<>();
                for (int i = 0; i < N; i++) {
                    bodies.add(("{\"reg_dt\":\"2015-03-02\",\"addr\":\"北京\",\"ent_table_name\":\"断线测试公司" + i + "\"}")
                            .getBytes(StandardCharsets.UTF_8));
                }
                amqp.publishAll(TASKS, bodies);
                // the worker holds 20 tasks: one at the LLM, 19 waiting in its client for their turn
                await().atMost(Duration.ofSeconds(30)).until(() -> sim.served() >= 3);
                proxy.cutAll();
                Set<String> companies = new HashSet<>();
                ObjectMapper json = new ObjectMapper();
                await().atMost(Duration.ofSeconds(90)).pollInterval(Duration.ofMillis(200)).until(() -> {
                    for (GetResponse r : amqp.drain(RESULTS)) {
                        companies.add(json.readTree(r.getBody()).path("company").asText());
                    }
                    return companies.size() == N;
                });
            }
            long calls = sim.servedPerPrompt().values().stream().mapToLong(Long::longValue).sum();
            assertThat(sim.servedPerPrompt()).as("every task reached the LLM").hasSize(N);
            // only the task at the LLM when the connection went is done twice (its acknowledgement was lost with it)
            assertThat(calls - N).as("LLM calls made again after the connection was lost").isLessThanOrEqualTo(1);
        } finally {
            try (Broker amqp = new Broker()) {
                amqp.reset(TASKS, RESULTS, TASKS + ".dlq");
            }
        }
    }
}
