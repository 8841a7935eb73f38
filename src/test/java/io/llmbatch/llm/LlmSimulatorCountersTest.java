package io.llmbatch.llm;

import org.junit.jupiter.api.Test;

import io.llmbatch.support.Http;

import static org.assertj.core.api.Assertions.assertThat;

/** The simulator's benchmark counters: requests per prompt (a redone LLM call shows as a second request) and slot time. */
class LlmSimulatorCountersTest {

    @Test
    void a_prompt_asked_twice_is_counted_twice_and_every_call_holds_a_slot_for_its_latency() throws Exception {
        try (LlmSimulator sim = LlmSimulator.start(0, 50, 2)) {
            for (String prompt : new String[] { "甲公司简介", "乙公司简介", "甲公司简介" }) {
                assertThat(Http.post(sim.port(), "/", "{\"prompt\": \"" + prompt + "\"}").status()).isEqualTo(200);
            }
            assertThat(sim.servedPerPrompt().values()).containsExactlyInAnyOrder(2L, 1L);
            assertThat(sim.busyMillis()).as("three calls of at least 50 ms each").isGreaterThanOrEqualTo(150);
            String stats = Http.get(sim.port(), "/stats").body();
            assertThat(stats).contains("\"posts\":3", "\"distinct_prompts\":2", "\"served\":3");
        }
    }
}
