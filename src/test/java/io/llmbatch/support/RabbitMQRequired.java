package io.llmbatch.support;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URI;

import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

import static org.junit.jupiter.api.Assertions.fail;

/**
 * Fails a test class with a clear message, before Camel starts, when the broker the tests use is not
 * reachable. Never skips: a test that needs RabbitMQ and cannot reach it has not passed.
 * Declare it before {@code @CamelMainTest} so it runs first.
 */
public class RabbitMQRequired implements BeforeAllCallback {

    /** The broker the tests use (set by the pom from {@code test.rabbitmq.url}), never the embedded one. */
    public static final String URL = System.getenv().getOrDefault("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/");

    @Override
    public void beforeAll(ExtensionContext context) {
        URI uri = URI.create(URL);
        int port = uri.getPort() > 0 ? uri.getPort() : 5672;
        try (Socket socket = new Socket()) {
            socket.connect(new InetSocketAddress(uri.getHost(), port), 2000);
        } catch (IOException e) {
            fail("RabbitMQ is not reachable at " + uri.getHost() + ":" + port + " (" + e.getMessage() + "). "
                 + "These tests need a real broker: start one with `rabbitmq-server -detached` "
                 + "(Debian: apt-get install -y rabbitmq-server) or point -Dtest.rabbitmq.url at one; .ci/run does both.");
        }
    }
}
