package io.llmbatch.llm;

import java.net.URI;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * One entry of {@code llmbatch.llm.endpoints}: a base URL and its options, e.g.
 * {@code http://127.0.0.1:8000;slots=8;api=openai;model=Qwen/Qwen2.5-7B-Instruct;api-key-env=VLLM_KEY;rpm=600}.
 *
 * @param url       base URL without trailing slash
 * @param api       protocol
 * @param slots     requests it serves at once
 * @param model     the name this server knows the model by (null: {@code llmbatch.llm.model})
 * @param apiKeyEnv environment variable holding its API key (null: {@code LLM_API_KEY} / {@code llmbatch.llm.api-key})
 * @param rpm       requests per minute it allows (0: no limit)
 * @param tpm       tokens per minute it allows (0: no limit)
 * @param headers   extra HTTP headers it needs ({@code ;header.X-Title=llm-batch})
 */
public record Endpoint(String url, Api api, int slots, String model, String apiKeyEnv, int rpm, long tpm,
                       Map<String, String> headers) {

    /** The two protocols llm-batch speaks. */
    public enum Api {
        /** ChatGLM's api.py: {@code POST /} with {@code prompt}, answer in {@code response}. */
        CHATGLM,
        /** OpenAI-compatible {@code POST /v1/chat/completions} (vLLM, Ollama, llama.cpp, TGI, LiteLLM, hosted APIs). */
        OPENAI;

        static Api parse(String value) {
            try {
                return valueOf(value.trim().toUpperCase(Locale.ROOT));
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("llmbatch.llm.api: unknown protocol '" + value + "' (chatglm or openai)");
            }
        }

        /** The name used in route ids and request routes ({@code direct:llm-request-openai}). */
        public String id() {
            return name().toLowerCase(Locale.ROOT);
        }
    }

    private static final String OPTIONS = "slots, api, model, api-key-env, rpm, tpm, header.<Name>";

    public Endpoint {
        headers = Map.copyOf(headers);
    }

    /** The URL completions are POSTed to. */
    public String completionUrl() {
        if (api == Api.OPENAI) {
            return (url.endsWith("/v1") ? url : url + "/v1") + "/chat/completions";
        }
        return url + "/";
    }

    /** Where an OpenAI-compatible server lists its models ({@code GET /v1/models}); null for api.py. */
    public String modelsUrl() {
        return api == Api.OPENAI ? (url.endsWith("/v1") ? url : url + "/v1") + "/models" : null;
    }

    /**
     * Parses {@code llmbatch.llm.endpoints}: a comma list of base URLs, each optionally followed by {@code ;option=value}
     * pairs ({@value #OPTIONS}).
     */
    public static List<Endpoint> parseAll(String endpoints, String defaultApi) {
        Api fallback = Api.parse(defaultApi);
        List<Endpoint> all = new ArrayList<>();
        for (String entry : endpoints.split(",")) {
            if (!entry.isBlank()) {
                all.add(parse(entry.trim(), fallback));
            }
        }
        if (all.isEmpty()) {
            throw new IllegalArgumentException("llmbatch.llm.endpoints is empty: list the LLM servers, e.g. http://127.0.0.1:10000;slots=1");
        }
        return all;
    }

    static Endpoint parse(String entry, Api fallback) {
        String[] parts = entry.split(";");
        String url = parts[0].trim().replaceAll("/+$", "");
        URI base;
        try {
            base = URI.create(url);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("llmbatch.llm.endpoints: '" + url + "' is not an http(s):// URL");
        }
        if (base.getScheme() == null || !base.getScheme().matches("https?") || base.getHost() == null) {
            throw new IllegalArgumentException("llmbatch.llm.endpoints: '" + url + "' is not an http(s):// URL");
        }
        if (base.getUserInfo() != null || base.getQuery() != null) {
            throw new IllegalArgumentException("llmbatch.llm.endpoints: '" + base.getScheme() + "://" + base.getHost()
                                               + "...' carries credentials or a query: give the key with ;api-key-env=NAME");
        }
        int slots = 1;
        Api api = fallback;
        String model = null;
        String keyEnv = null;
        int rpm = 0;
        long tpm = 0;
        Map<String, String> headers = new LinkedHashMap<>();
        for (int i = 1; i < parts.length; i++) {
            String[] kv = parts[i].split("=", 2);
            String key = kv[0].trim();
            String value = kv.length > 1 ? kv[1].trim() : "";
            switch (key) {
                case "slots" -> slots = number(entry, key, value);
                case "api" -> api = Api.parse(value);
                case "model" -> model = nonEmpty(entry, key, value);
                case "api-key-env" -> keyEnv = nonEmpty(entry, key, value);
                case "rpm" -> rpm = number(entry, key, value);
                case "tpm" -> tpm = number(entry, key, value);
                default -> {
                    if (key.startsWith("header.") && key.length() > 7) {
                        headers.put(key.substring(7), value);
                    } else {
                        throw new IllegalArgumentException("llmbatch.llm.endpoints: unknown option '" + key + "' in '" + shown(entry)
                                                           + "' (" + OPTIONS + ")");
                    }
                }
            }
        }
        if (slots < 1) {
            throw new IllegalArgumentException("llmbatch.llm.endpoints: slots must be at least 1 for " + url);
        }
        if (headers.keySet().stream().anyMatch(h -> h.equalsIgnoreCase("Authorization"))) {
            throw new IllegalArgumentException("llmbatch.llm.endpoints: no Authorization header in the configuration ('" + url
                                               + "'): the key comes from the environment (LLM_API_KEY or ;api-key-env=NAME)");
        }
        return new Endpoint(url, api, slots, model, keyEnv, rpm, tpm, headers);
    }

    private static int number(String entry, String key, String value) {
        try {
            int n = Integer.parseInt(value);
            if (n < 0) {
                throw new NumberFormatException();
            }
            return n;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("llmbatch.llm.endpoints: " + key + " must be a whole number in '" + shown(entry) + "'");
        }
    }

    private static String nonEmpty(String entry, String key, String value) {
        if (value.isEmpty()) {
            throw new IllegalArgumentException("llmbatch.llm.endpoints: " + key + " needs a value in '" + shown(entry) + "'");
        }
        return value;
    }

    /** An entry as an error may show it: the values of its ;header.Name= options (a key, as some servers take one) hidden. */
    static String shown(String entry) {
        return entry.replaceAll("(;\\s*header\\.[^=;]*=)[^;]*", "$1***");
    }
}
