package io.llmbatch.llm;

import java.net.ServerSocket;
import java.util.List;

import org.apache.camel.health.HealthCheck;
import org.apache.camel.impl.DefaultCamelContext;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import io.llmbatch.ops.HealthChecks;

import static org.assertj.core.api.Assertions.assertThat;

/** Readiness of a worker's LLM backends and the start-up check of the models OpenAI-compatible servers serve. */
class LlmHealthTest {

    LlmSimulator sim;

    @AfterEach
    void stop() {
        if (sim != null) {
            sim.close();
        }
    }

    static LlmBackends backends(String endpoints) {
        return new LlmBackends(new DefaultCamelContext(), Endpoint.parseAll(endpoints, "chatglm"),
                new LlmBackends.Settings("test-model", "", 500, 2000, 1000, 200, 1000, 100, 5));
    }

    static HealthCheck check(LlmBackends backends) {
        HealthCheck check = HealthChecks.llm(backends);
        ((org.apache.camel.CamelContextAware) check).setCamelContext(new DefaultCamelContext());
        return check;
    }

    @Test
    void ready_while_one_backend_answers_not_ready_when_none_does() throws Exception {
        int dead;
        try (ServerSocket s = new ServerSocket(0)) {
            dead = s.getLocalPort(); // closed again: nothing listens there
        }
        sim = LlmSimulator.start(0, 0, 1);
        LlmBackends backends = backends(sim.url() + ",http://127.0.0.1:" + dead);
        HealthCheck check = check(backends);

        HealthCheck.Result one = check.call();
        assertThat(one.getState()).isEqualTo(HealthCheck.State.UP);
        assertThat(one.getDetails()).containsEntry("up", "1 of 2")
                .containsEntry("http://127.0.0.1:" + dead, "unreachable (its port refuses connections)");

        sim.close(); // a worker that has sent no request since: no call has failed yet
        HealthCheck.Result none = check.call();
        assertThat(none.getState()).isEqualTo(HealthCheck.State.DOWN);
        assertThat(none.getMessage()).hasValueSatisfying(m -> assertThat(m).contains("no LLM backend usable"));
    }

    @Test
    void a_backend_taken_out_says_why_in_readiness() throws Exception {
        sim = LlmSimulator.start(0, 0, 1);
        LlmBackends backends = backends(sim.url());
        Backend b = backends.all().get(0);
        b.misconfigured = sim.url() + " answered HTTP 401: it wants an API key";
        HealthCheck.Result r = check(backends).call();
        assertThat(r.getState()).isEqualTo(HealthCheck.State.DOWN);
        assertThat(r.getDetails().get(sim.url()).toString()).startsWith("taken out, misconfigured:").contains("HTTP 401");
    }

    @Test
    void at_start_a_server_that_does_not_serve_the_model_is_named_with_the_models_it_has() throws Exception {
        sim = LlmSimulator.start(0, 0, 1).models("Qwen/Qwen2.5-7B-Instruct", "llama3");
        List<String> problems = backends(sim.url() + ";api=openai").checkModels();
        assertThat(problems).singleElement().asString().contains("'test-model'", "[Qwen/Qwen2.5-7B-Instruct, llama3]");

        assertThat(backends(sim.url() + ";api=openai;model=llama3").checkModels()).isEmpty();
        sim.apiKey("k");
        assertThat(backends(sim.url() + ";api=openai;model=llama3").checkModels()).singleElement().asString().contains("HTTP 401");
    }

    @Test
    void endpoint_list_errors_are_clear() {
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> Endpoint.parseAll("http://h:1;slot=2", "chatglm"))
                .hasMessageContaining("unknown option 'slot'");
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> Endpoint.parseAll("h:1", "chatglm"))
                .hasMessageContaining("not an http(s):// URL");
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> Endpoint.parseAll("", "chatglm"))
                .hasMessageContaining("llmbatch.llm.endpoints is empty");
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> Endpoint.parseAll("http://h:1", "gpt"))
                .hasMessageContaining("chatglm or openai");
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> Endpoint.parseAll("http://h:1;header.Authorization=Bearer x", "openai"))
                .hasMessageContaining("from the environment");
        // a key some servers take in a header of their own (api-key, x-api-key) is not shown when another option is wrong
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> Endpoint.parseAll("http://h:1;header.api-key=sk-secret1;slots=x", "openai"))
                .hasMessageContaining("slots must be a whole number", "header.api-key=***").hasMessageNotContaining("sk-secret1");
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> Endpoint.parseAll("http://h:1;header.x-api-key=sk-secret2;slot=2", "openai"))
                .hasMessageContaining("unknown option 'slot'").hasMessageNotContaining("sk-secret2");
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> Endpoint.parseAll("http://u:secret@h:1", "openai"))
                .hasMessageContaining("api-key-env").hasMessageNotContaining("secret");
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> backends("http://h:1;api-key-env=LLMBATCH_NO_SUCH_VAR"))
                .hasMessageContaining("LLMBATCH_NO_SUCH_VAR, which is not set");
        Endpoint e = Endpoint.parseAll("http://h:1/v1;api=openai;slots=4;rpm=60;tpm=90000;model=m;header.X-A=b", "chatglm").get(0);
        assertThat(e.completionUrl()).isEqualTo("http://h:1/v1/chat/completions");
        assertThat(e.slots()).isEqualTo(4);
        assertThat(e.rpm()).isEqualTo(60);
        assertThat(e.tpm()).isEqualTo(90000);
        assertThat(e.headers()).containsEntry("X-A", "b");
    }
}
