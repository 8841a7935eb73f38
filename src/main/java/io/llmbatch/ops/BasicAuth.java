package io.llmbatch.ops;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.Base64;

import io.vertx.core.AsyncResult;
import io.vertx.core.Future;
import io.vertx.core.Handler;
import io.vertx.core.http.HttpHeaders;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.auth.User;
import io.vertx.ext.auth.authentication.AuthenticationProvider;
import io.vertx.ext.web.RoutingContext;
import io.vertx.ext.web.handler.AuthenticationHandler;
import io.vertx.ext.web.handler.BasicAuthHandler;
import org.apache.camel.component.platform.http.vertx.auth.AuthenticationConfig;

/** HTTP basic authentication with the management user and password (llmbatch.management.user/password). */
final class BasicAuth {

    private final String expectedAuthorization;
    private final String user;
    private final String password;

    /** @param password blank = no authentication */
    BasicAuth(String user, String password) {
        this.user = user;
        this.password = password;
        this.expectedAuthorization = password == null || password.isEmpty() ? null
                : "Basic " + Base64.getEncoder().encodeToString((user + ":" + password).getBytes(StandardCharsets.UTF_8));
    }

    boolean required() {
        return expectedAuthorization != null;
    }

    /** Whether the request may pass: no password configured, or the right credentials (compared in constant time). */
    boolean allows(RoutingContext ctx) {
        String header = ctx.request().getHeader(HttpHeaders.AUTHORIZATION);
        return expectedAuthorization == null || header != null && MessageDigest.isEqual(header.getBytes(StandardCharsets.UTF_8),
                expectedAuthorization.getBytes(StandardCharsets.UTF_8));
    }

    /** Answers 401 with the challenge a browser or Prometheus answers with credentials. */
    static void challenge(RoutingContext ctx) {
        ctx.response().setStatusCode(401).putHeader("WWW-Authenticate", "Basic realm=\"llm-batch\"").end();
    }

    /** For Camel's platform-http authentication: Vert.x basic authentication of {@code path} with these credentials. */
    AuthenticationConfig.AuthenticationConfigEntry entry(String path) {
        AuthenticationConfig.AuthenticationConfigEntry entry = new AuthenticationConfig.AuthenticationConfigEntry();
        entry.setPath(path);
        entry.setAuthenticationProviderFactory(vertx -> new AuthenticationProvider() {
            @Override
            public void authenticate(JsonObject credentials, Handler<AsyncResult<User>> done) {
                byte[] u = String.valueOf(credentials.getString("username")).getBytes(StandardCharsets.UTF_8);
                byte[] p = String.valueOf(credentials.getString("password")).getBytes(StandardCharsets.UTF_8);
                // both compared, in constant time, whatever the first says
                boolean userOk = MessageDigest.isEqual(u, user.getBytes(StandardCharsets.UTF_8));
                boolean passwordOk = MessageDigest.isEqual(p, password.getBytes(StandardCharsets.UTF_8));
                done.handle(userOk && passwordOk ? Future.succeededFuture(User.fromName(user))
                        : Future.failedFuture("wrong user or password"));
            }
        });
        entry.setAuthenticationHandlerFactory(new AuthenticationConfig.AuthenticationHandlerFactory() {
            @Override
            public <T extends AuthenticationProvider> AuthenticationHandler createAuthenticationHandler(T provider) {
                return BasicAuthHandler.create(provider, "llm-batch");
            }
        });
        return entry;
    }
}
