package io.llmbatch.ops;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.lang.reflect.Proxy;

import javax.management.ObjectName;

import javax.management.RuntimeMBeanException;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.netty.buffer.ByteBufInputStream;
import io.vertx.core.Handler;
import io.vertx.core.http.HttpHeaders;
import io.vertx.core.http.HttpMethod;
import io.vertx.core.http.HttpServerRequest;
import io.vertx.ext.web.RoutingContext;
import io.vertx.ext.web.impl.Utils;
import org.apache.camel.CamelContext;
import org.apache.camel.component.platform.http.plugin.JolokiaPlatformHttpPlugin;
import org.apache.camel.support.service.ServiceSupport;
import org.jolokia.json.JSONStructure;
import org.jolokia.server.core.config.ConfigKey;
import org.jolokia.server.core.config.StaticConfiguration;
import org.jolokia.server.core.http.HttpRequestHandler;
import org.jolokia.server.core.restrictor.RestrictorFactory;
import org.jolokia.server.core.restrictor.policy.PolicyRestrictor;
import org.jolokia.server.core.service.JolokiaServiceManagerFactory;
import org.jolokia.server.core.service.api.JolokiaServiceManager;
import org.jolokia.server.core.service.api.LogHandler;
import org.jolokia.server.core.service.api.Restrictor;
import org.jolokia.server.core.util.NetworkUtil;
import org.jolokia.service.jmx.LocalRequestHandler;
import org.jolokia.service.serializer.JolokiaSerializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code /observe/jolokia} with a policy chosen by {@code llmbatch.management.jolokia-policy} (Camel's own plugin
 * reads only {@code classpath:/jolokia-access.xml} and allows everything when it is missing) and HTTP basic
 * authentication when a password is set. Bound as the "jolokia" plugin, so Camel's management server uses it.
 */
public final class JolokiaEndpoint extends ServiceSupport implements JolokiaPlatformHttpPlugin {

    private static final Logger LOG = LoggerFactory.getLogger(JolokiaEndpoint.class);

    static final Set<String> READ_ONLY_OPERATIONS = Set.of("dumpRoutesAsXml", "dumpRouteAsXml", "dumpRoutesStatsAsXml",
            "dumpRouteStatsAsXml", "dumpStatsAsXml");
    static final Set<String> ROUTE_CONTROL = Set.of("start", "stop", "suspend", "resume");

    /** Content types a cross-site page can only send after a CORS preflight (which Jolokia does not grant): Hawtio
     *  4.2's client sends text/json. text/plain, urlencoded and multipart are what a plain form can send. */
    static final Set<String> JSON_TYPES = Set.of("application/json", "text/json");
    /** Request types that change something: only over POST with a JSON Content-Type. */
    static final Set<String> CHANGING_TYPES = Set.of("exec", "write");
    private static final ObjectMapper JSON = new ObjectMapper();

    private final JolokiaServiceManager serviceManager;
    private final BasicAuth auth;
    private CamelContext camelContext;
    private HttpRequestHandler requestHandler;

    /**
     * @param policyLocation {@code classpath:/...} or {@code file:...}; a policy that cannot be read stops the start
     * @param user           basic-auth user, with
     * @param password       its password; blank = no authentication (loopback only, see the configuration)
     */
    public JolokiaEndpoint(String policyLocation, boolean routeControl, String user, String password) throws IOException {
        this.serviceManager = JolokiaServiceManagerFactory.createJolokiaServiceManager(
                new StaticConfiguration(ConfigKey.AGENT_ID, NetworkUtil.getAgentId(hashCode(), "vertx")),
                new Slf4jLogHandler(), restrictor(policyLocation, routeControl));
        serviceManager.addService(new JolokiaSerializer());
        serviceManager.addService(new LocalRequestHandler(1));
        this.auth = new BasicAuth(user, password);
        LOG.info("Jolokia policy {}, route control {}{}", policyLocation, routeControl ? "allowed" : "off",
                auth.required() ? ", basic authentication as " + user : "");
    }

    /**
     * The policy file's verdict, and for operations also ours: only Camel's read-only dumps (Hawtio's route
     * diagram and source) and, with {@code routeControl}, start/stop/suspend/resume of a route. A Jolokia policy
     * cannot allow "only these operations": whatever it does not deny stays allowed.
     */
    static Restrictor restrictor(String policyLocation, boolean routeControl) throws IOException {
        PolicyRestrictor policy = policy(policyLocation);
        if (policy == null) {
            throw new IllegalStateException("llmbatch.management.jolokia-policy: no Jolokia policy at " + policyLocation);
        }
        return (Restrictor) Proxy.newProxyInstance(Restrictor.class.getClassLoader(), new Class<?>[] { Restrictor.class },
                (proxy, method, args) -> {
                    if ("isOriginAllowed".equals(method.getName()) && args[0] == null) {
                        // no Origin and no Referer: curl, Prometheus, Hawtio's proxy, or a page's <img> with
                        // referrerpolicy=no-referrer; that last one can only GET, and a GET never runs an operation
                        return true;
                    }
                    Object verdict = method.invoke(policy, args);
                    if (!"isOperationAllowed".equals(method.getName()) || !(Boolean) verdict) {
                        return verdict;
                    }
                    ObjectName name = (ObjectName) args[0];
                    String operation = (String) args[1];
                    if (operation.indexOf('(') >= 0) { // "dumpRoutesAsXml()", "stop()": Jolokia passes the signature too
                        operation = operation.substring(0, operation.indexOf('('));
                    }
                    return "org.apache.camel".equals(name.getDomain()) && (READ_ONLY_OPERATIONS.contains(operation)
                            || routeControl && "routes".equals(name.getKeyProperty("type")) && ROUTE_CONTROL.contains(operation));
                });
    }

    private static PolicyRestrictor policy(String location) throws IOException {
        PolicyRestrictor policy = RestrictorFactory.lookupPolicyRestrictor(location);
        if (policy == null && location.startsWith("classpath:")) {
            // under `camel run` Jolokia comes from Camel JBang's own class path, whose loader does not see
            // llm-batch.jar (a child class loader): read the policy with ours
            String path = location.substring("classpath:".length());
            try (InputStream in = JolokiaEndpoint.class.getResourceAsStream(path.startsWith("/") ? path : "/" + path)) {
                policy = in == null ? null : new PolicyRestrictor(in);
            }
        }
        return policy;
    }

    @Override
    protected void doStart() {
        requestHandler = new HttpRequestHandler(serviceManager.start());
    }

    @Override
    protected void doStop() {
        serviceManager.stop();
    }

    @Override
    public String getId() {
        return NAME;
    }

    @Override
    public Object getHandler() {
        return (Handler<RoutingContext>) this::handle;
    }

    private void handle(RoutingContext ctx) {
        HttpServerRequest req = ctx.request();
        if (!auth.allows(ctx)) {
            BasicAuth.challenge(ctx);
            return;
        }
        String refusal = refusal(ctx);
        if (refusal != null) {
            int code = req.method() == HttpMethod.POST ? 415 : 405;
            ctx.response().setStatusCode(code).putHeader(HttpHeaders.CONTENT_TYPE, "application/json").putHeader("Allow", "GET, POST")
                    .end(JSON.createObjectNode().put("error", refusal).put("status", code).toString());
            return;
        }
        int status = 200;
        Object json;
        try {
            String origin = req.getHeader(HttpHeaders.ORIGIN) != null ? req.getHeader(HttpHeaders.ORIGIN) : req.getHeader(HttpHeaders.REFERER);
            requestHandler.checkAccess(req.scheme(), req.remoteAddress().host(), req.remoteAddress().host(), origin);
            Map<String, String[]> params = new HashMap<>();
            for (String name : req.params().names()) {
                params.put(name, req.params().getAll(name).toArray(String[]::new));
            }
            if (req.method() == HttpMethod.GET) {
                json = requestHandler.handleGetRequest(req.uri(), Utils.pathOffset(req.path(), ctx), params);
            } else {
                if (ctx.body() == null || ctx.body().buffer() == null) {
                    throw new IllegalArgumentException("Missing body");
                }
                try (InputStream in = new ByteBufInputStream(ctx.body().buffer().getByteBuf())) {
                    json = requestHandler.handlePostRequest(req.uri(), in, StandardCharsets.UTF_8.name(), params);
                }
            }
        } catch (Throwable e) {
            status = e instanceof SecurityException ? 403 : 500;
            json = requestHandler.handleThrowable(e instanceof RuntimeMBeanException r ? r.getTargetException() : e);
        }
        ctx.response().setStatusCode(status).putHeader(HttpHeaders.CONTENT_TYPE, "application/json")
                .end(json instanceof JSONStructure s ? s.toJSONString() : String.valueOf(json));
    }

    /**
     * Why this request is refused before Jolokia sees it, or null. A web page can make the operator's browser send a
     * GET ({@code <img src>}, with no Origin and no Referer) or a POST a form can send (text/plain, urlencoded,
     * multipart) without asking: those may read, never run an operation or write. A JSON Content-Type needs a CORS
     * preflight, which Jolokia does not grant to other sites (jolokia-access.xml), so a POST with one may.
     */
    static String refusal(RoutingContext ctx) {
        HttpServerRequest req = ctx.request();
        String needed = "operations (exec) and writes need a POST with a JSON body and Content-Type: application/json";
        if (req.method() == HttpMethod.GET) {
            // Jolokia reads the request from the path after /observe/jolokia, or from the p parameter when the path is
            // empty: neither may name an operation or a write (a check of p alone let ".../exec/...?p=/version" run)
            for (String path : new String[] { Utils.pathOffset(req.path(), ctx), req.getParam("p") }) {
                String type = path == null ? "" : path.replaceFirst("^/+", "").split("/", 2)[0].toLowerCase(java.util.Locale.ROOT);
                if (CHANGING_TYPES.contains(type)) {
                    return needed;
                }
            }
            return null;
        }
        if (req.method() != HttpMethod.POST) {
            return "only GET (reads) and POST";
        }
        if (isJson(req.getHeader(HttpHeaders.CONTENT_TYPE))) {
            return null;
        }
        if (ctx.body() == null || ctx.body().buffer() == null || ctx.body().buffer().length() == 0) {
            // nothing to look at (a multipart form is parsed into attributes): cannot tell a read, so refuse
            return needed + " (this one has Content-Type: " + req.getHeader(HttpHeaders.CONTENT_TYPE) + " and no JSON body)";
        }
        try {
            JsonNode body = JSON.readTree(ctx.body().buffer().getBytes());
            for (JsonNode r : body.isArray() ? body : List.of(body)) {
                if (CHANGING_TYPES.contains(r.path("type").asText("").toLowerCase(java.util.Locale.ROOT))) {
                    return needed + " (this one has Content-Type: " + req.getHeader(HttpHeaders.CONTENT_TYPE) + ")";
                }
            }
            return null;
        } catch (IOException e) {
            // not JSON to us (invalid UTF-8, say) may still be JSON to Jolokia's lenient reader: refused, not waved through
            return needed + " (this one has Content-Type: " + req.getHeader(HttpHeaders.CONTENT_TYPE) + " and a body that is not JSON)";
        }
    }

    static boolean isJson(String contentType) {
        if (contentType == null) {
            return false;
        }
        int semicolon = contentType.indexOf(';');
        String type = (semicolon < 0 ? contentType : contentType.substring(0, semicolon)).trim().toLowerCase(java.util.Locale.ROOT);
        return JSON_TYPES.contains(type);
    }

    @Override
    public void setCamelContext(CamelContext camelContext) {
        this.camelContext = camelContext;
    }

    @Override
    public CamelContext getCamelContext() {
        return camelContext;
    }

    private static final class Slf4jLogHandler implements LogHandler {
        @Override
        public void debug(String message) {
            LOG.debug(message);
        }

        @Override
        public void info(String message) {
            LOG.info(message);
        }

        @Override
        public void error(String message, Throwable t) {
            LOG.error(message, t);
        }

        @Override
        public boolean isDebug() {
            return LOG.isDebugEnabled();
        }
    }
}
