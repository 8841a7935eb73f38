package io.llmbatch;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.UnknownHostException;
import java.util.Arrays;
import java.util.List;

import org.apache.camel.CamelContext;
import org.apache.camel.support.service.ServiceSupport;

import io.llmbatch.embedded.Embedded;

/**
 * What the per-role configurations ({@code camel.main.configurationClasses}) share: the process's roles and host,
 * stopping a resource with the context, and the start-up checks that keep a node from running deaf or exposed.
 */
public final class Wiring {

    /** Registry name of the {@link Node}: bound by the broker configuration, read by the role configurations. */
    public static final String NODE = "llmbatchNode";

    /** Who this process is: its roles and the host name put into results, dead letters and status reports. */
    public record Node(Roles roles, String host) {
    }

    private Wiring() {
    }

    /** The node, bound by {@code BrokerConfiguration} (listed first). */
    public static Node node(CamelContext camelContext) {
        Node node = camelContext.getRegistry().lookupByNameAndType(NODE, Node.class);
        if (node == null) {
            throw new IllegalStateException("io.llmbatch.rabbit.BrokerConfiguration must come before the role configurations "
                                            + "in camel.main.configurationClasses");
        }
        return node;
    }

    /** Runs {@code stop} when the context stops, after the routes (a connection, a client, an embedded server). */
    public static void stopWith(CamelContext camelContext, Runnable stop) throws Exception {
        camelContext.addService(new ServiceSupport() {
            @Override
            protected void doStop() {
                stop.run();
            }
        }, true, true);
    }

    /** Stops an embedded part with the context; returns its address. */
    public static String embedded(CamelContext camelContext, Embedded.Running running) throws Exception {
        stopWith(camelContext, running.stop());
        return running.address();
    }

    /**
     * Camel 4.17's Vert.x server only logs a warning when its port is taken and the app would run deaf: fail
     * the start instead, naming the setting to change (several processes on one machine need one port each).
     */
    public static void requirePortFree(String host, int port, String setting) {
        if (port == 0) {
            return;
        }
        try (ServerSocket probe = new ServerSocket()) {
            probe.setReuseAddress(true);
            probe.bind(new InetSocketAddress(host, port));
        } catch (IOException e) {
            throw new IllegalStateException("cannot serve HTTP on " + host + ":" + port + " (" + e.getMessage()
                                            + "): another process listens there; give this one its own -D" + setting + "=...", e);
        }
    }

    /** Whether {@code host} is a loopback address (what a server bound there can be reached from: this machine only). */
    public static boolean isLoopback(String host) throws UnknownHostException {
        return InetAddress.getByName(host).isLoopbackAddress();
    }

    /** A server bound beyond loopback must be locked: without its secret the start fails, saying what to set. */
    public static void requireSecretWhenExposed(String hostSetting, String host, String secret, String what, String secretToSet)
            throws UnknownHostException {
        if (!isLoopback(host) && (secret == null || secret.isBlank())) {
            throw new IllegalStateException(hostSetting + "=" + host + " exposes " + what + " beyond this machine: set "
                                            + secretToSet + " or keep " + hostSetting + "=127.0.0.1");
        }
    }

    /** The non-blank items of a comma list, trimmed. */
    public static List<String> list(String commaList) {
        return commaList == null ? List.of()
                : Arrays.stream(commaList.split(",")).map(String::trim).filter(s -> !s.isEmpty()).toList();
    }
}
