package io.llmbatch.worker;

import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.Test;

import io.llmbatch.ingest.Tasks;
import io.llmbatch.llm.Completion;

import static org.assertj.core.api.Assertions.assertThat;

/** The chat.completion of a batch line's output, from either protocol's answer. */
class BatchResultsTest {

    @Test
    void an_api_py_answer_becomes_a_chat_completion_with_zero_usage() {
        Completion glm = new Completion("北京测试科技有限公司成立于2015年。", null, null, "http://127.0.0.1:10000", null, null, 1, 2.5);
        ObjectNode body = BatchResults.chatCompletion(glm, "gpt-4o-mini", "req_0123456789abcdef");
        assertThat(body.get("object").asText()).isEqualTo("chat.completion");
        assertThat(body.get("id").asText()).isEqualTo("chatcmpl-0123456789abcdef");
        assertThat(body.get("model").asText()).isEqualTo("gpt-4o-mini");
        assertThat(body.get("created").asLong()).isPositive();
        assertThat(body.at("/choices/0/index").asInt()).isZero();
        assertThat(body.at("/choices/0/message/role").asText()).isEqualTo("assistant");
        assertThat(body.at("/choices/0/message/content").asText()).isEqualTo("北京测试科技有限公司成立于2015年。");
        assertThat(body.at("/choices/0/finish_reason").asText()).isEqualTo("stop");
        assertThat(body.at("/usage/total_tokens").asInt()).isZero();
    }

    @Test
    void an_openai_compatible_answer_is_kept_as_it_came_under_the_asked_model() throws Exception {
        var answer = Tasks.JSON.readTree("""
                {"id": "chatcmpl-vllm-7", "object": "chat.completion", "created": 1733000000, "model": "qwen2.5-7b",
                 "system_fingerprint": "fp_1", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                 "logprobs": null, "finish_reason": "length"}], "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}}""");
        Completion c = new Completion("hi", "length", "qwen2.5-7b", "http://127.0.0.1:8000", 9, 1, 1, 0.1, answer);
        ObjectNode body = BatchResults.chatCompletion(c, "gpt-4o-mini", "req_x");
        assertThat(body.get("id").asText()).isEqualTo("chatcmpl-vllm-7");
        assertThat(body.get("model").asText()).isEqualTo("gpt-4o-mini");
        assertThat(body.get("system_fingerprint").asText()).isEqualTo("fp_1");
        assertThat(body.at("/choices/0/finish_reason").asText()).isEqualTo("length");
        assertThat(body.at("/usage/total_tokens").asInt()).isEqualTo(10);
        assertThat(answer.get("model").asText()).as("the completion itself is not changed").isEqualTo("qwen2.5-7b");
    }
}
