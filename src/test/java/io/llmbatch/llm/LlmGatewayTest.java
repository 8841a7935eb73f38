package io.llmbatch.llm;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import io.llmbatch.llm.LlmExceptions.BackendsUnavailableException;
import io.llmbatch.llm.LlmExceptions.LlmRejectedException;
import io.llmbatch.llm.LlmGateway.Completion;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The gateway against simulators speaking the real protocols over HTTP. */
class LlmGatewayTest {

    static final String PROMPT = "成立日期:2015-03-02\n注册地址:北京\n北京测试科技有限公司简介,字数在100-200字之间";

    final List<LlmSimulator> sims = new ArrayList<>();

    @AfterEach
    void stop() {
        sims.forEach(LlmSimulator::close);
    }

    LlmSimulator sim(long latencyMs, int slots) throws Exception {
        LlmSimulator s = LlmSimulator.start(0, latencyMs, slots);
        sims.add(s);
        return s;
    }

    static LlmGateway gateway(String endpoints, long responseTimeoutMs, LlmGateway.Balance balance) {
        return new LlmGateway(Backend.parseAll(endpoints, "chatglm"), new LlmGateway.Settings("test-model", 256, 0.8, 2048,
                Duration.ofMillis(500), Duration.ofMillis(responseTimeoutMs), 5, 1_000, 50, balance));
    }

    static LlmGateway gateway(String endpoints) {
        return gateway(endpoints, 5_000, LlmGateway.Balance.LEAST_BUSY);
    }

    @Test
    void speaks_chatglm_api_py() throws Exception {
        LlmSimulator s = sim(0, 1);
        Completion c = gateway(s.url()).complete(PROMPT);
        assertThat(c.text()).isEqualTo(LlmSimulator.textFor(PROMPT)).contains("北京测试科技有限公司");
        assertThat(c.backend()).isEqualTo(s.url());
        assertThat(c.promptTokens()).isNull();
        assertThat(c.attempts()).isEqualTo(1);
    }

    @Test
    void speaks_openai_chat_completions_with_usage() throws Exception {
        LlmSimulator s = sim(0, 1);
        Completion c = gateway(s.url() + ";api=openai").complete(PROMPT);
        assertThat(c.text()).isEqualTo(LlmSimulator.textFor(PROMPT));
        assertThat(c.model()).isEqualTo("test-model");
        assertThat(c.promptTokens()).isEqualTo(PROMPT.length());
        assertThat(c.completionTokens()).isPositive();
    }

    @Test
    void least_busy_spreads_load_by_slots() throws Exception {
        LlmSimulator one = sim(40, 1);
        LlmSimulator three = sim(40, 3);
        LlmGateway gw = gateway(one.url() + ";slots=1," + three.url() + ";slots=3");
        ExecutorService pool = Executors.newFixedThreadPool(4);
        List<Future<Completion>> all = new ArrayList<>();
        for (int i = 0; i < 80; i++) {
            all.add(pool.submit(() -> gw.complete(PROMPT)));
        }
        for (Future<Completion> f : all) {
            f.get();
        }
        pool.shutdown();
        assertThat(one.served() + three.served()).isEqualTo(80);
        // 4 parallel tasks on 1 + 3 slots: the 3-slot server should take about three quarters
        assertThat(three.served()).isGreaterThanOrEqualTo(2 * one.served());
        assertThat(one.served()).isPositive();
    }

    @Test
    void fails_over_when_a_backend_dies_and_cools_it_down() throws Exception {
        LlmSimulator alive = sim(0, 1);
        LlmSimulator dead = sim(0, 1);
        LlmGateway gw = gateway(dead.url() + "," + alive.url());
        dead.close();
        for (int i = 0; i < 10; i++) {
            assertThat(gw.complete(PROMPT).backend()).isEqualTo(alive.url());
        }
        Backend deadBackend = gw.backends().get(0);
        assertThat(deadBackend.requests()).as("tried once, then skipped while cooling down").isEqualTo(1);
    }

    @Test
    void cooled_backend_gets_traffic_again_after_cool_down() throws Exception {
        LlmSimulator a = sim(0, 1);
        LlmSimulator b = sim(0, 1);
        int port = b.port();
        LlmGateway gw = gateway(a.url() + "," + b.url());
        b.close();
        gw.complete(PROMPT);
        gw.complete(PROMPT); // b is now cooling down
        LlmSimulator back = LlmSimulator.start(port, 0, 1);
        sims.add(back);
        Thread.sleep(1_100); // cool-down is 1 s
        for (int i = 0; i < 6; i++) {
            gw.complete(PROMPT);
        }
        assertThat(back.served()).isPositive();
    }

    @Test
    void a_hang_is_cut_by_the_response_timeout_and_the_task_goes_elsewhere() throws Exception {
        LlmSimulator hangs = sim(0, 4).hangRate(1.0);
        LlmSimulator ok = sim(0, 1);
        LlmGateway gw = gateway(hangs.url() + "," + ok.url(), 300, LlmGateway.Balance.ROUND_ROBIN);
        long start = System.nanoTime();
        for (int i = 0; i < 4; i++) {
            assertThat(gw.complete(PROMPT).backend()).isEqualTo(ok.url());
        }
        assertThat(hangs.hung()).isEqualTo(1); // cut once, then cooled down
        assertThat((System.nanoTime() - start) / 1e9).isLessThan(5);
    }

    @Test
    void server_errors_are_retried_on_another_backend() throws Exception {
        LlmSimulator failing = sim(0, 1).failRate(1.0);
        LlmSimulator ok = sim(0, 1);
        LlmGateway gw = gateway(failing.url() + "," + ok.url(), 5_000, LlmGateway.Balance.ROUND_ROBIN);
        io.micrometer.core.instrument.simple.SimpleMeterRegistry meters = new io.micrometer.core.instrument.simple.SimpleMeterRegistry();
        Runnable unpublish = io.llmbatch.ops.Meters.publishTo(meters);
        try {
            for (int i = 0; i < 6; i++) {
                Completion c = gw.complete(PROMPT);
                assertThat(c.backend()).isEqualTo(ok.url());
            }
            assertThat(failing.failed()).isPositive();
            // on /observe/metrics: every 500 is a retry and an "error" call of the failing backend
            assertThat(meters.get("llmbatch.retries").tag("kind", "llm").counter().count()).isEqualTo(failing.failed());
            assertThat(meters.get("llmbatch.llm.latency").tag("backend", failing.url()).tag("outcome", "error").timer().count())
                    .isEqualTo(failing.failed());
            assertThat(meters.get("llmbatch.llm.latency").tag("backend", ok.url()).tag("outcome", "ok").timer().count()).isEqualTo(6);
        } finally {
            unpublish.run();
        }
    }

    @Test
    void a_refused_request_is_not_retried() throws Exception {
        LlmSimulator s = sim(0, 1);
        LlmGateway gw = gateway(s.url() + "/nowhere"); // 404
        assertThatThrownBy(() -> gw.complete(PROMPT)).isInstanceOf(LlmRejectedException.class).hasMessageContaining("404");
        assertThat(gw.backends().get(0).requests()).isEqualTo(1);
    }

    @Test
    void every_backend_down_is_reported_as_unavailable_and_probe_sees_the_return() throws Exception {
        LlmSimulator a = sim(0, 1);
        int port = a.port();
        LlmGateway gw = gateway(a.url());
        a.close();
        assertThatThrownBy(() -> gw.complete(PROMPT)).isInstanceOf(BackendsUnavailableException.class);
        assertThat(gw.probe()).isFalse();
        sims.add(LlmSimulator.start(port, 0, 1));
        assertThat(gw.probe()).isTrue();
        assertThat(gw.complete(PROMPT).text()).isNotBlank();
    }

    @Test
    void endpoint_list_errors_are_clear() {
        assertThatThrownBy(() -> Backend.parseAll("http://h:1;slot=2", "chatglm")).hasMessageContaining("unknown option 'slot'");
        assertThatThrownBy(() -> Backend.parseAll("h:1", "chatglm")).hasMessageContaining("not an http(s):// URL");
        assertThatThrownBy(() -> Backend.parseAll("", "chatglm")).hasMessageContaining("llmbatch.llm.endpoints is empty");
        assertThatThrownBy(() -> Backend.parseAll("http://h:1", "gpt")).hasMessageContaining("chatglm or openai");
    }
}
