package io.llmbatch;

import java.io.IOException;
import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.Locale;
import java.util.Properties;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.camel.impl.DefaultCamelContext;

/**
 * {@code java -jar target/llm-batch.jar status [url] [--once]}: polls the ingest node's {@code /api/progress}
 * and draws a progress bar with rate and ETA until nothing is left to do (or once). The bar counts from when
 * the command started. Sends {@code INGEST_TOKEN} as bearer token when set.
 */
final class StatusCommand {

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int BAR = 30;
    /** Empty polls in a row before the job counts as done (workers report every few seconds). */
    private static final int DONE_AFTER = 3;

    private StatusCommand() {
    }

    static int run(String locations, Properties overrides, String url, boolean once, long pollMillis, PrintStream out)
            throws InterruptedException {
        return run(locations, overrides, url, null, once, pollMillis, out);
    }

    /** The ingest node's base URL (http://host:port) from the settings, or from a URL the user gave. */
    static String base(String locations, Properties overrides, String url) {
        if (url != null) {
            return url.replaceFirst("/+$", "").replaceFirst("/api/.*$", "");
        }
        DefaultCamelContext context = Application.settings(locations, overrides);
        return "http://" + context.resolvePropertyPlaceholders("{{camel.server.host}}") + ":"
               + context.resolvePropertyPlaceholders("{{camel.server.port}}");
    }

    /** {@code status [url] [--job NAME] [--once]}: the whole pipeline's progress, or one job's. */
    static int run(String locations, Properties overrides, String url, String job, boolean once, long pollMillis, PrintStream out)
            throws InterruptedException {
        if (job != null) {
            url = base(locations, overrides, url) + "/api/jobs/" + job;
        } else if (url == null || !url.contains("/api/")) {
            url = base(locations, overrides, url) + "/api/progress";
        }
        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
        String token = System.getenv("INGEST_TOKEN");
        boolean tty = System.console() != null;
        Long base = null;
        int empty = 0;
        while (true) {
            JsonNode p;
            try {
                HttpRequest.Builder req = HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10)).GET();
                if (token != null && !token.isBlank()) {
                    req.header("Authorization", "Bearer " + token.trim());
                }
                HttpResponse<String> r = http.send(req.build(), HttpResponse.BodyHandlers.ofString());
                if (r.statusCode() != 200) {
                    out.println();
                    out.println("status: " + url + " answered " + r.statusCode() + ": " + r.body());
                    return 2;
                }
                p = JSON.readTree(r.body());
            } catch (IOException e) {
                out.println();
                out.println("status: cannot reach " + url + " (" + e + "): is the ingest node running? (give its URL)");
                return 2;
            }
            long done = job != null ? p.path("stored").asLong() : done(p);
            if (base == null) {
                base = done;
            }
            out.print((tty ? "\r" : "") + (job != null ? jobLine(p) : line(p, done - base)) + (tty ? "   " : System.lineSeparator()));
            out.flush();
            empty = p.path("remaining").isNumber() && p.path("remaining").asLong() == 0 ? empty + 1 : 0;
            if (once || empty >= DONE_AFTER) {
                out.println();
                return 0;
            }
            Thread.sleep(pollMillis);
        }
    }

    /** Results stored (or, with no collector reporting, completed by workers). */
    private static long done(JsonNode p) {
        if (p.path("stored").isNumber()) {
            return p.path("stored").asLong();
        }
        long completed = 0;
        for (JsonNode w : p.path("workers")) {
            completed += w.path("completed").asLong();
        }
        return completed;
    }

    static String line(JsonNode p, long doneSinceStart) {
        long remaining = p.path("remaining").asLong(0);
        double fraction = doneSinceStart + remaining == 0 ? 1 : (double) doneSinceStart / (doneSinceStart + remaining);
        int filled = (int) Math.round(fraction * BAR);
        StringBuilder s = new StringBuilder("[").append("#".repeat(filled)).append(".".repeat(BAR - filled)).append("] ");
        s.append(String.format(Locale.ROOT, "%5.1f%%  stored %,d (+%,d)  waiting %s  in flight %,d  DLQ %,d  %.1f/s  ETA %s",
                fraction * 100, p.path("stored").asLong(0), doneSinceStart, number(p.path("tasks_waiting")),
                p.path("in_flight").asLong(), p.path("dead_lettered").asLong(), p.path("rate_per_second").asDouble(),
                eta(p.path("eta_seconds"))));
        JsonNode cost = p.path("cost");
        if (cost.path("per_1000").isNumber()) {
            s.append(String.format(Locale.ROOT, "  %.2f %s/1000", cost.path("per_1000").asDouble(), cost.path("currency").asText()));
        }
        return s.toString();
    }

    /** One job: stored of submitted (a bar), failed, skipped, waiting and in flight, rate, ETA, tokens, cost and checks. */
    static String jobLine(JsonNode j) {
        long submitted = j.path("submitted").asLong();
        long stored = j.path("stored").asLong();
        long failed = j.path("failed").asLong();
        double fraction = submitted == 0 ? 1 : Math.min(1.0, (double) (stored + failed) / submitted);
        int filled = (int) Math.round(fraction * BAR);
        StringBuilder s = new StringBuilder(j.path("name").asText()).append(" [").append("#".repeat(filled))
                .append(".".repeat(BAR - filled)).append("] ");
        s.append(String.format(Locale.ROOT, "%5.1f%%  stored %,d of %,d  failed %,d  skipped %,d  waiting %,d  in flight %,d  %.1f/s  ETA %s"
                                            + "  tokens %,d",
                fraction * 100, stored, submitted, failed, j.path("skipped").asLong(), j.path("waiting").asLong(),
                j.path("in_flight").asLong(), j.path("rate_per_second").asDouble(), eta(j.path("eta_seconds")),
                j.path("prompt_tokens").asLong() + j.path("completion_tokens").asLong()));
        if (j.path("cost").path("so_far").isNumber()) {
            s.append(String.format(Locale.ROOT, "  %.2f %s", j.path("cost").path("so_far").asDouble(), j.path("cost").path("currency").asText()));
        }
        JsonNode checks = j.path("checks");
        if (checks.isObject()) { // output checks: passed at once, after a repair, dead-lettered by a check
            s.append(String.format(Locale.ROOT, "  checks %,d passed %,d repaired %,d failed", checks.path("passed").asLong(),
                    checks.path("repaired").asLong(), checks.path("failed").asLong()));
        }
        return s.toString();
    }

    private static String number(JsonNode n) {
        return n.isNumber() ? String.format(Locale.ROOT, "%,d", n.asLong()) : "?";
    }

    private static String eta(JsonNode seconds) {
        if (!seconds.isNumber()) {
            return "--";
        }
        long s = seconds.asLong();
        return s >= 3600 ? String.format(Locale.ROOT, "%dh%02dm", s / 3600, s % 3600 / 60)
                : s >= 60 ? String.format(Locale.ROOT, "%dm%02ds", s / 60, s % 60) : s + "s";
    }
}
