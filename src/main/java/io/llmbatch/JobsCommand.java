package io.llmbatch;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.Properties;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

/**
 * {@code java -jar target/llm-batch.jar export NAME [--format jsonl|csv] [--bom] [--keep-formulas] [--out FILE] [url]}: a job's results
 * from the ingest node to a file (written under a temporary name, renamed when complete), with a progress bar; and
 * {@code redrive NAME [--reason REGEX] [url]}: the job's dead letters back to work. Send {@code INGEST_TOKEN} when set.
 */
final class JobsCommand {

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int BAR = 30;

    private JobsCommand() {
    }

    /** Removes {@code --name value} from the arguments and returns the value, or null. */
    static String option(List<String> args, String name) {
        int i = args.indexOf(name);
        if (i < 0) {
            return null;
        }
        if (i + 1 >= args.size()) {
            throw new IllegalArgumentException(name + " needs a value");
        }
        String value = args.get(i + 1);
        args.remove(i + 1);
        args.remove(i);
        return value;
    }

    static int run(String locations, Properties overrides, List<String> args, PrintStream out) {
        String command = args.get(0);
        try {
            String format = option(args, "--format");
            String file = option(args, "--out");
            String reason = option(args, "--reason");
            boolean bom = args.remove("--bom");
            boolean keepFormulas = args.remove("--keep-formulas");
            if (args.size() < 2) {
                out.println("usage: " + command + " NAME" + ("export".equals(command) ? " [--format jsonl|csv] [--bom] [--keep-formulas] [--out FILE]"
                        : " [--reason REGEX]") + " [http://ingest-host:port]");
                return 2;
            }
            String job = args.get(1);
            String base = StatusCommand.base(locations, overrides, args.size() > 2 ? args.get(2) : null);
            HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
            return "export".equals(command) ? export(http, base, job, format == null ? "jsonl" : format,
                    (bom ? "&bom=true" : "") + (keepFormulas ? "&formulas=keep" : ""), file, out)
                    : redrive(http, base, job, reason, out);
        } catch (IllegalArgumentException e) {
            out.println(command + ": " + e.getMessage());
            return 2;
        } catch (IOException e) {
            out.println(command + ": " + e.getMessage() + " (is the ingest node running? give its URL)");
            return 2;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return 2;
        }
    }

    private static int export(HttpClient http, String base, String job, String format, String options, String file, PrintStream out)
            throws IOException, InterruptedException {
        String f = format.toLowerCase(Locale.ROOT);
        if (!f.equals("jsonl") && !f.equals("csv")) {
            throw new IllegalArgumentException("--format is jsonl or csv");
        }
        HttpResponse<String> status = http.send(request(base + "/api/jobs/" + job).GET().build(), HttpResponse.BodyHandlers.ofString());
        if (status.statusCode() != 200) {
            out.println("export: " + base + "/api/jobs/" + job + " answered " + status.statusCode() + ": " + status.body());
            return 2;
        }
        long total = JSON.readTree(status.body()).path("stored").asLong();
        Path target = Path.of(file != null ? file : job + "." + f);
        Path part = target.resolveSibling(target.getFileName() + ".part");
        HttpResponse<InputStream> r = http.send(request(base + "/api/jobs/" + job + "/results?format=" + f + options)
                .GET().build(), HttpResponse.BodyHandlers.ofInputStream());
        if (r.statusCode() != 200) {
            out.println("export: answered " + r.statusCode() + ": " + new String(r.body().readAllBytes(), StandardCharsets.UTF_8));
            return 2;
        }
        boolean tty = System.console() != null;
        long rows = 0;
        long shown = -1;
        boolean quoted = false;
        boolean headerSeen = !f.equals("csv");
        try (InputStream in = r.body(); OutputStream o = new BufferedOutputStream(Files.newOutputStream(part), 1 << 16)) {
            byte[] buf = new byte[1 << 16];
            int n;
            while ((n = in.read(buf)) > 0) {
                o.write(buf, 0, n);
                for (int i = 0; i < n; i++) { // a row ends at a line break outside quotes (CSV values may hold some)
                    byte b = buf[i];
                    if (b == '"' && f.equals("csv")) {
                        quoted = !quoted;
                    } else if (b == '\n' && !quoted) {
                        if (headerSeen) {
                            rows++;
                        }
                        headerSeen = true;
                    }
                }
                if (tty && rows != shown) {
                    out.print("\r" + bar(rows, total));
                    shown = rows;
                }
            }
        }
        Files.move(part, target, StandardCopyOption.REPLACE_EXISTING);
        out.println((tty ? "\r" : "") + bar(rows, total));
        out.println("export: " + String.format(Locale.ROOT, "%,d", rows) + " result(s) of job " + job + " written to " + target.toAbsolutePath());
        return 0;
    }

    private static int redrive(HttpClient http, String base, String job, String reason, PrintStream out)
            throws IOException, InterruptedException {
        String url = base + "/api/jobs/" + job + "/redrive" + (reason == null ? "" : "?reason=" + URLEncoder.encode(reason, StandardCharsets.UTF_8));
        HttpResponse<String> r = http.send(request(url).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.noBody()).build(), HttpResponse.BodyHandlers.ofString());
        if (r.statusCode() != 200) {
            out.println("redrive: " + url + " answered " + r.statusCode() + ": " + r.body());
            return 2;
        }
        JsonNode a = JSON.readTree(r.body());
        out.printf(Locale.ROOT, "redrive: %,d dead letter(s) of job %s moved back to the task queue, %,d left in %s%s%n",
                a.path("moved").asLong(), job, a.path("left").asLong() + a.path("not_renderable").asLong(), a.path("dead_letter_queue").asText(),
                a.path("not_renderable").asLong() > 0 ? " (" + a.path("not_renderable").asLong() + " still cannot be made into a prompt)" : "");
        return 0;
    }

    private static HttpRequest.Builder request(String url) {
        HttpRequest.Builder req = HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofMinutes(30));
        String token = System.getenv("INGEST_TOKEN");
        if (token != null && !token.isBlank()) {
            req.header("Authorization", "Bearer " + token.trim());
        }
        return req;
    }

    private static String bar(long rows, long total) {
        double fraction = total <= 0 ? 1 : Math.min(1.0, (double) rows / total);
        int filled = (int) Math.round(fraction * BAR);
        return "[" + "#".repeat(filled) + ".".repeat(BAR - filled) + "] " + String.format(Locale.ROOT, "%5.1f%%  %,d of %,d rows",
                fraction * 100, rows, total);
    }
}
