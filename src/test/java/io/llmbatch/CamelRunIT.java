package io.llmbatch;

import java.io.File;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.rabbitmq.client.GetResponse;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.llm.LlmSimulator;
import io.llmbatch.support.Broker;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;
import static org.awaitility.Awaitility.await;

/**
 * A worker machine started the Camel JBang way, with the README's command: {@code bin/camel run} (Camel JBang
 * 4.17.0 resolved by Maven, jbang/pom.xml) on the worker's route files, {@code application.properties} and
 * {@code target/llm-batch.jar} (the beans), prod profile, LLM simulator as the GPU's server. Tasks published to
 * the task queue come back as results; {@code camel ps}/{@code camel get route}/{@code camel top} see the worker
 * and only its routes; {@code camel stop} ends it.
 */
@ExtendWith(RabbitMQRequired.class)
class CamelRunIT {

    static final int MANAGEMENT_PORT = 19201;
    static final int LLM_PORT = 19211;
    static final int N = 20;
    static final String TASKS = "test_camelrun_tasks";
    static final String RESULTS = "test_camelrun_results";
    static final ObjectMapper JSON = new ObjectMapper();

    @Test
    void worker_role_runs_with_camel_run_and_camel_get_sees_it() throws Exception {
        assertThat(Path.of("target/llm-batch.jar")).as("the beans' jar; run the *IT tests with `mvn verify`").exists();
        long t0 = System.nanoTime();
        // bin/camel builds jbang/ (camel-jbang-core) on first use: outside the worker's clock
        Cli version = cli(Duration.ofMinutes(5), "version");
        assertThat(version.out).as(version.toString()).contains("Camel JBang version: 4.17.0");
        System.out.printf("CamelRunIT: `bin/camel version` (building the CLI if needed) took %d ms%n", ms(t0));

        List<String> command = new ArrayList<>(List.of(
                // the README's worker command ...
                "bin/camel", "run", "routes/worker.camel.yaml", "routes/llm-gateway.camel.yaml", "application.properties",
                "target/llm-batch.jar", "--profile=prod", "--prop=llmbatch.roles=worker",
                "--prop=camel.management.port=" + MANAGEMENT_PORT,
                // ... on this test's own queues, with a plain log
                "--prop=llmbatch.queue.tasks=" + TASKS, "--prop=llmbatch.queue.results=" + RESULTS,
                "--prop=llmbatch.queue.tasks-dlq=" + TASKS + ".dlq", "--logging-color=false"));
        Path log = Path.of("target", "camel-run-worker.log");
        try (Broker broker = new Broker().purge(TASKS, RESULTS, TASKS + ".dlq");
             LlmSimulator llm = LlmSimulator.start(LLM_PORT, 20, 4)) {
            ProcessBuilder builder = new ProcessBuilder(command).directory(new File(".")).redirectErrorStream(true)
                    .redirectOutput(log.toFile());
            builder.environment().remove("MONGODB_URI");
            builder.environment().remove("CAMEL_MAIN_PROFILE");
            builder.environment().put("RABBITMQ_URL", RabbitMQRequired.URL);
            builder.environment().put("LLM_ENDPOINTS", llm.url() + ";slots=4");
            long started = System.nanoTime();
            Process worker = builder.start();
            String pid = String.valueOf(worker.pid()); // bin/camel execs java: the Camel process itself
            try {
                await("the worker's /observe/health/ready on " + MANAGEMENT_PORT + " (log: " + log + ")")
                        .atMost(Duration.ofSeconds(120)).pollInterval(Duration.ofMillis(250))
                        .failFast("`camel run` exited: " + log, () -> !worker.isAlive())
                        .until(() -> ready(MANAGEMENT_PORT));
                long up = ms(started);

                long published = System.nanoTime();
                List<byte[]> tasks = new ArrayList<>();
                Set<String> companies = new HashSet<>();
                for (int i = 0; i < N; i++) {
                    String company = "骆驼命令测试公司" + i;
                    companies.add(company);
                    tasks.add(("{\"reg_dt\": \"2015-03-02\", \"addr\": \"北京市海淀区\", \"ent_table_name\": \"" + company + "\"}")
                            .getBytes(StandardCharsets.UTF_8));
                }
                broker.publishAll(TASKS, tasks);
                await("results on " + RESULTS).atMost(Duration.ofSeconds(30)).until(() -> broker.count(RESULTS) >= N);
                long processed = ms(published);
                List<GetResponse> results = broker.drain(RESULTS);
                Set<String> answered = new HashSet<>();
                for (GetResponse r : results) {
                    JsonNode result = JSON.readTree(r.getBody());
                    assertThat(result.path("task").path("ent_table_name").asText()).isEqualTo(result.path("company").asText());
                    assertThat(result.path("intro").asText()).contains(result.path("company").asText()).contains("SIMULATED");
                    assertThat(result.path("backend").asText()).isEqualTo(llm.url());
                    answered.add(result.path("company").asText());
                }
                assertThat(answered).isEqualTo(companies);
                assertThat(results).hasSize(N);
                assertThat(broker.count(TASKS + ".dlq")).isZero();

                // camel ps / get route / top talk to the worker through ~/.camel (camel-cli-connector, on camel run's class
                // path), which the worker rewrites every 2 s after the last write is done: on a loaded machine the first
                // look can still show the status written while it was starting (CI: "Starting", TOTAL 0, at 6 s)
                Cli[] ps = new Cli[1];
                await("`camel ps` shows " + pid + " Running").atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofSeconds(1))
                        .untilAsserted(() -> {
                            ps[0] = cli(Duration.ofSeconds(60), "ps");
                            assertThat(ps[0].lines()).as(ps[0].toString())
                                    .anyMatch(l -> l.trim().startsWith(pid + " ") && l.contains("Running"));
                        });
                Cli[] seen = new Cli[1];
                await("`camel get route` counts all " + N + " tasks").atMost(Duration.ofSeconds(60))
                        .pollInterval(Duration.ofSeconds(1)).untilAsserted(() -> {
                            Cli routes = cli(Duration.ofSeconds(60), "get", "route", pid);
                            seen[0] = routes;
                            List<String> mine = routes.lines().stream().filter(l -> l.trim().startsWith(pid + " ")).toList();
                            // worker-tasks, worker-check-output, llm-gateway, llm-backend-1 (its one LLM server),
                            // llm-request-chatglm, llm-request-openai
                            assertThat(mine).as("only the worker role's routes: " + routes).hasSize(6);
                            assertThat(total(routes, "worker-tasks")).as(routes.toString()).isEqualTo(N);
                            assertThat(total(routes, "llm-gateway")).as(routes.toString()).isEqualTo(N);
                            assertThat(total(routes, "llm-backend-1")).as(routes.toString()).isEqualTo(N);
                        });
                Cli routes = seen[0];
                Cli top = cli(Duration.ofSeconds(60), "top", "route", pid);
                assertThat(top.out).as(top.toString()).contains("worker-tasks").contains("llm-gateway");
                System.out.println("CamelRunIT: `camel get route " + pid + "`:\n" + routes.out);

                long stopping = System.nanoTime();
                Cli stop = cli(Duration.ofSeconds(60), "stop", pid);
                assertThat(stop.out).as(stop.toString()).contains("Shutting down Camel integration (PID: " + pid + ")");
                assertThat(worker.waitFor(45, TimeUnit.SECONDS)).as("worker stopped by `camel stop` (log: " + log + ")").isTrue();
                System.out.printf("CamelRunIT: worker up in %d ms, %d tasks processed in %d ms, stopped in %d ms, whole test %d ms%n",
                        up, N, processed, ms(stopping), ms(t0));
                assertThat(Files.readString(log)).contains("Routes startup (total:6 templates:1)").contains("Started worker-tasks")
                        .contains("Started llm-gateway").contains("Started llm-backend-1");
            } finally {
                if (worker.isAlive()) {
                    worker.destroy();
                    if (!worker.waitFor(30, TimeUnit.SECONDS)) {
                        worker.destroyForcibly().waitFor();
                    }
                }
            }
        }
    }

    /** The TOTAL column of a route's line in `camel get route` (the fourth column after STATUS). */
    static long total(Cli routes, String routeId) {
        for (String line : routes.lines()) {
            List<String> cols = Arrays.asList(line.trim().split("\\s+"));
            if (cols.contains(routeId) && cols.contains("Started")) {
                return Long.parseLong(cols.get(cols.indexOf("Started") + 4));
            }
        }
        return fail("route " + routeId + " not listed: " + routes);
    }

    static boolean ready(int port) {
        try {
            HttpResponse<String> r = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
                    URI.create("http://127.0.0.1:" + port + "/observe/health/ready")).timeout(Duration.ofSeconds(2)).build(),
                    HttpResponse.BodyHandlers.ofString());
            return r.statusCode() == 200 && r.body().contains("UP");
        } catch (IOException e) {
            return false;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    /** The output of one `bin/camel ...` command. */
    record Cli(List<String> args, int exit, String out) {
        List<String> lines() {
            return out.lines().toList();
        }

        @Override
        public String toString() {
            return "`bin/camel " + String.join(" ", args) + "` exited " + exit + ":\n" + out;
        }
    }

    static Cli cli(Duration timeout, String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of("bin/camel"));
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).directory(new File(".")).redirectErrorStream(true).start();
        // read while it runs: a full pipe would block it
        byte[][] out = new byte[1][];
        Thread reader = new Thread(() -> {
            try {
                out[0] = p.getInputStream().readAllBytes();
            } catch (IOException e) {
                out[0] = ("(output unreadable: " + e + ")").getBytes(StandardCharsets.UTF_8);
            }
        });
        reader.start();
        if (!p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
            p.destroyForcibly().waitFor();
            reader.join(5_000);
            return fail("`bin/camel " + String.join(" ", args) + "` did not finish within " + timeout);
        }
        reader.join(5_000);
        Cli cli = new Cli(List.of(args), p.exitValue(), new String(out[0], StandardCharsets.UTF_8));
        assertThat(cli.exit).as(cli.toString()).isZero();
        return cli;
    }

    static long ms(long since) {
        return (System.nanoTime() - since) / 1_000_000;
    }
}
