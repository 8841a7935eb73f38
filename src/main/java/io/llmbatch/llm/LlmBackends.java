package io.llmbatch.llm;

import java.net.ConnectException;
import java.net.NoRouteToHostException;
import java.net.SocketTimeoutException;
import java.net.URI;
import java.net.UnknownHostException;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.stream.Collectors;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.resilience4j.circuitbreaker.CallNotPermittedException;
import io.github.resilience4j.circuitbreaker.CircuitBreaker;
import io.github.resilience4j.circuitbreaker.CircuitBreakerConfig;
import org.apache.camel.CamelContext;
import org.apache.camel.Exchange;
import org.apache.camel.ProducerTemplate;
import org.apache.camel.model.Model;
import org.apache.camel.model.ModelLifecycleStrategy;
import org.apache.camel.model.RouteDefinition;
import org.apache.camel.model.RouteTemplateDefinition;
import org.apache.camel.spi.RouteTemplateParameterSource;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.llmbatch.llm.LlmExceptions.BackendMisconfiguredException;
import io.llmbatch.llm.LlmExceptions.LlmBusyException;
import io.llmbatch.llm.LlmExceptions.LlmCallFailedException;
import io.llmbatch.llm.LlmExceptions.LlmRejectedException;
import io.llmbatch.llm.LlmExceptions.LlmServerException;
import io.llmbatch.ops.Meters;

/**
 * The LLM servers of {@code llmbatch.llm.endpoints}, one {@code llm-backend-N} route each, made at start from the
 * {@value #TEMPLATE} route template (this is the template's parameter source) and made again when that template is
 * edited in a running worker. Holds what the routes cannot say: each backend's circuit breaker (bound as
 * {@code llm-backend-N-breaker} for the route's circuitBreaker EIP), its API key from the environment and extra
 * headers, what a failure means for it (cool down, wait for Retry-After, take it out), and the probe that brings a
 * failed backend back: a one-token completion through its own route, so it asks exactly what a task would.
 *
 * <p>Not a Camel service on purpose: the request routes call it as a bean, and Camel stops and starts a bean that is a
 * service with the routes that use it (every live edit of their file). {@link #start()} and {@link #stop()} follow
 * the context instead.
 */
public final class LlmBackends implements RouteTemplateParameterSource, ModelLifecycleStrategy {

    public static final String TEMPLATE = "llm-backend";
    /** Exchange properties the balancer sets for the backend route. */
    public static final String BACKEND = "llmbatchBackend";
    public static final String MODEL = "llmbatchModel";
    public static final String PROBE = "llmbatchProbe";
    /** The exchange variable holding the request (prompt, system prompt, overrides) the request routes turn into a body. */
    public static final String REQUEST = "llmRequest";
    /** Breakers open after this many failures in a row (a ChatGLM 500 can be one bad prompt). */
    static final int FAILURES_IN_A_ROW = 3;

    private static final Logger LOG = LoggerFactory.getLogger(LlmBackends.class);
    private static final ObjectMapper JSON = new ObjectMapper();

    /** How the backends are called and what counts. */
    public record Settings(String model, String apiKey, long connectTimeoutMillis, long responseTimeoutMillis,
                           long cooldownMillis, long probeIntervalMillis, long holdMillis, long backoffMillis, int maxAttempts) {
    }

    private final CamelContext camelContext;
    private final List<Backend> backends;
    private final Map<String, Backend> byId = new LinkedHashMap<>();
    private final Map<String, String> keys = new LinkedHashMap<>();
    private final Settings settings;
    private final List<Runnable> listeners = new java.util.concurrent.CopyOnWriteArrayList<>();
    private final Object monitor = new Object();
    private volatile long changes; // written under monitor; read without it by changes()
    private ScheduledExecutorService prober;
    private final ExecutorService reloader = Executors.newSingleThreadExecutor(daemon("llm-backend-reload"));
    private volatile ProducerTemplate producer;
    private volatile boolean running;

    public LlmBackends(CamelContext camelContext, List<Endpoint> endpoints, Settings settings) {
        this.camelContext = camelContext;
        this.settings = settings;
        List<Backend> all = new ArrayList<>();
        CircuitBreakerConfig breakerConfig = CircuitBreakerConfig.custom()
                .slidingWindowType(CircuitBreakerConfig.SlidingWindowType.COUNT_BASED)
                .slidingWindowSize(FAILURES_IN_A_ROW).minimumNumberOfCalls(FAILURES_IN_A_ROW).failureRateThreshold(100)
                .waitDurationInOpenState(Duration.ofMillis(settings.cooldownMillis())).permittedNumberOfCallsInHalfOpenState(1)
                .automaticTransitionFromOpenToHalfOpenEnabled(false).writableStackTraceEnabled(false).build();
        for (int i = 0; i < endpoints.size(); i++) {
            Endpoint e = endpoints.get(i);
            String id = TEMPLATE + "-" + (i + 1);
            CircuitBreaker breaker = CircuitBreaker.of(id, breakerConfig);
            Backend b = new Backend(id, e, breaker);
            breaker.getEventPublisher().onStateTransition(event -> {
                LOG.info("LLM backend {} ({}): circuit breaker {}", e.url(), id, event.getStateTransition());
                changed();
            });
            all.add(b);
            byId.put(id, b);
            keys.put(id, key(e, settings.apiKey()));
            Meters.inFlight(e.url(), b.inFlight::get);
        }
        this.backends = List.copyOf(all);
    }

    private static String key(Endpoint e, String defaultKey) {
        if (e.apiKeyEnv() == null) {
            return defaultKey == null || defaultKey.isBlank() ? null : defaultKey.trim();
        }
        String key = System.getenv(e.apiKeyEnv());
        if (key == null || key.isBlank()) {
            throw new IllegalArgumentException("llmbatch.llm.endpoints: " + e.url() + " takes its API key from ;api-key-env="
                                               + e.apiKeyEnv() + ", which is not set in the environment");
        }
        return key.trim();
    }

    public List<Backend> all() {
        return backends;
    }

    public Backend get(String id) {
        Backend b = byId.get(id);
        if (b == null) {
            throw new IllegalArgumentException("no LLM backend route " + id + " (backends: " + byId.keySet() + ")");
        }
        return b;
    }

    public Settings settings() {
        return settings;
    }

    /** The registry name of a backend's circuit breaker. */
    public static String breakerName(String id) {
        return id + "-breaker";
    }

    /** Requests the backends can serve at once. */
    public int totalSlots() {
        return backends.stream().mapToInt(Backend::slots).sum();
    }

    /** Whether some backend can take a task now. */
    public boolean anyUsable() {
        long now = System.currentTimeMillis();
        return backends.stream().anyMatch(b -> b.usable(now));
    }

    /** Called when a backend becomes usable again, or a slot frees. */
    public void onChange(Runnable listener) {
        listeners.add(listener);
    }

    void changed() {
        synchronized (monitor) {
            changes++;
            monitor.notifyAll();
        }
        listeners.forEach(Runnable::run);
    }

    /** How many changes there were so far: taken before looking at the backends, handed to {@link #awaitChange}. */
    long changes() {
        return changes;
    }

    /**
     * Waits until something changed (a slot freed, a breaker moved) since {@code seen} was taken, or {@code millis}
     * passed. A change between looking at the backends and this call returns at once: without the count, a slot freed
     * in that instant went unnoticed until the next change or the timeout, the slot idle meanwhile.
     */
    void awaitChange(long seen, long millis) throws InterruptedException {
        synchronized (monitor) {
            if (changes == seen) {
                monitor.wait(Math.max(1, millis));
            }
        }
    }

    // ---- the route template's parameters ------------------------------------------------------------------------

    @Override
    public Set<String> routeIds() {
        return byId.keySet();
    }

    @Override
    public Map<String, Object> parameters(String routeId) {
        Backend b = get(routeId);
        Map<String, Object> p = new LinkedHashMap<>();
        p.put(TEMPLATE_ID, TEMPLATE);
        p.put("name", routeId);
        p.put("endpoint", b.endpoint.completionUrl());
        p.put("api", b.endpoint.api().id());
        p.put("breaker", breakerName(routeId));
        return p;
    }

    // ---- steps of the request routes ------------------------------------------------------------------------------

    /**
     * The chosen backend's HTTP headers: its API key as {@code Authorization: Bearer} (from the environment, never from
     * a file) and the extra headers of its endpoint entry.
     */
    public void headers(Exchange exchange) {
        Backend b = get(exchange.getProperty(BACKEND, String.class));
        String key = keys.get(b.id);
        if (key != null) {
            exchange.getMessage().setHeader("Authorization", "Bearer " + key);
        }
        b.endpoint.headers().forEach(exchange.getMessage()::setHeader);
    }

    // ---- what a failure means for the backend ---------------------------------------------------------------------

    /**
     * Accounts a failed call to {@code b} and turns its exception into what the gateway route retries on: null when
     * the failure is the prompt's (dead-letter, no effect on the backend).
     */
    LlmCallFailedException failed(Backend b, Throwable e, long elapsedMillis) {
        Throwable t = unwrap(e);
        b.failures.incrementAndGet();
        if (t instanceof LlmRejectedException) {
            return null;
        }
        LlmCallFailedException failure;
        if (t instanceof LlmBusyException busy) {
            b.notBefore = System.currentTimeMillis() + busy.retryAfterMillis();
            failure = busy;
        } else if (t instanceof BackendMisconfiguredException m) {
            misconfigure(b, m.getMessage());
            failure = m;
        } else if (t instanceof LlmServerException s) {
            if (s.down()) {
                open(b);
            }
            failure = s;
        } else if (t instanceof CallNotPermittedException) {
            failure = new LlmServerException(b.id, b + ": its circuit breaker is open", false, t);
        } else if (t instanceof TimeoutException || t instanceof SocketTimeoutException
                   || t instanceof java.io.IOException && elapsedMillis >= settings.responseTimeoutMillis() - 10) {
            // a read timeout, or the call's deadline (LlmHttpDeadline) closed the connection
            open(b);
            failure = new LlmServerException(b.id, b + ": no answer within " + settings.responseTimeoutMillis() + " ms", true, t);
        } else if (t instanceof ConnectException || t instanceof NoRouteToHostException || t instanceof UnknownHostException
                   || t instanceof org.apache.hc.client5.http.ConnectTimeoutException) {
            open(b);
            failure = new LlmServerException(b.id, b + ": cannot connect (" + t.getClass().getSimpleName() + ")", true, t);
        } else if (t instanceof java.io.IOException) {
            failure = new LlmServerException(b.id, b + ": " + t, false, t);
        } else {
            // not an answer of the server (the request route failed, a bug): the same for every task, so never the
            // task's fault; the backend is taken out until a probe goes through
            String why = "calling it failed before any answer: " + t;
            misconfigure(b, why);
            failure = new BackendMisconfiguredException(b.id, b + ": " + why, t);
        }
        b.lastError = failure.getMessage();
        return failure;
    }

    private void open(Backend b) {
        synchronized (b) {
            CircuitBreaker.State s = b.breaker.getState();
            if (s == CircuitBreaker.State.CLOSED || s == CircuitBreaker.State.HALF_OPEN) {
                b.breaker.transitionToOpenState();
            }
        }
    }

    private void misconfigure(Backend b, String why) {
        String before = b.misconfigured;
        b.misconfigured = why;
        if (before == null) {
            LOG.error("LLM backend {} taken out: {} Tasks go to the other backends (or wait in the queue); it is probed every {} ms "
                      + "and comes back by itself once it answers.", b, why, settings.cooldownMillis());
            changed();
        }
    }

    /** A call to {@code b} succeeded. */
    void succeeded(Backend b) {
        b.lastError = null;
        if (b.misconfigured != null) {
            b.misconfigured = null;
            LOG.info("LLM backend {} ({}) answers again: back in service", b, b.id);
            changed();
        }
    }

    static Throwable unwrap(Throwable e) {
        Throwable t = e;
        while ((t instanceof org.apache.camel.RuntimeCamelException || t instanceof java.util.concurrent.CompletionException
                || t instanceof java.util.concurrent.ExecutionException) && t.getCause() != null && t.getCause() != t) {
            t = t.getCause();
        }
        return t;
    }

    // ---- probes ---------------------------------------------------------------------------------------------------

    /** The request a probe sends: one token, through the backend's own route (same body, headers, key and model). */
    static ObjectNode probeRequest() {
        ObjectNode probe = JSON.createObjectNode().put("prompt", "ping");
        probe.putObject("params").put("max_tokens", 1).put("max_length", 32);
        return probe;
    }

    /** Probes every backend that is out (after its cool-down); returns whether some backend is usable now. */
    public boolean probe() {
        long now = System.currentTimeMillis();
        for (Backend b : backends) {
            if (b.misconfigured != null) {
                if (now - b.lastProbe >= settings.cooldownMillis()) {
                    probe(b);
                }
            } else if (b.breaker.getState() != CircuitBreaker.State.CLOSED) {
                // after the cool-down the breaker lets one call through (half-open): let it be the probe
                if (b.breaker.tryAcquirePermission()) {
                    b.breaker.releasePermission();
                    probe(b);
                }
            }
        }
        return anyUsable();
    }

    private void probe(Backend b) {
        b.lastProbe = System.currentTimeMillis();
        Exchange ex = producer.send("direct:" + b.id, e -> {
            e.setVariable(REQUEST, probeRequest());
            e.setProperty(BACKEND, b.id);
            e.setProperty(MODEL, modelFor(b));
            e.setProperty(PROBE, true);
        });
        if (ex.getException() == null) {
            succeeded(b);
            Meters.llmCall(b.url(), "probe-ok", 0);
        } else {
            LlmCallFailedException f = failed(b, ex.getException(), System.currentTimeMillis() - b.lastProbe);
            LOG.debug("Probe of LLM backend {} failed: {}", b, f == null ? ex.getException() : f.getMessage());
            Meters.llmCall(b.url(), "probe-failed", 0);
        }
    }

    /** The model name sent to {@code b}: its own ({@code ;model=}) or {@code llmbatch.llm.model}. */
    public String modelFor(Backend b) {
        return modelFor(b, null);
    }

    /** The model name sent to {@code b}: its own ({@code ;model=}), else the task's job's, else {@code llmbatch.llm.model}. */
    public String modelFor(Backend b, String requested) {
        return b.endpoint.model() != null ? b.endpoint.model() : requested != null ? requested : settings.model();
    }

    // ---- start-up check of OpenAI-compatible servers --------------------------------------------------------------

    /**
     * Asks each OpenAI-compatible backend which models it serves ({@code GET /v1/models}) and logs an ERROR naming
     * them when the configured model is not one; a 401/403 there says the API key is missing or wrong.
     */
    List<String> checkModels() {
        List<String> problems = new ArrayList<>();
        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofMillis(settings.connectTimeoutMillis())).build();
        for (Backend b : backends) {
            String url = b.endpoint.modelsUrl();
            if (url == null) {
                continue;
            }
            try {
                HttpRequest.Builder req = HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10)).GET();
                String key = keys.get(b.id);
                if (key != null) {
                    req.header("Authorization", "Bearer " + key);
                }
                b.endpoint.headers().forEach(req::header);
                HttpResponse<String> r = http.sendAsync(req.build(), HttpResponse.BodyHandlers.ofString())
                        .orTimeout(15, TimeUnit.SECONDS).join();
                String model = modelFor(b);
                if (r.statusCode() == 401 || r.statusCode() == 403) {
                    problems.add("LLM backend " + b + " refuses GET /v1/models with HTTP " + r.statusCode() + ": it wants an API key; set "
                                 + "LLM_API_KEY (llmbatch.llm.api-key) or ;api-key-env=NAME on its endpoint");
                } else if (r.statusCode() == 200) {
                    List<String> served = new ArrayList<>();
                    JSON.readTree(r.body()).path("data").forEach(m -> served.add(m.path("id").asText()));
                    if (!served.isEmpty() && !served.contains(model)) {
                        problems.add("LLM backend " + b + " does not serve the model '" + model + "' (llmbatch.llm.model, or ;model= on "
                                     + "its endpoint: the name this server knows it by); it serves " + served);
                    } else {
                        LOG.info("LLM backend {} serves model '{}'", b, model);
                    }
                }
            } catch (Exception e) {
                LOG.info("LLM backend {}: cannot list its models at start ({}); the first task or probe will tell", b, unwrap(e).toString());
            }
        }
        problems.forEach(p -> LOG.error("{}. Its requests may be refused (and it taken out) or answered by another model.", p));
        return problems;
    }

    // ---- the life of the backend routes ---------------------------------------------------------------------------

    /** Starts the probes (and the start-up check of the models); called when the context starts. */
    public void start() {
        running = true;
        producer = camelContext.createProducerTemplate();
        prober = Executors.newSingleThreadScheduledExecutor(daemon("llm-backend-probe"));
        prober.scheduleWithFixedDelay(() -> {
            try {
                probe();
            } catch (RuntimeException e) {
                LOG.warn("Probing the LLM backends failed: {}", e.toString());
            }
        }, settings.probeIntervalMillis(), settings.probeIntervalMillis(), TimeUnit.MILLISECONDS);
        prober.execute(this::checkModels);
    }

    /** Stops the probes and wakes every task waiting for a backend; called when the context stops. */
    public void stop() throws Exception {
        running = false;
        if (prober != null) {
            prober.shutdownNow();
        }
        reloader.shutdownNow();
        if (producer != null) {
            producer.stop();
        }
        changed(); // wake every task waiting for a backend: the context stops, they go back to the queue
    }

    /**
     * The file holding the {@value #TEMPLATE} template was edited in a running worker: Camel adds the new template beside
     * the old one and leaves the routes made from the old one as they were. Drop the old definition and make the
     * backend routes again from the new one; a route that cannot be made from it keeps its previous version (as a
     * broken edit of any route file does).
     */
    @Override
    public void onAddRouteTemplateDefinition(RouteTemplateDefinition definition) {
        if (!TEMPLATE.equals(definition.getId()) || !camelContext.isStarted() || !running) {
            return;
        }
        Model model = camelContext.getCamelContextExtension().getContextPlugin(Model.class);
        for (RouteTemplateDefinition old : new ArrayList<>(model.getRouteTemplateDefinitions())) {
            if (TEMPLATE.equals(old.getId()) && old != definition) {
                try {
                    model.removeRouteTemplateDefinition(old);
                } catch (Exception e) {
                    LOG.warn("Cannot remove the previous {} template: {}", TEMPLATE, e.toString());
                }
            }
        }
        reloader.execute(() -> rebuild(model, definition));
    }

    private void rebuild(Model model, RouteTemplateDefinition definition) {
        // the model adds the template right after telling us
        for (int i = 0; i < 100 && !model.getRouteTemplateDefinitions().contains(definition); i++) {
            sleep(50);
        }
        for (Backend b : backends) {
            RouteDefinition previous = model.getRouteDefinition(b.id);
            try {
                camelContext.getRouteController().stopRoute(b.id, 30, TimeUnit.SECONDS);
                camelContext.removeRoute(b.id);
                camelContext.addRouteFromTemplate(b.id, TEMPLATE, parameters(b.id));
                LOG.info("LLM backend route {} made again from the edited {} template", b.id, TEMPLATE);
            } catch (Exception e) {
                LOG.warn("Cannot make route {} from the edited {} template, it keeps its previous version: {}", b.id, TEMPLATE,
                        e.toString());
                try {
                    if (camelContext.getRoute(b.id) == null && previous != null) {
                        model.addRouteDefinition(previous);
                    }
                } catch (Exception again) {
                    LOG.error("Cannot restore route {}: {}", b.id, again.toString());
                }
            }
        }
    }

    @Override
    public void onAddRouteDefinition(RouteDefinition routeDefinition) {
    }

    @Override
    public void onRemoveRouteDefinition(RouteDefinition routeDefinition) {
    }

    @Override
    public void onRemoveRouteTemplateDefinition(RouteTemplateDefinition routeTemplateDefinition) {
    }

    /** One line per backend for the start-up log. */
    public String describe() {
        return backends.stream().map(b -> b.id + "=" + b.url() + " (" + b.endpoint.api().id() + ", " + b.slots() + " slot"
                                          + (b.slots() == 1 ? "" : "s") + ", model " + modelFor(b)
                                          + (keys.get(b.id) != null ? ", API key" : "")
                                          + (b.endpoint.rpm() > 0 ? ", " + b.endpoint.rpm() + " rpm" : "")
                                          + (b.endpoint.tpm() > 0 ? ", " + b.endpoint.tpm() + " tpm" : "") + ")")
                .collect(Collectors.joining(", "));
    }

    static java.util.concurrent.ThreadFactory daemon(String name) {
        return r -> {
            Thread t = new Thread(r, name);
            t.setDaemon(true);
            return t;
        };
    }

    private static void sleep(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
