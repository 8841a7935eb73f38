package io.llmbatch.ops;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.util.Base64;

import org.apache.camel.BeanInject;
import org.apache.camel.CamelContext;
import org.apache.camel.test.main.junit5.CamelMainTest;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import io.llmbatch.support.Broker;
import io.llmbatch.support.Mongo;
import io.llmbatch.support.RabbitMQRequired;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A management port bound beyond loopback (camel.management.host=0.0.0.0, with the password the start requires):
 * health and metrics need the management password like Jolokia, as a Prometheus scraper sends it (basic_auth).
 */
@ExtendWith(RabbitMQRequired.class)
@CamelMainTest(properties = {
        "llmbatch.roles=collector",
        "llmbatch.queue.results=t11c_auth_results",
        "llmbatch.queue.results-dlq=t11c_auth_results.dlq",
        "llmbatch.mongodb.uri=mongodb://127.0.0.1:" + ManagementAuthTest.MONGO_PORT + "/?serverSelectionTimeoutMS=1000",
        "camel.management.host=0.0.0.0",
        "llmbatch.management.password=t11c-secret",
        "camel.main.routesReloadEnabled=false" })
class ManagementAuthTest {

    static final int MONGO_PORT = 20234;
    static final String AUTH = "Basic " + Base64.getEncoder().encodeToString("admin:t11c-secret".getBytes(StandardCharsets.UTF_8));
    static final String WRONG = "Basic " + Base64.getEncoder().encodeToString("admin:guess".getBytes(StandardCharsets.UTF_8));
    static final HttpClient HTTP = HttpClient.newHttpClient();

    static {
        Mongo.reset(MONGO_PORT);
    }

    @BeanInject
    CamelContext context;

    @AfterAll
    static void deleteQueues() throws Exception {
        try (Broker broker = new Broker()) {
            broker.reset("t11c_auth_results", "t11c_auth_results.dlq");
        }
    }

    HttpResponse<String> get(String path, String authorization) throws Exception {
        HttpRequest.Builder request = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + JolokiaExecTest.managementPort(context)
                                                                        + path)).GET();
        if (authorization != null) {
            request.header("Authorization", authorization);
        }
        return HTTP.send(request.build(), HttpResponse.BodyHandlers.ofString());
    }

    @Test
    void health_and_metrics_beyond_loopback_need_the_management_password() throws Exception {
        for (String path : new String[] { "/observe/health", "/observe/health/ready", "/observe/health/live", "/observe/metrics",
                                          "/observe/jolokia/version" }) {
            assertThat(get(path, null).statusCode()).as(path + " without a password").isEqualTo(401);
            assertThat(get(path, WRONG).statusCode()).as(path + " with a wrong one").isEqualTo(401);
            assertThat(get(path, AUTH).statusCode()).as(path + " with it").isIn(200, 503);
        }
        assertThat(get("/observe/metrics", AUTH).body()).contains("camel_");
        assertThat(get("/observe/health/ready", null).headers().firstValue("WWW-Authenticate")).hasValue("Basic realm=\"llm-batch\"");
    }
}
