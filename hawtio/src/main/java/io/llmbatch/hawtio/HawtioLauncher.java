package io.llmbatch.hawtio;

import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import org.eclipse.jetty.ee10.webapp.WebAppContext;
import org.eclipse.jetty.http.HttpHeader;
import org.eclipse.jetty.server.Handler;
import org.eclipse.jetty.server.Request;
import org.eclipse.jetty.server.Response;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import org.eclipse.jetty.server.handler.ContextHandler;
import org.eclipse.jetty.server.handler.ContextHandlerCollection;
import org.eclipse.jetty.util.Callback;
import org.eclipse.jetty.util.ClassMatcher;

/**
 * Hawtio 4.2 (the war) on Jetty, already pointed at one llm-batch node's Jolokia:
 * {@code java -jar llm-batch-hawtio.jar [--host 127.0.0.1] [--port 8090] [http://127.0.0.1:9876/observe/jolokia]}.
 * <p>
 * Hawtio 4.2 keeps its connections in the browser (localStorage {@code connect.connections}) and selects one with
 * {@code /hawtio/?con=ID}; it has no server-side preset connections yet. So {@code /} is a small page that stores
 * the node's connection in the browser and opens {@code /hawtio/camel?con=ID}: one URL, no clicking, no login.
 */
public final class HawtioLauncher {

    static final String DEFAULT_JOLOKIA = "http://127.0.0.1:9876/observe/jolokia";

    public static void main(String[] args) throws Exception {
        String host = "127.0.0.1";
        int port = 8090;
        String jolokia = DEFAULT_JOLOKIA;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--host" -> host = args[++i];
                case "--port" -> port = Integer.parseInt(args[++i]);
                default -> jolokia = args[i];
            }
        }
        URI node = jolokiaUrl(jolokia);
        // A local console: no Hawtio login (the node's Jolokia has its own access policy), and the proxy may reach
        // only this machine and the node's host. Each can still be overridden with -Dhawtio.*=...
        System.setProperty("hawtio.authenticationEnabled", System.getProperty("hawtio.authenticationEnabled", "false"));
        System.setProperty("hawtio.proxyAllowlist",
                System.getProperty("hawtio.proxyAllowlist", "localhost,127.0.0.1," + node.getHost()));

        Path war = Path.of(System.getProperty("hawtio.war", jarDirectory().resolve("hawtio.war").toString()));
        if (!Files.isRegularFile(war)) {
            throw new IllegalStateException("Hawtio war not found at " + war + ": build with mvn -f hawtio/pom.xml package");
        }
        WebAppContext hawtio = new WebAppContext();
        hawtio.setContextPath("/hawtio");
        hawtio.setWar(war.toString());
        // the war brings its own slf4j and log4j: keep Jetty's logger (its classes and service file) out of its sight
        hawtio.addHiddenClassMatcher(new ClassMatcher("org.slf4j.",
                org.slf4j.simple.SimpleServiceProvider.class.getProtectionDomain().getCodeSource().getLocation().toString()));

        Server server = new Server();
        ServerConnector connector = new ServerConnector(server);
        connector.setHost(host);
        connector.setPort(port);
        server.addConnector(connector);
        Handler handlers = new ContextHandlerCollection(hawtio, new ContextHandler(new ConnectPage(node), "/"));
        boolean loopback = java.net.InetAddress.getByName(host).isLoopbackAddress();
        // on loopback, only requests that name it: a page that made its own name resolve to 127.0.0.1 (DNS rebinding)
        // would otherwise drive the console and its proxy to the node's Jolokia, with no login to stop it
        server.setHandler(loopback ? new LoopbackHostOnly(handlers) : handlers);
        server.setStopAtShutdown(true);
        server.start();
        String url = "http://" + (host.contains(":") ? "[" + host + "]" : host) + ":" + connector.getLocalPort() + "/";
        System.out.println("Hawtio for the llm-batch node at " + jolokia + " is ready: open " + url);
        if (!loopback) {
            System.out.println("WARNING: Hawtio listens on " + host + " without a login: whoever reaches " + url
                               + " can do on the node whatever its Jolokia access policy allows.");
        }
        server.join();
    }

    private static URI jolokiaUrl(String url) {
        try {
            URI uri = new URI(url);
            if (uri.getHost() != null && ("http".equals(uri.getScheme()) || "https".equals(uri.getScheme()))) {
                return uri;
            }
        } catch (java.net.URISyntaxException e) {
            // reported below
        }
        System.err.println("Not a Jolokia URL: " + url + " (e.g. " + DEFAULT_JOLOKIA + ")");
        System.exit(2);
        return null;
    }

    private static Path jarDirectory() throws Exception {
        return Path.of(HawtioLauncher.class.getProtectionDomain().getCodeSource().getLocation().toURI()).getParent();
    }

    /** Answers 403 to a request whose Host is not localhost, 127.x.x.x or [::1]. */
    static final class LoopbackHostOnly extends Handler.Wrapper {

        LoopbackHostOnly(Handler handler) {
            super(handler);
        }

        @Override
        public boolean handle(Request request, Response response, Callback callback) throws Exception {
            String name = request.getHttpURI().getHost();
            if (name == null || name.equalsIgnoreCase("localhost") || name.matches("127(\\.\\d{1,3}){3}")
                || name.equals("[::1]") || name.equals("::1")) {
                return super.handle(request, response, callback);
            }
            Response.writeError(request, response, callback, 403, "Host " + name + " is not a loopback name: this console "
                                                                   + "answers only 127.0.0.1, localhost or [::1]");
            return true;
        }
    }

    /** {@code /}: saves the node as a Hawtio connection in the browser, then opens Hawtio's Camel page on it. */
    static final class ConnectPage extends Handler.Abstract {

        private final byte[] page;

        ConnectPage(URI node) {
            int port = node.getPort() > 0 ? node.getPort() : ("https".equals(node.getScheme()) ? 443 : 80);
            String id = "llm-batch-" + node.getHost() + "-" + port;
            String connection = "{\"id\":" + json(id) + ",\"name\":" + json("llm-batch " + node.getHost() + ":" + port)
                                + ",\"scheme\":" + json(node.getScheme()) + ",\"host\":" + json(node.getHost())
                                + ",\"port\":" + port + ",\"path\":" + json(node.getRawPath()) + "}";
            page = ("<!doctype html><html><head><meta charset=\"utf-8\"><title>llm-batch: Hawtio</title></head><body>"
                    + "<p>Connecting Hawtio to the llm-batch node at " + escapeHtml(node.toString()) + " ...</p><script>\n"
                    + "var c = " + connection + ", all = {};\n"
                    + "try { all = JSON.parse(localStorage.getItem('connect.connections')) || {}; } catch (e) {}\n"
                    + "all[c.id] = c;\n"
                    + "localStorage.setItem('connect.connections', JSON.stringify(all));\n"
                    + "location.replace('/hawtio/camel?con=' + encodeURIComponent(c.id));\n"
                    + "</script></body></html>").getBytes(StandardCharsets.UTF_8);
        }

        @Override
        public boolean handle(Request request, Response response, Callback callback) {
            if (!"/".equals(Request.getPathInContext(request))) {
                return false;
            }
            response.getHeaders().put(HttpHeader.CONTENT_TYPE, "text/html;charset=utf-8");
            response.getHeaders().put(HttpHeader.CACHE_CONTROL, "no-store");
            response.write(true, java.nio.ByteBuffer.wrap(page), callback);
            return true;
        }

        /** A JSON string literal that is also safe inside a script element. */
        private static String json(String s) {
            StringBuilder out = new StringBuilder("\"");
            for (char ch : s.toCharArray()) {
                if (ch == '"' || ch == '\\' || ch < 0x20 || ch == '<' || ch == '>' || ch == '&') {
                    out.append(String.format("\\u%04x", (int) ch));
                } else {
                    out.append(ch);
                }
            }
            return out.append('"').toString();
        }

        private static String escapeHtml(String s) {
            return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;");
        }
    }
}
