package io.llmbatch.worker;

import java.util.Map;

import com.fasterxml.jackson.databind.node.ObjectNode;

import io.llmbatch.ingest.Tasks;
import io.llmbatch.jobs.Jobs;
import io.llmbatch.llm.Completion;

/**
 * What a worker stores for a line of an OpenAI batch (a task carrying {@link Jobs#BATCH}): the line's output as the
 * Batch API writes it, {@code response: {status_code, request_id, body: <chat.completion>}} and {@code error}, beside the
 * fields every result has. The collector stores it like any result, under the key the ingest node gave the line.
 */
final class BatchResults {

    static final String CANCELLED_MESSAGE = "This request was not executed because the batch was cancelled.";

    private BatchResults() {
    }

    /** The line's identity in its result: batch id, custom_id, line number. */
    static void identify(ObjectNode result, Map<String, Object> jobHeaders) {
        result.put("batch_id", String.valueOf(jobHeaders.get(Jobs.BATCH)));
        result.put("custom_id", String.valueOf(jobHeaders.get(Jobs.CUSTOM_ID)));
        Object line = jobHeaders.get(Jobs.LINE);
        if (line != null) {
            result.put("line", Long.parseLong(line.toString()));
        }
    }

    /**
     * The chat.completion a batch line's output carries. An OpenAI-compatible server's own answer is kept as it came
     * (its id, created, choices, usage, system_fingerprint...), with {@code model} the model the line asked for (the
     * backends may serve it under another name: {@code served_model} in the stored result says which). ChatGLM's
     * api.py answers only a text: the object is made here, with usage 0 (api.py does not count tokens).
     */
    static ObjectNode chatCompletion(Completion c, String askedModel, String requestId) {
        ObjectNode body;
        if (c.answer() != null && c.answer().isObject() && c.answer().path("choices").isArray()) {
            body = c.answer().deepCopy();
        } else {
            body = Tasks.JSON.createObjectNode();
            body.put("id", "chatcmpl-" + requestId.substring(4));
            body.put("object", "chat.completion");
            body.put("created", System.currentTimeMillis() / 1000);
            ObjectNode choice = body.putArray("choices").addObject();
            choice.put("index", 0);
            choice.putObject("message").put("role", "assistant").put("content", c.text());
            choice.put("finish_reason", c.finishReason() == null ? "stop" : c.finishReason());
            int prompt = c.promptTokens() == null ? 0 : c.promptTokens();
            int completion = c.completionTokens() == null ? 0 : c.completionTokens();
            body.putObject("usage").put("prompt_tokens", prompt).put("completion_tokens", completion)
                    .put("total_tokens", prompt + completion);
        }
        if (askedModel != null) {
            body.put("model", askedModel);
        }
        if (!body.has("object")) {
            body.put("object", "chat.completion");
        }
        return body;
    }

    /** A line that succeeded: {@code response} with status 200, {@code error} null. */
    static void succeeded(ObjectNode result, Completion c, String askedModel, String requestId) {
        ObjectNode response = result.putObject("response");
        response.put("status_code", 200);
        response.put("request_id", requestId);
        response.set("body", chatCompletion(c, askedModel, requestId));
        result.putNull("error");
    }

    /**
     * A line that failed after the same fault handling as any task: a request the server blamed on the prompt is the
     * server's answer (status 400 with an OpenAI error body), anything else (every attempt failed) is an error without a
     * response, as the Batch API reports a request it could not run.
     */
    static void failed(ObjectNode result, String requestId, boolean blamedOnRequest, String reason) {
        if (blamedOnRequest) {
            ObjectNode response = result.putObject("response");
            response.put("status_code", 400);
            response.put("request_id", requestId);
            ObjectNode error = response.putObject("body").putObject("error");
            error.put("message", reason);
            error.put("type", "invalid_request_error");
            error.putNull("param");
            error.putNull("code");
            result.putNull("error");
        } else {
            result.putNull("response");
            result.putObject("error").put("code", "server_error").put("message", reason);
        }
    }

    /** A line not run because its batch was cancelled. */
    static void cancelled(ObjectNode result) {
        result.putNull("response");
        result.putObject("error").put("code", "batch_cancelled").put("message", CANCELLED_MESSAGE);
    }

    /** The request id of a line: stable for the line, so a redelivered line's output says the same. */
    static String requestId(Map<String, Object> jobHeaders) {
        return "req_" + jobHeaders.get(Jobs.PID);
    }

    static boolean isBatchLine(Map<String, Object> jobHeaders) {
        return jobHeaders != null && jobHeaders.get(Jobs.BATCH) != null;
    }
}
