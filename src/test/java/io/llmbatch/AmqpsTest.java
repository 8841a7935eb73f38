package io.llmbatch;

import io.llmbatch.rabbit.BrokerConfiguration;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import javax.net.ssl.SSLHandshakeException;

import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.GetResponse;
import org.apache.camel.test.main.junit5.CamelMainTest;
import org.apache.camel.util.FileUtil;
import org.junit.jupiter.api.Test;
import org.springframework.amqp.rabbit.connection.CachingConnectionFactory;

import io.llmbatch.embedded.Embedded;
import io.llmbatch.support.Http;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * {@code amqps://}: an ingest node publishes over TLS to a broker (Qpid Broker-J with a TLS-only port and a
 * certificate made here for "localhost"), and the broker is verified: a certificate outside the trust store, or not
 * naming the host connected to, is refused.
 */
@CamelMainTest(properties = {
        "llmbatch.roles=ingest",
        "llmbatch.rabbitmq.url=amqps://guest:guest@localhost:" + AmqpsTest.PORT + "/",
        "llmbatch.rabbitmq.trust-store=target/tls/trust.p12",
        "llmbatch.rabbitmq.trust-store-password=" + AmqpsTest.TRUST_PASSWORD,
        "llmbatch.queue.tasks=test_tls_tasks",
        "llmbatch.ingest.allowed-queues=test_tls_tasks",
        "llmbatch.ingest.inbox=target/test-inbox-tls",
        "camel.server.port=18196",
        "camel.main.routesReloadEnabled=false" })
class AmqpsTest {

    static final int PORT = 18195;
    static final String TRUST_PASSWORD = "test-trust";
    static final Path DIR = Path.of("target/tls");

    static {
        try {
            FileUtil.removeDir(DIR.toFile());
            Files.createDirectories(DIR);
            // the broker's key and a certificate for "localhost" only (no IP address in it), and a trust store with it
            keytool("-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048", "-dname", "CN=localhost",
                    "-ext", "SAN=dns:localhost", "-validity", "2", "-storetype", "PKCS12", "-keystore", "broker.p12",
                    "-storepass", "test-broker", "-keypass", "test-broker");
            keytool("-exportcert", "-alias", "broker", "-keystore", "broker.p12", "-storepass", "test-broker", "-file", "broker.crt");
            keytool("-importcert", "-noprompt", "-alias", "broker", "-file", "broker.crt", "-storetype", "PKCS12",
                    "-keystore", "trust.p12", "-storepass", TRUST_PASSWORD);
            Embedded.broker(DIR, PORT, AmqpsTest.class.getResource("/tls/qpid-tls.json"),
                    Map.of("qpid.tls_keystore", DIR.resolve("broker.p12").toAbsolutePath().toString(),
                           "qpid.tls_keystore_password", "test-broker"));
        } catch (Exception e) {
            throw new IllegalStateException("cannot start the TLS test broker: " + e.getMessage(), e);
        }
    }

    @Test
    void tasks_posted_to_ingest_travel_over_tls() throws Exception {
        String body = "[{\"reg_dt\": \"2020-01-01\", \"addr\": \"北京\", \"ent_table_name\": \"加密一\"},"
                      + " {\"reg_dt\": \"2020-01-01\", \"addr\": \"上海\", \"ent_table_name\": \"加密二\"}]";
        assertThat(Http.post(18196, "/api/tasks", body).status()).isEqualTo(200);

        CachingConnectionFactory cf = BrokerConfiguration.brokers("amqps://guest:guest@localhost:" + PORT + "/",
                "target/tls/trust.p12", TRUST_PASSWORD);
        List<String> names = new ArrayList<>();
        try (Connection c = cf.getRabbitConnectionFactory().newConnection(); Channel ch = c.createChannel()) {
            for (GetResponse r; (r = ch.basicGet("test_tls_tasks", true)) != null; ) {
                names.add(new String(r.getBody(), StandardCharsets.UTF_8));
            }
        } finally {
            cf.destroy();
        }
        assertThat(names).hasSize(2);
        assertThat(names.get(0)).contains("加密一");
    }

    @Test
    void a_broker_certificate_outside_the_trust_store_is_refused() {
        // no trust store: the JVM's CA certificates, which do not hold the test broker's self-made certificate
        CachingConnectionFactory cf = BrokerConfiguration.brokers("amqps://guest:guest@localhost:" + PORT + "/", "", "");
        assertThatThrownBy(() -> cf.getRabbitConnectionFactory().newConnection()).isInstanceOf(SSLHandshakeException.class)
                .hasStackTraceContaining("unable to find valid certification path");
        cf.destroy();
    }

    @Test
    void a_certificate_for_another_host_name_is_refused() {
        // trusted, but it names "localhost" and the URL says 127.0.0.1
        CachingConnectionFactory cf = BrokerConfiguration.brokers("amqps://guest:guest@127.0.0.1:" + PORT + "/",
                "target/tls/trust.p12", TRUST_PASSWORD);
        assertThatThrownBy(() -> cf.getRabbitConnectionFactory().newConnection()).isInstanceOf(SSLHandshakeException.class)
                .hasStackTraceContaining("No subject alternative names matching IP address 127.0.0.1");
        cf.destroy();
    }

    @Test
    void a_missing_trust_store_or_mixed_schemes_stop_the_start_with_the_setting_to_fix() {
        assertThatThrownBy(() -> BrokerConfiguration.brokers("amqps://localhost/", "target/tls/nothing.p12", ""))
                .hasMessageContaining("llmbatch.rabbitmq.trust-store: cannot read");
        assertThatThrownBy(() -> BrokerConfiguration.brokers("amqps://localhost/", "target/tls/trust.p12", "wrong"))
                .hasMessageContaining("llmbatch.rabbitmq.trust-store: cannot open");
        assertThatThrownBy(() -> BrokerConfiguration.brokers("amqps://u:secret@a/,amqp://u:secret@b/", "", ""))
                .hasMessageContaining("mixes amqp:// and amqps://").hasMessageNotContaining("secret");
    }

    static void keytool(String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "keytool").toString()));
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).directory(DIR.toFile()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (p.waitFor() != 0) {
            throw new IllegalStateException(String.join(" ", cmd) + " failed: " + out);
        }
    }
}
