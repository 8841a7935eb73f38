package io.llmbatch.ops;

import org.apache.camel.CamelConfiguration;
import org.apache.camel.CamelContext;
import org.apache.camel.PropertyInject;
import org.apache.camel.component.micrometer.MicrometerConstants;
import org.apache.camel.component.platform.http.main.ManagementHttpServer;
import org.apache.camel.component.platform.http.vertx.auth.AuthenticationConfig;
import org.apache.camel.component.platform.http.plugin.JolokiaPlatformHttpPlugin;
import org.apache.camel.spi.Registry;

import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.llmbatch.Urls;
import io.llmbatch.Wiring;

/**
 * The management port of every process (health, Prometheus metrics, Jolokia): our meters beside Camel's on
 * {@code /observe/metrics} (one Prometheus registry, Camel reuses the bound one), and Jolokia with the configured
 * policy. A management port on a non-loopback address needs a password, then asked for on health and metrics too.
 */
public class ManagementConfiguration implements CamelConfiguration {

    private static final Logger LOG = LoggerFactory.getLogger(ManagementConfiguration.class);

    @PropertyInject("camel.management.enabled")
    boolean enabled;
    @PropertyInject("camel.management.host")
    String host;
    @PropertyInject("camel.management.port")
    int port;
    @PropertyInject("camel.management.jolokiaEnabled")
    boolean jolokiaEnabled;
    @PropertyInject("llmbatch.management.jolokia-policy")
    String jolokiaPolicy;
    @PropertyInject("llmbatch.management.route-control")
    boolean routeControl;
    @PropertyInject("llmbatch.management.user")
    String user;
    @PropertyInject(value = "llmbatch.management.password", defaultValue = "")
    String password;
    @PropertyInject(value = "camel.management.path", defaultValue = "/observe")
    String path;

    @Override
    public void configure(CamelContext camelContext) throws Exception {
        if (!enabled) {
            return;
        }
        Wiring.requirePortFree(host, port, "camel.management.port");
        Registry registry = camelContext.getRegistry();
        MeterRegistry meters = registry.lookupByNameAndType(MicrometerConstants.METRICS_REGISTRY_NAME, MeterRegistry.class);
        if (meters == null) {
            meters = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
            registry.bind(MicrometerConstants.METRICS_REGISTRY_NAME, meters);
        }
        Wiring.stopWith(camelContext, Meters.publishTo(meters));
        Wiring.requireSecretWhenExposed("camel.management.host", host, password, "Jolokia, health and metrics",
                "MANAGEMENT_PASSWORD (basic authentication)");
        if (!Wiring.isLoopback(host)) {
            guardBeyondLoopback(camelContext);
        } else if (password.isEmpty()) {
            guardLoopbackNames(camelContext);
        }
        if (jolokiaEnabled) {
            registry.bind(JolokiaPlatformHttpPlugin.NAME, new JolokiaEndpoint(jolokiaPolicy, routeControl, user, password));
        }
    }

    /**
     * Health and metrics are Camel's own handlers on the management server: they get the management password through
     * the server's own authentication configuration (what camel.management.authenticationEnabled sets up from a
     * properties file), with our user and the password from the environment, for everything under
     * {@code camel.management.path} (Jolokia checks it again itself). Camel Main has created the server but not started
     * it when the configuration classes run, so the handler is in place before the port opens; business paths
     * sharing the port are not affected.
     */
    private void guardBeyondLoopback(CamelContext camelContext) {
        AuthenticationConfig auth = authenticationConfig(camelContext);
        if (auth == null) {
            throw new IllegalStateException("camel.management.host=" + host + ": cannot put the management password in front of "
                                            + "health and metrics (the management server is not set up as expected); keep "
                                            + "camel.management.host=127.0.0.1");
        }
        auth.getEntries().add(new BasicAuth(user, password).entry(base() + "/*"));
        auth.setEnabled(true);
    }

    /**
     * On loopback without a password, everything under {@code camel.management.path} answers only requests that name
     * the loopback (Host localhost, 127.x.x.x, [::1]): a web page whose own name it made resolve to 127.0.0.1 (DNS
     * rebinding) is same-origin with the port and sends no Origin, but its Host is its own name. Put in front of
     * Camel's own handlers the way the password is.
     */
    private void guardLoopbackNames(CamelContext camelContext) {
        AuthenticationConfig auth = authenticationConfig(camelContext);
        if (auth == null) {
            LOG.warn("Management port: cannot check the Host of requests (the management server is not set up as expected)");
            return;
        }
        AuthenticationConfig.AuthenticationConfigEntry entry = new AuthenticationConfig.AuthenticationConfigEntry();
        entry.setPath(base() + "/*");
        entry.setAuthenticationProviderFactory(vertx -> null); // nobody to authenticate: the handler checks the Host
        entry.setAuthenticationHandlerFactory(new AuthenticationConfig.AuthenticationHandlerFactory() {
            @Override
            public <T extends io.vertx.ext.auth.authentication.AuthenticationProvider> io.vertx.ext.web.handler.AuthenticationHandler
                    createAuthenticationHandler(T provider) {
                return ctx -> {
                    String authority = ctx.request().authority() == null ? null : ctx.request().authority().toString();
                    if (authority == null || Urls.isLoopbackName(authority)) {
                        ctx.next();
                    } else {
                        ctx.response().setStatusCode(403).putHeader("Content-Type", "application/json")
                                .end("{\"error\":\"Host " + authority.replace("\"", "") + " is not a loopback name: without "
                                     + "llmbatch.management.password this port answers only 127.0.0.1, localhost or [::1]\","
                                     + "\"status\":403}");
                    }
                };
            }
        });
        auth.getEntries().add(entry);
        auth.setEnabled(true);
    }

    private String base() {
        return path.endsWith("/") ? path.substring(0, path.length() - 1) : path;
    }

    /** The management server's authentication configuration, or null when it is not there to configure (yet). */
    private static AuthenticationConfig authenticationConfig(CamelContext camelContext) {
        ManagementHttpServer server = camelContext.hasService(ManagementHttpServer.class);
        return server == null || server.getConfiguration() == null || server.isStarted() ? null
                : server.getConfiguration().getAuthenticationConfig();
    }
}
