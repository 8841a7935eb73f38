import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The yardstick of bench/llama.sh: a bare client sending N chat completions to OpenAI-compatible servers, with
 * {@code perServer} requests at once on each (the slots the worker gets), the same body the worker's request route sends
 * (the seed's prompt, max_tokens, temperature) plus llama.cpp's ignore_eos, so every answer has exactly maxTokens tokens. No broker, no result: the most any client can get from the servers.
 * Prints one line: requests, ok, seconds, requests/s.
 *
 * usage: java BareClient.java N perServer maxTokens url1 [url2 ...]
 */
public class BareClient {
    public static void main(String[] args) throws Exception {
        int n = Integer.parseInt(args[0]);
        int perServer = Integer.parseInt(args[1]);
        int maxTokens = Integer.parseInt(args[2]);
        List<String> urls = List.of(args).subList(3, args.length);
        HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).connectTimeout(Duration.ofSeconds(5)).build();
        AtomicInteger next = new AtomicInteger();
        AtomicInteger ok = new AtomicInteger();
        ExecutorService pool = Executors.newFixedThreadPool(urls.size() * perServer);
        List<Future<?>> all = new ArrayList<>();
        long start = System.nanoTime();
        for (String url : urls) {
            for (int s = 0; s < perServer; s++) {
                all.add(pool.submit(() -> {
                    int i;
                    while ((i = next.getAndIncrement()) < n) {
                        String prompt = "成立日期:2015-03-02\\n注册地址:北京市海淀区中关村大街" + i + "号\\n北京测试科技有限公司" + i
                                        + "简介,字数在100-200字之间";
                        String body = "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"" + prompt
                                      + "\"}],\"max_tokens\":" + maxTokens + ",\"ignore_eos\":true,\"temperature\":0.8}";
                        HttpRequest req = HttpRequest.newBuilder(URI.create(url + "/v1/chat/completions"))
                                .header("Content-Type", "application/json").timeout(Duration.ofSeconds(120))
                                .POST(HttpRequest.BodyPublishers.ofString(body)).build();
                        try {
                            HttpResponse<String> r = http.send(req, HttpResponse.BodyHandlers.ofString());
                            if (r.statusCode() == 200) {
                                ok.incrementAndGet();
                            }
                        } catch (Exception e) {
                            System.err.println(e);
                        }
                    }
                    return null;
                }));
            }
        }
        for (Future<?> f : all) {
            f.get();
        }
        double secs = (System.nanoTime() - start) / 1e9;
        pool.shutdown();
        System.out.printf("requests=%d ok=%d seconds=%.2f rate=%.3f%n", n, ok.get(), secs, ok.get() / secs);
    }
}
