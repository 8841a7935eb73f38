package io.llmbatch.ops;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

import org.apache.camel.BeanInject;
import org.apache.camel.CamelContext;
import org.apache.camel.ServiceStatus;
import org.apache.camel.component.platform.http.main.ManagementHttpServer;
import org.apache.camel.test.main.junit5.CamelMainTest;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.Broker;
import io.llmbatch.support.Http;
import io.llmbatch.support.Mongo;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Jolokia with route control on, against what a web page open in the operator's browser can send on its own: a GET
 * (an {@code <img src>} with {@code referrerpolicy="no-referrer">}, so neither Origin nor Referer) and the POSTs a
 * form can make without a CORS preflight (text/plain, urlencoded, multipart). None may run an operation; a POST with
 * a JSON Content-Type (which a cross-site page can only send after a preflight Jolokia does not grant) may, as
 * Hawtio 4.2's client does ({@code Content-Type: text/json}, seen in HawtioIT) and {@code curl -H 'Content-Type:
 * application/json'}.
 */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=collector",
        "llmbatch.queue.results=t11c_jolokia_results",
        "llmbatch.queue.results-dlq=t11c_jolokia_results.dlq",
        "llmbatch.mongodb.uri=mongodb://127.0.0.1:" + JolokiaExecTest.MONGO_PORT + "/?serverSelectionTimeoutMS=1000",
        "llmbatch.management.route-control=true",
        "camel.main.routesReloadEnabled=false" }, useJmx = true)
class JolokiaExecTest {

    static final int MONGO_PORT = 20233;
    static final String ROUTE = "collector-results";
    static final HttpClient HTTP = HttpClient.newHttpClient();

    static {
        Mongo.reset(MONGO_PORT);
    }

    @BeanInject
    CamelContext context;

    @AfterAll
    static void deleteQueues() throws Exception {
        try (Broker broker = new Broker()) {
            broker.reset("t11c_jolokia_results", "t11c_jolokia_results.dlq");
        }
    }

    @AfterEach
    void restart() throws Exception {
        if (context.getRouteController().getRouteStatus(ROUTE) != ServiceStatus.Started) {
            context.getRouteController().startRoute(ROUTE);
        }
    }

    HttpResponse<String> send(HttpRequest.Builder request) throws Exception {
        return HTTP.send(request.build(), HttpResponse.BodyHandlers.ofString());
    }

    HttpRequest.Builder to(String path) {
        return HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + managementPort(context) + path));
    }

    /** The management port the node took (tests take a free one: camel.management.port=0). */
    static int managementPort(CamelContext context) {
        return context.hasService(ManagementHttpServer.class).getRouter().getServer().getServer().actualPort();
    }

    HttpRequest.Builder post(String contentType, String body) {
        HttpRequest.Builder b = to("/observe/jolokia").POST(HttpRequest.BodyPublishers.ofString(body));
        return contentType == null ? b : b.header("Content-Type", contentType);
    }

    String mbean() {
        return "org.apache.camel:context=" + context.getManagementName() + ",type=routes,name=\"" + ROUTE + "\"";
    }

    /** What an {@code <img src>} on any web page would request. */
    String stopOverGet() {
        return "/observe/jolokia/exec/" + mbean().replace("\"", "%22") + "/stop()";
    }

    String stopJson() {
        return "{\"type\":\"exec\",\"mbean\":\"" + mbean().replace("\"", "\\\"") + "\",\"operation\":\"stop()\"}";
    }

    ServiceStatus route() {
        return context.getRouteController().getRouteStatus(ROUTE);
    }

    @Test
    void an_operation_over_get_is_refused_even_without_origin_or_referer() throws Exception {
        HttpResponse<String> answer = send(to(stopOverGet()).GET());
        assertThat(answer.statusCode()).as(answer.body()).isEqualTo(405);
        assertThat(answer.body()).contains("POST", "application/json");
        assertThat(route()).isEqualTo(ServiceStatus.Started);
    }

    @Test
    void an_operation_over_get_with_a_harmless_p_parameter_is_refused() throws Exception {
        // Jolokia reads the request from the path when there is one and from p only when there is none: a check that
        // believed p would let <img src=".../exec/...stop()?p=/version"> through
        HttpResponse<String> answer = send(to(stopOverGet() + "?p=/version").GET());
        assertThat(answer.statusCode()).as(answer.body()).isEqualTo(405);
        assertThat(route()).isEqualTo(ServiceStatus.Started);
        HttpResponse<String> viaP = send(to("/observe/jolokia/?p=" + stopOverGet().substring("/observe/jolokia".length())).GET());
        assertThat(viaP.statusCode()).as(viaP.body()).isEqualTo(405);
        assertThat(route()).isEqualTo(ServiceStatus.Started);
    }

    @Test
    void a_form_post_whose_body_is_not_json_for_our_parser_is_refused() throws Exception {
        // invalid UTF-8 makes Jackson refuse the body, while Jolokia's reader turns the byte into U+FFFD and runs the
        // exec: a body we cannot read is refused, not waved through
        byte[] body = (stopJson().substring(0, stopJson().length() - 1) + ",\"x\":\"").getBytes(java.nio.charset.StandardCharsets.UTF_8);
        byte[] bad = java.util.Arrays.copyOf(body, body.length + 3);
        bad[body.length] = (byte) 0xFF;
        bad[body.length + 1] = '"';
        bad[body.length + 2] = '}';
        HttpResponse<String> answer = send(to("/observe/jolokia").POST(HttpRequest.BodyPublishers.ofByteArray(bad))
                .header("Content-Type", "text/plain"));
        assertThat(answer.statusCode()).as(answer.body()).isEqualTo(415);
        assertThat(route()).isEqualTo(ServiceStatus.Started);
    }


    @Test
    void a_page_reaching_the_port_under_its_own_name_is_refused() throws Exception {
        // DNS rebinding: a page whose own name now resolves to 127.0.0.1 is same-origin with the port, sends no Origin,
        // and could read Jolokia, health and metrics, but its Host header is its own name
        int port = managementPort(context);
        for (String path : new String[] { "/observe/health", "/observe/metrics", "/observe/jolokia/version" }) {
            assertThat(Http.statusWithHost(port, path, "rebind.example:" + port)).as(path).isEqualTo(403);
            assertThat(Http.statusWithHost(port, path, "127.0.0.1:" + port)).as(path).isIn(200, 503);
            assertThat(Http.statusWithHost(port, path, "localhost:" + port)).as(path).isIn(200, 503);
            assertThat(Http.statusWithHost(port, path, "[::1]:" + port)).as(path).isIn(200, 503);
        }
    }

    @Test
    void what_a_cross_site_form_can_post_cannot_run_an_operation() throws Exception {
        for (String type : new String[] { "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", null }) {
            HttpResponse<String> answer = send(post(type, stopJson()));
            assertThat(answer.statusCode()).as(type + ": " + answer.body()).isEqualTo(415);
            assertThat(route()).as(type).isEqualTo(ServiceStatus.Started);
        }
        // a bulk request hiding an exec among reads
        HttpResponse<String> bulk = send(post("text/plain", "[{\"type\":\"version\"}," + stopJson() + "]"));
        assertThat(bulk.statusCode()).isEqualTo(415);
        assertThat(route()).isEqualTo(ServiceStatus.Started);
    }

    @Test
    void a_preflight_from_another_site_is_not_granted() throws Exception {
        HttpResponse<String> answer = send(to("/observe/jolokia").method("OPTIONS", HttpRequest.BodyPublishers.noBody())
                .header("Origin", "https://evil.example").header("Access-Control-Request-Method", "POST")
                .header("Access-Control-Request-Headers", "content-type"));
        assertThat(answer.headers().firstValue("Access-Control-Allow-Origin")).isEmpty();
        assertThat(answer.statusCode()).isNotEqualTo(200);
    }

    @Test
    void reads_work_over_get_and_operations_over_post_with_a_json_content_type() throws Exception {
        assertThat(send(to("/observe/jolokia/read/" + mbean().replace("\"", "%22") + "/State")
                .GET()).body()).contains("\"value\":\"Started\"");
        assertThat(send(post("text/plain", "{\"type\":\"version\"}")).statusCode()).as("a read over POST, as curl -d sends it")
                .isEqualTo(200);
        HttpResponse<String> hawtio = send(post("text/json", stopJson())); // Hawtio 4.2's client
        assertThat(hawtio.body()).contains("\"status\":200");
        assertThat(route()).isEqualTo(ServiceStatus.Stopped);
        context.getRouteController().startRoute(ROUTE);
        HttpResponse<String> curl = send(post("application/json; charset=utf-8", stopJson()));
        assertThat(curl.body()).contains("\"status\":200");
        assertThat(route()).isEqualTo(ServiceStatus.Stopped);
    }
}
