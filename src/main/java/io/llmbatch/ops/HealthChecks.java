package io.llmbatch.ops;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URI;
import java.util.Map;
import java.util.function.Consumer;
import java.util.function.Supplier;

import com.mongodb.client.MongoClient;
import com.mongodb.connection.ClusterDescription;
import org.apache.camel.health.HealthCheck;
import org.apache.camel.health.HealthCheckResultBuilder;
import org.apache.camel.impl.health.AbstractHealthCheck;
import org.springframework.amqp.rabbit.connection.ConnectionFactory;

import io.llmbatch.Urls;
import io.llmbatch.llm.Backend;
import io.llmbatch.llm.LlmBackends;

/**
 * Readiness checks behind {@code /observe/health/ready} (group {@code llmbatch}): the broker for every role,
 * MongoDB for a collector, the LLM backends for a worker (ready while at least one is reachable and not cooling down). Liveness
 * stays Camel's: a process waiting for a service to return is alive, only not ready.
 */
public final class HealthChecks {

    private HealthChecks() {
    }

    public static HealthCheck broker(ConnectionFactory connectionFactory, String maskedUrl) {
        return check("rabbitmq", b -> {
            b.detail("url", maskedUrl);
            try {
                // the cached shared connection: opened once, reopened by the client's recovery when it drops
                if (connectionFactory.createConnection().isOpen()) {
                    b.up();
                } else {
                    b.message("the connection to the broker is closed").down();
                }
            } catch (RuntimeException e) {
                b.message("cannot connect to the broker: " + e.getMessage()).down();
            }
        });
    }

    /**
     * MongoDB for a collector: DOWN without a writable server (what the driver's monitor last saw: no request, no
     * server-selection wait in a health probe), and DOWN with the reason while {@code problem} says MongoDB refuses
     * something retrying cannot fix (credentials, permissions, an index conflict, an unsatisfiable write concern).
     */
    public static HealthCheck mongo(MongoClient client, String uri, Supplier<String> problem, Map<String, Supplier<Object>> details) {
        return check("mongodb", b -> {
            ClusterDescription cluster = client.getClusterDescription();
            b.detail("uri", Urls.mask(uri));
            details.forEach((name, value) -> b.detail(name, value.get()));
            String refused = problem.get();
            if (!cluster.hasWritableServer()) {
                b.message("no writable MongoDB server: " + cluster.getShortDescription()).down();
            } else if (refused != null) {
                b.message(Urls.mask(refused)).down();
            } else {
                b.up();
            }
        });
    }

    public static HealthCheck llm(LlmBackends backends) {
        return check("llm-backends", b -> {
            long now = System.currentTimeMillis();
            int up = 0;
            for (Backend backend : backends.all()) {
                // a backend that failed lately is down or taken out; one that has had no request since it died would
                // still look fine, so its port is tried too (no request, no GPU time)
                String state = backend.state(now);
                if (backend.usable(now) && !reachable(backend.url())) {
                    state = "unreachable (its port refuses connections)";
                }
                up += state.startsWith("up") || state.startsWith("busy") ? 1 : 0;
                b.detail(backend.url(), state);
            }
            b.detail("up", up + " of " + backends.all().size());
            if (up > 0) {
                b.up();
            } else {
                b.message("no LLM backend usable (down, misconfigured or unreachable): tasks stay in the queue").down();
            }
        });
    }

    /** Whether the backend's host accepts a TCP connection within half a second. */
    static boolean reachable(String url) {
        URI u = URI.create(url);
        int port = u.getPort() > 0 ? u.getPort() : "https".equalsIgnoreCase(u.getScheme()) ? 443 : 80;
        try (Socket socket = new Socket()) {
            socket.connect(new InetSocketAddress(u.getHost(), port), 500);
            return true;
        } catch (IOException | RuntimeException e) {
            return false;
        }
    }

    private static HealthCheck check(String id, Consumer<HealthCheckResultBuilder> body) {
        return new AbstractHealthCheck("llmbatch", id) {
            @Override
            public boolean isLiveness() {
                return false;
            }

            @Override
            protected void doCall(HealthCheckResultBuilder builder, Map<String, Object> options) {
                body.accept(builder);
            }
        };
    }
}
