package io.llmbatch.rabbit;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;

import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

import com.rabbitmq.client.ConnectionFactory;

/**
 * TLS for {@code amqps://} brokers with the peer verified. The RabbitMQ client's {@code setUri("amqps://...")} on its
 * own trusts every certificate (its TrustEverythingTrustManager); here the broker's certificate must chain to the
 * trust store and name the host connected to.
 */
public final class Tls {

    private Tls() {
    }

    public static boolean isTls(String url) {
        return url.trim().regionMatches(true, 0, "amqps:", 0, 6);
    }

    /**
     * Verifies the broker against {@code trustStore} (a PKCS12 or JKS file), or, when blank, the JVM's trust store
     * ({@code -Djavax.net.ssl.trustStore}, else the JDK's CA certificates); checks the host name too.
     * Call before {@code setUri}, which would otherwise install the trust-everything manager.
     */
    public static void verifyPeer(ConnectionFactory rabbit, String trustStore, String password) {
        try {
            rabbit.useSslProtocol(trustStore == null || trustStore.isBlank() ? SSLContext.getDefault() : context(Path.of(trustStore), password));
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("cannot set up TLS for the broker: " + e.getMessage(), e);
        }
        rabbit.enableHostnameVerification();
    }

    static SSLContext context(Path file, String password) throws GeneralSecurityException {
        if (!Files.isReadable(file)) {
            throw new IllegalArgumentException("llmbatch.rabbitmq.trust-store: cannot read " + file.toAbsolutePath());
        }
        KeyStore store;
        try {
            store = KeyStore.getInstance(file.toFile(), password == null ? new char[0] : password.toCharArray());
        } catch (IOException e) {
            throw new IllegalArgumentException("llmbatch.rabbitmq.trust-store: cannot open " + file.toAbsolutePath()
                                               + " (PKCS12 or JKS; password from RABBITMQ_TRUST_STORE_PASSWORD): " + e.getMessage(), e);
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(store);
        SSLContext context = SSLContext.getInstance("TLS");
        context.init(null, tmf.getTrustManagers(), null);
        return context;
    }
}
