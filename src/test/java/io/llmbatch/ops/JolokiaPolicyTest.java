package io.llmbatch.ops;

import javax.management.ObjectName;

import org.jolokia.server.core.service.api.Restrictor;
import org.jolokia.server.core.util.RequestType;
import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

/** What /observe/jolokia lets a client do: read, never write, only Camel's dumps, route control only when configured. */
class JolokiaPolicyTest {

    static final String POLICY = "classpath:/jolokia-access.xml";
    static final String ROUTE = "org.apache.camel:context=llm-batch,type=routes,name=\"worker-tasks\"";
    static final String CONTEXT = "org.apache.camel:context=llm-batch,type=context,name=\"llm-batch\"";

    @Test
    void by_default_camel_and_jvm_mbeans_are_read_and_nothing_changes() throws Exception {
        Restrictor p = JolokiaEndpoint.restrictor(POLICY, false);
        assertThat(p.isAttributeReadAllowed(new ObjectName(ROUTE), "ExchangesTotal")).isTrue();
        assertThat(p.isAttributeReadAllowed(new ObjectName("java.lang:type=Memory"), "HeapMemoryUsage")).isTrue();
        assertThat(p.isAttributeReadAllowed(new ObjectName("java.lang:type=Runtime"), "Uptime")).isTrue();
        assertThat(p.isOperationAllowed(new ObjectName(CONTEXT), "dumpRoutesAsXml")).as("Hawtio's route diagram").isTrue();
        assertThat(p.isOperationAllowed(new ObjectName(CONTEXT), "dumpRoutesAsXml()")).as("named with its signature").isTrue();
        assertThat(p.isOperationAllowed(new ObjectName(CONTEXT), "dumpRoutesStatsAsXml(boolean,boolean)")).isTrue();
        assertThat(p.isOperationAllowed(new ObjectName(ROUTE), "stop()")).isFalse();

        assertThat(p.isTypeAllowed(RequestType.WRITE)).isFalse();
        assertThat(p.isAttributeWriteAllowed(new ObjectName(ROUTE), "Tracing")).isFalse();
        for (String op : new String[] { "stop", "start", "suspend", "reset", "remove", "updateRouteFromXml" }) {
            assertThat(p.isOperationAllowed(new ObjectName(ROUTE), op)).as(op).isFalse();
        }
        assertThat(p.isOperationAllowed(new ObjectName(CONTEXT), "stop")).isFalse();
        assertThat(p.isOperationAllowed(new ObjectName(CONTEXT), "sendBody")).isFalse();
        assertThat(p.isOperationAllowed(new ObjectName("java.lang:type=Memory"), "gc")).isFalse();
        assertThat(p.isOperationAllowed(new ObjectName("com.sun.management:type=DiagnosticCommand"), "vmSystemProperties")).isFalse();
        assertThat(p.isAttributeReadAllowed(new ObjectName("org.apache.logging.log4j2:type=x"), "ConfigText")).isFalse();
        assertThat(p.isAttributeReadAllowed(new ObjectName("java.lang:type=Runtime"), "SystemProperties")).isFalse();
        assertThat(p.isAttributeReadAllowed(new ObjectName("java.lang:type=Runtime"), "InputArguments")).isFalse();
    }

    @Test
    void pages_from_other_sites_are_refused() throws Exception {
        Restrictor p = JolokiaEndpoint.restrictor(POLICY, true);
        assertThat(p.isOriginAllowed("https://evil.example", true)).isFalse();
        assertThat(p.isOriginAllowed("http://127.0.0.1.evil.example", true)).isFalse();
        assertThat(p.isOriginAllowed("http://127.0.0.1:8090", true)).as("bin/hawtio").isTrue();
        assertThat(p.isOriginAllowed("http://localhost:8090", true)).isTrue();
        assertThat(p.isOriginAllowed(null, true)).as("no Origin: curl, Prometheus").isTrue();
    }

    @Test
    void route_control_adds_start_stop_suspend_resume_of_routes_only() throws Exception {
        Restrictor p = JolokiaEndpoint.restrictor(POLICY, true);
        for (String op : new String[] { "stop", "start", "suspend", "resume" }) {
            assertThat(p.isOperationAllowed(new ObjectName(ROUTE), op)).as(op).isTrue();
        }
        assertThat(p.isOperationAllowed(new ObjectName(ROUTE), "stop()")).isTrue();
        assertThat(p.isOperationAllowed(new ObjectName(ROUTE), "remove")).isFalse();
        assertThat(p.isOperationAllowed(new ObjectName(ROUTE), "updateRouteFromXml")).isFalse();
        assertThat(p.isOperationAllowed(new ObjectName(CONTEXT), "stop")).as("the whole context: no").isFalse();
        assertThat(p.isOperationAllowed(new ObjectName("java.lang:type=Memory"), "gc")).isFalse();
        assertThat(p.isTypeAllowed(RequestType.WRITE)).isFalse();
    }
}
