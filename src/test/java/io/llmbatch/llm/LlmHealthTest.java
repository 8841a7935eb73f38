package io.llmbatch.llm;

import java.net.ServerSocket;

import org.apache.camel.health.HealthCheck;
import org.apache.camel.impl.DefaultCamelContext;
import org.junit.jupiter.api.Test;

import io.llmbatch.ops.HealthChecks;

import static org.assertj.core.api.Assertions.assertThat;

/** The worker's readiness: ready while at least one LLM backend is reachable and not cooling down. */
class LlmHealthTest {

    @Test
    void ready_while_one_backend_answers_not_ready_when_none_does() throws Exception {
        int dead;
        try (ServerSocket s = new ServerSocket(0)) {
            dead = s.getLocalPort(); // closed again: nothing listens there
        }
        LlmSimulator sim = LlmSimulator.start(0, 0, 1);
        try {
            LlmGateway gateway = LlmGatewayTest.gateway(sim.url() + ",http://127.0.0.1:" + dead);
            HealthCheck check = check(gateway);

            HealthCheck.Result one = check.call();
            assertThat(one.getState()).isEqualTo(HealthCheck.State.UP);
            assertThat(one.getDetails()).containsEntry("up", "1 of 2")
                    .containsEntry("http://127.0.0.1:" + dead, "unreachable (its port refuses connections)");

            sim.close(); // a worker that has sent no request since: the gateway has seen no failure
            HealthCheck.Result none = check.call();
            assertThat(none.getState()).isEqualTo(HealthCheck.State.DOWN);
            assertThat(none.getMessage()).hasValueSatisfying(m -> assertThat(m).contains("every LLM backend is down"));
        } finally {
            sim.close();
        }
    }

    static HealthCheck check(LlmGateway gateway) {
        HealthCheck check = HealthChecks.llm(gateway);
        ((org.apache.camel.CamelContextAware) check).setCamelContext(new DefaultCamelContext());
        return check;
    }
}
