package io.llmbatch.llm;

import java.net.URI;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * One LLM server: base URL, protocol, slots (requests it serves at once), and its live state: requests in
 * flight, cool-down after failures, counters.
 */
public final class Backend {

    public enum Api {
        CHATGLM, OPENAI;

        static Api parse(String value) {
            try {
                return valueOf(value.trim().toUpperCase(Locale.ROOT));
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("llmbatch.llm.api: unknown protocol '" + value + "' (chatglm or openai)");
            }
        }
    }

    final String url;
    final Api api;
    final int slots;
    final URI completionUri;
    final URI probeUri;
    final AtomicInteger inFlight = new AtomicInteger();
    final AtomicLong requests = new AtomicLong();
    final AtomicLong failures = new AtomicLong();
    volatile long coolUntil;
    volatile int consecutiveFailures;

    Backend(String url, Api api, int slots) {
        if (slots < 1) {
            throw new IllegalArgumentException("llmbatch.llm.endpoints: slots must be at least 1 for " + url);
        }
        this.url = url.replaceAll("/+$", "");
        this.api = api;
        this.slots = slots;
        URI base = URI.create(this.url);
        if (base.getScheme() == null || !base.getScheme().startsWith("http") || base.getHost() == null) {
            throw new IllegalArgumentException("llmbatch.llm.endpoints: '" + url + "' is not an http(s):// URL");
        }
        if (api == Api.OPENAI) {
            String v1 = this.url.endsWith("/v1") ? this.url : this.url + "/v1";
            this.completionUri = URI.create(v1 + "/chat/completions");
            this.probeUri = URI.create(v1 + "/models");
        } else {
            this.completionUri = URI.create(this.url + "/");
            this.probeUri = completionUri;
        }
    }

    /**
     * Parses {@code llmbatch.llm.endpoints}: a comma list of base URLs, each optionally followed by
     * {@code ;slots=N} and {@code ;api=chatglm|openai}, e.g. {@code http://127.0.0.1:10000;slots=2}.
     */
    public static List<Backend> parseAll(String endpoints, String defaultApi) {
        List<Backend> all = new ArrayList<>();
        for (String entry : endpoints.split(",")) {
            if (entry.isBlank()) {
                continue;
            }
            String[] parts = entry.trim().split(";");
            int slots = 1;
            Api api = Api.parse(defaultApi);
            for (int i = 1; i < parts.length; i++) {
                String[] kv = parts[i].split("=", 2);
                String key = kv[0].trim();
                String value = kv.length > 1 ? kv[1].trim() : "";
                switch (key) {
                    case "slots" -> {
                        try {
                            slots = Integer.parseInt(value);
                        } catch (NumberFormatException e) {
                            throw new IllegalArgumentException("llmbatch.llm.endpoints: slots must be a number in '" + entry + "'");
                        }
                    }
                    case "api" -> api = Api.parse(value);
                    default -> throw new IllegalArgumentException("llmbatch.llm.endpoints: unknown option '" + key
                                                                  + "' in '" + entry + "' (slots, api)");
                }
            }
            all.add(new Backend(parts[0].trim(), api, slots));
        }
        if (all.isEmpty()) {
            throw new IllegalArgumentException("llmbatch.llm.endpoints is empty: list the LLM servers, e.g. http://127.0.0.1:10000;slots=1");
        }
        return all;
    }

    public String url() {
        return url;
    }

    public int slots() {
        return slots;
    }

    public int inFlight() {
        return inFlight.get();
    }

    public long requests() {
        return requests.get();
    }

    public long failures() {
        return failures.get();
    }

    public boolean coolingAt(long now) {
        return now < coolUntil;
    }

    @Override
    public String toString() {
        return url;
    }
}
