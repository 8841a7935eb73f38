package io.llmbatch.llm;

import java.io.FilterInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;

import org.apache.camel.component.http.HttpClientConfigurer;
import org.apache.hc.client5.http.impl.classic.HttpClientBuilder;
import org.apache.hc.core5.http.ClassicHttpResponse;
import org.apache.hc.core5.http.HttpEntity;
import org.apache.hc.core5.http.io.entity.HttpEntityWrapper;

/**
 * A deadline for a whole LLM call in camel-http ({@code camel.component.http.httpClientConfigurer}): the request is
 * aborted (its connection closed) when the answer, headers and body, has not fully arrived within the response timeout.
 * HttpClient's own timeouts count silence between reads, so a server that trickles its answer would hold the call (and
 * the backend's slot) for ever; JDK 17's {@code HttpRequest.timeout} stops counting at the headers (JDK-8208693). The
 * abort happens on the calling thread's own connection, so the call fails where it runs, as any I/O error does.
 */
public final class LlmHttpDeadline implements HttpClientConfigurer, AutoCloseable {

    private final long deadlineMillis;
    private final ScheduledExecutorService timer;

    public LlmHttpDeadline(long deadlineMillis) {
        this.deadlineMillis = deadlineMillis;
        ScheduledThreadPoolExecutor t = new ScheduledThreadPoolExecutor(1, LlmBackends.daemon("llm-call-deadline"));
        t.setRemoveOnCancelPolicy(true); // a call that ends in time takes its timer along
        this.timer = t;
    }

    public long deadlineMillis() {
        return deadlineMillis;
    }

    @Override
    public void configureHttpClient(HttpClientBuilder builder) {
        builder.addExecInterceptorFirst("llm-call-deadline", (request, scope, chain) -> {
            // closing the call's connection wakes the thread blocked on it; once the connection went back to the pool
            // (answer read in time) this does nothing
            ScheduledFuture<?> abort = timer.schedule(scope.execRuntime::discardEndpoint, deadlineMillis, TimeUnit.MILLISECONDS);
            ClassicHttpResponse response;
            try {
                response = chain.proceed(request, scope);
            } catch (IOException | RuntimeException | org.apache.hc.core5.http.HttpException e) {
                abort.cancel(false);
                throw e;
            }
            HttpEntity entity = response.getEntity();
            if (entity == null) {
                abort.cancel(false);
            } else {
                // the body is read after this returns: the deadline runs until it has been read to the end
                response.setEntity(new HttpEntityWrapper(entity) {
                    @Override
                    public InputStream getContent() throws IOException {
                        return new FilterInputStream(super.getContent()) {
                            @Override
                            public int read() throws IOException {
                                int b = super.read();
                                if (b < 0) {
                                    abort.cancel(false);
                                }
                                return b;
                            }

                            @Override
                            public int read(byte[] buf, int off, int len) throws IOException {
                                int n = super.read(buf, off, len);
                                if (n < 0) {
                                    abort.cancel(false);
                                }
                                return n;
                            }

                            @Override
                            public void close() throws IOException {
                                abort.cancel(false);
                                super.close();
                            }
                        };
                    }

                    @Override
                    public void close() throws IOException {
                        abort.cancel(false);
                        super.close();
                    }
                });
            }
            return response;
        });
    }

    @Override
    public void close() {
        timer.shutdownNow();
    }
}
