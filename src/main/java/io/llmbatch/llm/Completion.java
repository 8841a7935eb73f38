package io.llmbatch.llm;

/**
 * An LLM's answer to one task, as the worker puts it into the result.
 *
 * @param text             the completion
 * @param finishReason     why the server stopped ({@code stop}, {@code length} when cut at max_tokens; null for api.py)
 * @param servedModel      the model the server says it ran (null when it does not say)
 * @param backend          base URL of the server that answered
 * @param promptTokens     reported by the server, else null
 * @param completionTokens reported by the server, else null
 * @param attempts         LLM calls made for the task, this one included
 * @param seconds          duration of the call that answered
 * @param answer           the server's whole answer when it is a chat.completion (OpenAI-compatible servers), else null:
 *                         what an OpenAI batch line's output carries as its response body
 */
public record Completion(String text, String finishReason, String servedModel, String backend, Integer promptTokens,
                         Integer completionTokens, int attempts, double seconds, com.fasterxml.jackson.databind.JsonNode answer) {

    public Completion(String text, String finishReason, String servedModel, String backend, Integer promptTokens,
                      Integer completionTokens, int attempts, double seconds) {
        this(text, finishReason, servedModel, backend, promptTokens, completionTokens, attempts, seconds, null);
    }
}
