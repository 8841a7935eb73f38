package io.llmbatch;

import org.apache.camel.BeanInject;
import org.apache.camel.CamelContext;
import org.apache.camel.Route;
import org.apache.camel.component.platform.http.main.MainHttpServer;
import org.apache.camel.test.main.junit5.CamelMainTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;

/** A machine without the ingest role loads no ingest route and opens no HTTP port. */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = { "llmbatch.roles=worker", "camel.main.routesReloadEnabled=false" })
class WorkerRoleTest {

    @BeanInject
    CamelContext context;

    @Test
    void worker_only_process_loads_no_ingest_route_and_serves_no_http() {
        assertThat(context.getRoutes()).extracting(Route::getRouteId).noneMatch(id -> id.startsWith("ingest-"));
        assertThat(context.hasService(MainHttpServer.class)).isNull();
    }
}
