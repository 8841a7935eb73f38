package io.llmbatch;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;

import org.apache.camel.util.FileUtil;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.llm.LlmSimulator;
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
        copyTheRepo();
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
            edit(route, original.replace(anchor,
                    "        - log:\n            message: \"EDITED ROUTE sees ${body.get('ent_table_name')}\"\n" + anchor));
            await().atMost(Duration.ofSeconds(30)).until(() -> Files.readString(worker.log()).contains("Routes reloaded"));
            assertThat(processed(broker, "after-edit")).isTrue();
            assertThat(Files.readString(worker.log())).contains("EDITED ROUTE sees after-edit");

            String good = Files.readString(route);
            edit(route, good.replace("method: parseTask", "method: [parseTask"));
            await().atMost(Duration.ofSeconds(30)).until(() -> Files.readString(worker.log()).contains("Error reloading routes"));
            assertThat(processed(broker, "after-broken-edit")).as("the old routes still run").isTrue();
            assertThat(Files.readString(worker.log())).contains("EDITED ROUTE sees after-broken-edit");
            assertThat(worker.isAlive()).isTrue();
        }
    }

    /**
     * The request an LLM server gets is declared in routes/llm-gateway.camel.yaml: a field added to a request route, or
     * a step added to the llm-backend template, reaches the server at the next task, and a broken edit of the template
     * keeps the backend routes made from the previous one.
     */
    @Test
    void an_edited_request_and_an_edited_backend_template_are_live() throws Exception {
        copyTheRepo();
        Path gateway = DIR.resolve("routes/llm-gateway.camel.yaml");
        try (Broker broker = new Broker().reset(TASKS, RESULTS, TASKS + ".dlq");
             LlmSimulator sim = LlmSimulator.start(18822, 0, 2);
             AppProcess worker = AppProcess.startIn(DIR, "reload-gateway", Map.of("RABBITMQ_URL", RabbitMQRequired.URL),
                     "llmbatch.roles=worker", "llmbatch.queue.tasks=" + TASKS, "llmbatch.queue.results=" + RESULTS,
                     "llmbatch.queue.tasks-dlq=" + TASKS + ".dlq", "llmbatch.llm.endpoints=" + sim.url() + ";api=openai;slots=2")) {
            await().atMost(Duration.ofSeconds(60)).until(() -> Files.readString(worker.log()).contains("Routes startup"));
            assertThat(processed(broker, "gateway-before")).isTrue();
            assertThat(last(sim).body().has("top_p")).isFalse();

            String original = Files.readString(gateway);
            String field = "                  max_tokens: {{llmbatch.llm.max-tokens}},\n";
            assertThat(original).contains(field);
            edit(gateway, original.replace(field, field + "                  top_p: 0.5,\n"));
            await().atMost(Duration.ofSeconds(30)).until(() -> Files.readString(worker.log()).contains("Routes reloaded"));
            assertThat(processed(broker, "gateway-top-p")).isTrue();
            assertThat(last(sim).body().get("top_p").asDouble()).as("the request route's edit is live").isEqualTo(0.5);

            String withTopP = Files.readString(gateway);
            String post = "                - to:\n                    id: \"{{name}}-post\"\n";
            assertThat(withTopP).contains(post);
            edit(gateway, withTopP.replace(post, "                - setHeader:\n                    name: X-Edited-Template\n"
                                                              + "                    constant: \"yes\"\n" + post));
            await().atMost(Duration.ofSeconds(30)).until(() -> Files.readString(worker.log()).contains("made again from the edited"));
            assertThat(processed(broker, "gateway-template")).isTrue();
            assertThat(last(sim).headers()).as("the template's edit is live in its backend routes").containsEntry("x-edited-template", "yes");
            assertThat(last(sim).body().get("top_p").asDouble()).isEqualTo(0.5);

            String good = Files.readString(gateway);
            String check = "              ref: llmAnswers\n              method: check\n";
            assertThat(good).contains(check);
            edit(gateway, good.replace(check, "              ref: noSuchBean\n              method: check\n")); // parses, cannot be built
            await().atMost(Duration.ofSeconds(30)).until(() -> Files.readString(worker.log()).contains("it keeps its previous version")
                                                           || Files.readString(worker.log()).contains("Error reloading routes"));
            assertThat(processed(broker, "gateway-after-broken")).as("the backend routes still run").isTrue();
            assertThat(last(sim).headers()).containsEntry("x-edited-template", "yes");
            assertThat(worker.isAlive()).isTrue();
        }
    }

    /** Replaces a route file as an editor does (a new file renamed into place), so the watcher never reads half of it. */
    private static void edit(Path file, String content) throws Exception {
        Path tmp = file.resolveSibling("." + file.getFileName() + ".tmp");
        Files.writeString(tmp, content);
        Files.move(tmp, file, java.nio.file.StandardCopyOption.REPLACE_EXISTING, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
    }

    private static LlmSimulator.Request last(LlmSimulator sim) {
        var all = sim.requests();
        return all.get(all.size() - 1);
    }

    private static void copyTheRepo() throws Exception {
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
