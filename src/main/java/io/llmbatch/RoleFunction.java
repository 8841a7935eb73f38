package io.llmbatch;

import org.apache.camel.CamelContext;
import org.apache.camel.CamelContextAware;
import org.apache.camel.spi.PropertiesFunction;

/**
 * Property function {@code {{llmbatch-role:X}}} so that {@code application.properties} can derive settings
 * from {@code llmbatch.roles}: {@code {{llmbatch-role:route-filter}}} gives the route id patterns of the
 * configured roles, {@code {{llmbatch-role:ingest}}} gives {@code true} when the ingest role is configured.
 * Found by Camel through {@code META-INF/services/org/apache/camel/properties-function/llmbatch-role}.
 */
public class RoleFunction implements PropertiesFunction, CamelContextAware {

    private CamelContext camelContext;

    @Override
    public String getName() {
        return "llmbatch-role";
    }

    @Override
    public String apply(String remainder) {
        Roles roles = Roles.parse(camelContext.getPropertiesComponent().resolveProperty("llmbatch.roles").orElse(null));
        String what = remainder.trim();
        return "route-filter".equals(what) ? roles.routeFilter() : String.valueOf(roles.has(what));
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
