package io.llmbatch;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;

import org.apache.camel.util.FileUtil;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.AppProcess;
import io.llmbatch.support.Broker;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

/**
 * Editing a route file of a running worker changes what it does without a restart; a broken edit is refused with
 * a warning and the routes that ran before keep running. The node runs in a copy of the repo's files.
 */
@ExtendWith(RabbitMQRequired.class)
class LiveReloadIT {

    static final Path DIR = Path.of("target/it-reload");
    static final String TASKS = "reload-it.tasks";
    static final String RESULTS = "reload-it.results";

    @Test
    void an_edited_route_is_live_and_a_broken_edit_keeps_the_old_routes() throws Exception {
        FileUtil.removeDir(DIR.toFile());
        Files.createDirectories(DIR);
        for (String dir : new String[] { "routes", "prompts" }) {
            Files.createDirectories(DIR.resolve(dir));
            try (var files = Files.list(Path.of(dir))) {
                for (Path f : files.toList()) {
                    Files.copy(f, DIR.resolve(dir).resolve(f.getFileName()));
                }
            }
        }
        Files.copy(Path.of("application.properties"), DIR.resolve("application.properties"));
        Path route = DIR.resolve("routes/worker.camel.yaml");
        try (Broker broker = new Broker().reset(TASKS, RESULTS, TASKS + ".dlq");
             AppProcess worker = AppProcess.startIn(DIR, "reload-worker", Map.of("RABBITMQ_URL", RabbitMQRequired.URL),
                     "llmbatch.roles=worker", "llmbatch.queue.tasks=" + TASKS, "llmbatch.queue.results=" + RESULTS,
                     "llmbatch.queue.tasks-dlq=" + TASKS + ".dlq", "llmbatch.embedded.llm-port=18821")) {
            await().atMost(Duration.ofSeconds(60)).until(() -> Files.readString(worker.log()).contains("Routes startup"));
            assertThat(processed(broker, "before")).isTrue();

            String original = Files.readString(route);
            String anchor = "        - bean:\n            id: render-prompt\n";
            assertThat(original).contains(anchor);
            Files.writeString(route, original.replace(anchor,
                    "        - log:\n            message: \"EDITED ROUTE sees ${body.get('ent_table_name')}\"\n" + anchor));
            await().atMost(Duration.ofSeconds(30)).until(() -> Files.readString(worker.log()).contains("Routes reloaded"));
            assertThat(processed(broker, "after-edit")).isTrue();
            assertThat(Files.readString(worker.log())).contains("EDITED ROUTE sees after-edit");

            String good = Files.readString(route);
            Files.writeString(route, good.replace("method: parseTask", "method: [parseTask"));
            await().atMost(Duration.ofSeconds(30)).until(() -> Files.readString(worker.log()).contains("Error reloading routes"));
            assertThat(processed(broker, "after-broken-edit")).as("the old routes still run").isTrue();
            assertThat(Files.readString(worker.log())).contains("EDITED ROUTE sees after-broken-edit");
            assertThat(worker.isAlive()).isTrue();
        }
    }

    /** Publishes one task for {@code company} and waits for its result. */
    private static boolean processed(Broker broker, String company) throws Exception {
        broker.publish(TASKS, ("{\"reg_dt\":\"2020-01-01\",\"addr\":\"x\",\"ent_table_name\":\"" + company + "\"}")
                .getBytes(StandardCharsets.UTF_8), company);
        StringBuilder seen = new StringBuilder();
        await().atMost(Duration.ofSeconds(30)).until(() -> {
            broker.drain(RESULTS).forEach(r -> seen.append(new String(r.getBody(), StandardCharsets.UTF_8)));
            return seen.indexOf("\"company\":\"" + company + "\"") >= 0;
        });
        return true;
    }
}
