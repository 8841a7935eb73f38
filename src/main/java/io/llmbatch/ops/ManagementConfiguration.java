package io.llmbatch.ops;

import org.apache.camel.CamelConfiguration;
import org.apache.camel.CamelContext;
import org.apache.camel.PropertyInject;
import org.apache.camel.component.micrometer.MicrometerConstants;
import org.apache.camel.component.platform.http.plugin.JolokiaPlatformHttpPlugin;
import org.apache.camel.spi.Registry;

import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;

import io.llmbatch.Wiring;

/**
 * The management port of every process (health, Prometheus metrics, Jolokia): our meters beside Camel's on
 * {@code /observe/metrics} (one Prometheus registry, Camel reuses the bound one), and Jolokia with the configured
 * policy. A management port on a non-loopback address needs a password.
 */
public class ManagementConfiguration implements CamelConfiguration {

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
        if (jolokiaEnabled) {
            Wiring.requireSecretWhenExposed("camel.management.host", host, password, "Jolokia",
                    "MANAGEMENT_PASSWORD (basic authentication)");
            registry.bind(JolokiaPlatformHttpPlugin.NAME, new JolokiaEndpoint(jolokiaPolicy, routeControl, user, password));
        }
    }
}
