package io.llmbatch;

import org.apache.camel.CamelContext;
import org.apache.camel.CamelContextAware;
import org.apache.camel.spi.PropertiesFunction;

import io.llmbatch.embedded.Embedded;
import io.llmbatch.llm.Endpoint;

/**
 * Property function {@code {{llmbatch:...}}}, so that {@code application.properties} can derive settings from
 * other keys (Camel finds it through {@code META-INF/services/org/apache/camel/properties-function/llmbatch}):
 * <ul>
 * <li>{@code {{llmbatch:route-filter}}}: the route id patterns of the roles in {@code llmbatch.roles};</li>
 * <li>{@code {{llmbatch:role:ingest}}}: {@code true} when the role is configured;</li>
 * <li>{@code {{llmbatch:total-slots}}} / {@code {{llmbatch:twice-total-slots}}}: the sum of the slots of
 * {@code llmbatch.llm.endpoints} (or twice it, the worker's default concurrency);</li>
 * <li>{@code {{llmbatch:llm-retries}}}: {@code llmbatch.llm.max-attempts} - 1, the gateway route's redeliveries.</li>
 * </ul>
 */
public class LlmBatchFunction implements PropertiesFunction, CamelContextAware {

    private CamelContext camelContext;

    @Override
    public String getName() {
        return "llmbatch";
    }

    @Override
    public String apply(String remainder) {
        String what = remainder.trim();
        if ("route-filter".equals(what)) {
            return roles().routeFilter();
        }
        if (what.startsWith("role:")) {
            return String.valueOf(roles().has(what.substring(5).trim()));
        }
        if ("total-slots".equals(what) || "twice-total-slots".equals(what)) {
            String endpoints = property("llmbatch.llm.endpoints", "").trim();
            int slots = Embedded.EMBEDDED.equals(endpoints) ? Embedded.LLM_SLOTS
                    : Endpoint.parseAll(endpoints, property("llmbatch.llm.api", "chatglm")).stream().mapToInt(Endpoint::slots).sum();
            return String.valueOf("total-slots".equals(what) ? slots : 2 * slots);
        }
        if ("llm-retries".equals(what)) {
            int attempts = Integer.parseInt(property("llmbatch.llm.max-attempts", "5").trim());
            if (attempts < 1) {
                throw new IllegalArgumentException("llmbatch.llm.max-attempts must be at least 1, was " + attempts);
            }
            return String.valueOf(attempts - 1);
        }
        throw new IllegalArgumentException("{{llmbatch:" + remainder
                                           + "}}: use route-filter, role:<name>, total-slots, twice-total-slots or llm-retries");
    }

    private Roles roles() {
        return Roles.parse(property("llmbatch.roles", null));
    }

    private String property(String key, String defaultValue) {
        return camelContext.getPropertiesComponent().resolveProperty(key).orElse(defaultValue);
    }

    @Override
    public CamelContext getCamelContext() {
        return camelContext;
    }

    @Override
    public void setCamelContext(CamelContext camelContext) {
        this.camelContext = camelContext;
    }
}
