package io.llmbatch;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.charset.Charset;
import java.util.Arrays;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.camel.CamelConfiguration;
import org.apache.camel.CamelContext;
import org.apache.camel.PropertyInject;
import org.apache.camel.component.platform.http.PlatformHttpConstants;
import org.apache.camel.component.platform.http.spi.PlatformHttpEngine;
import org.apache.camel.component.platform.http.vertx.VertxPlatformHttpEngine;
import org.apache.camel.spi.Registry;
import org.apache.camel.support.service.ServiceSupport;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.amqp.rabbit.connection.AbstractConnectionFactory;
import org.springframework.amqp.rabbit.connection.CachingConnectionFactory;
import org.springframework.amqp.rabbit.core.RabbitAdmin;
import org.springframework.amqp.rabbit.config.RetryInterceptorBuilder;
import org.springframework.amqp.rabbit.core.RabbitTemplate;
import org.springframework.amqp.rabbit.retry.ImmediateRequeueMessageRecoverer;

import java.nio.file.Path;
import java.time.Duration;
import java.util.Locale;

import com.mongodb.ConnectionString;
import com.mongodb.MongoClientSettings;
import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;

import io.llmbatch.collector.Collector;
import io.llmbatch.embedded.Embedded;
import io.llmbatch.ops.HealthChecks;
import io.llmbatch.ops.JolokiaEndpoint;
import io.llmbatch.ops.Meters;
import io.llmbatch.ops.Progress;
import io.llmbatch.ops.StatusReporter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import org.apache.camel.component.micrometer.MicrometerConstants;
import org.apache.camel.component.platform.http.plugin.JolokiaPlatformHttpPlugin;
import io.llmbatch.ingest.FileIngest;
import io.llmbatch.llm.Backend;
import io.llmbatch.llm.LlmGateway;
import io.llmbatch.worker.Gpu;
import io.llmbatch.worker.PromptTemplate;
import io.llmbatch.worker.Worker;
import io.llmbatch.worker.WorkerControl;
import io.llmbatch.ingest.HttpIngest;
import io.llmbatch.rabbit.ConfirmingPublisher;
import io.llmbatch.rabbit.QueueArguments;
import io.llmbatch.rabbit.Tls;

/**
 * Wires the beans the YAML routes call, from {@code llmbatch.*} properties. Listed in
 * {@code camel.main.configurationClasses}, so the jar, the tests and {@code camel run} build the same beans.
 */
public class LlmBatchConfiguration implements CamelConfiguration {

    private static final Logger LOG = LoggerFactory.getLogger(LlmBatchConfiguration.class);

    @PropertyInject("llmbatch.roles")
    String roles;
    @PropertyInject("llmbatch.rabbitmq.url")
    String rabbitUrl;
    @PropertyInject(value = "llmbatch.rabbitmq.trust-store", defaultValue = "")
    String rabbitTrustStore;
    @PropertyInject(value = "llmbatch.rabbitmq.trust-store-password", defaultValue = "")
    String rabbitTrustStorePassword;
    @PropertyInject(value = "llmbatch.rabbitmq.confirm-timeout", defaultValue = "30000")
    long confirmTimeout;
    @PropertyInject("llmbatch.queue.tasks")
    String tasksQueue;
    @PropertyInject("llmbatch.ingest.allowed-queues")
    String allowedQueues;
    @PropertyInject("llmbatch.ingest.required-fields")
    String requiredFields;
    @PropertyInject("llmbatch.ingest.max-body")
    long maxBody;
    @PropertyInject(value = "llmbatch.ingest.token", defaultValue = "")
    String token;
    @PropertyInject(value = "llmbatch.ingest.charset", defaultValue = "UTF-8")
    String charset;
    @PropertyInject(value = "llmbatch.ingest.confirm-window", defaultValue = "1000")
    int confirmWindow;

    @PropertyInject("llmbatch.queue.results")
    String resultsQueue;
    @PropertyInject("llmbatch.queue.tasks-dlq")
    String tasksDeadLetterQueue;
    @PropertyInject(value = "llmbatch.llm.api", defaultValue = "chatglm")
    String llmApi;
    @PropertyInject(value = "llmbatch.llm.model", defaultValue = "chatglm2_6b_int4")
    String llmModel;
    @PropertyInject(value = "llmbatch.llm.max-tokens", defaultValue = "512")
    int llmMaxTokens;
    @PropertyInject(value = "llmbatch.llm.temperature", defaultValue = "0.8")
    double llmTemperature;
    @PropertyInject(value = "llmbatch.llm.chatglm-max-length", defaultValue = "2048")
    int llmChatglmMaxLength;
    @PropertyInject(value = "llmbatch.llm.connect-timeout", defaultValue = "5000")
    long llmConnectTimeout;
    @PropertyInject(value = "llmbatch.llm.response-timeout", defaultValue = "100000")
    long llmResponseTimeout;
    @PropertyInject(value = "llmbatch.llm.max-attempts", defaultValue = "5")
    int llmMaxAttempts;
    @PropertyInject(value = "llmbatch.llm.cooldown", defaultValue = "10000")
    long llmCooldown;
    @PropertyInject(value = "llmbatch.llm.backoff", defaultValue = "500")
    long llmBackoff;
    @PropertyInject(value = "llmbatch.llm.balance", defaultValue = "least-busy")
    String llmBalance;
    @PropertyInject(value = "llmbatch.llm.probe-interval", defaultValue = "2000")
    long llmProbeInterval;
    @PropertyInject(value = "llmbatch.worker.prompt", defaultValue = "prompts/company_intro.txt")
    String workerPrompt;
    @PropertyInject(value = "llmbatch.worker.company-field", defaultValue = "ent_table_name")
    String workerCompanyField;
    @PropertyInject(value = "llmbatch.worker.gpu", defaultValue = "")
    String workerGpu;

    @PropertyInject(value = "llmbatch.mongodb.database", defaultValue = "llm")
    String mongoDatabase;
    @PropertyInject(value = "llmbatch.mongodb.collection", defaultValue = "company_intro")
    String mongoCollection;
    @PropertyInject(value = "llmbatch.collector.model-name", defaultValue = "chatglm2_6b_int4")
    String collectorModelName;
    @PropertyInject(value = "llmbatch.queue.results-dlq", defaultValue = "ent_intro_result.dlq")
    String resultsDeadLetterQueue;

    @PropertyInject(value = "llmbatch.embedded.data-dir", defaultValue = "data")
    String embeddedDataDir;
    @PropertyInject(value = "llmbatch.embedded.broker-port", defaultValue = "5673")
    int embeddedBrokerPort;
    @PropertyInject(value = "llmbatch.embedded.mongodb-port", defaultValue = "27018")
    int embeddedMongoPort;
    @PropertyInject(value = "llmbatch.embedded.llm-port", defaultValue = "10100")
    int embeddedLlmPort;
    @PropertyInject(value = "llmbatch.embedded.llm-latency", defaultValue = "20")
    long embeddedLlmLatency;

    @PropertyInject(value = "camel.server.enabled", defaultValue = "false")
    boolean httpEnabled;
    @PropertyInject(value = "camel.server.host", defaultValue = "0.0.0.0")
    String httpHost;
    @PropertyInject(value = "camel.server.port", defaultValue = "8080")
    int httpPort;

    @PropertyInject(value = "camel.management.enabled", defaultValue = "false")
    boolean managementEnabled;
    @PropertyInject(value = "camel.management.host", defaultValue = "0.0.0.0")
    String managementHost;
    @PropertyInject(value = "camel.management.port", defaultValue = "9876")
    int managementPort;

    @PropertyInject(value = "camel.management.jolokiaEnabled", defaultValue = "false")
    boolean jolokiaEnabled;
    @PropertyInject(value = "llmbatch.management.jolokia-policy", defaultValue = "classpath:/jolokia-access.xml")
    String jolokiaPolicy;
    @PropertyInject(value = "llmbatch.management.route-control", defaultValue = "false")
    boolean routeControl;
    @PropertyInject(value = "llmbatch.management.user", defaultValue = "admin")
    String managementUser;
    @PropertyInject(value = "llmbatch.management.password", defaultValue = "")
    String managementPassword;

    @PropertyInject(value = "llmbatch.rabbitmq.consumer-timeout", defaultValue = "1800000")
    long consumerTimeout;
    @PropertyInject(value = "llmbatch.queue.type", defaultValue = "classic")
    String queueType;
    @PropertyInject(value = "llmbatch.queue.delivery-limit", defaultValue = "20")
    int deliveryLimit;
    @PropertyInject(value = "llmbatch.status.interval", defaultValue = "5000")
    long statusInterval;
    @PropertyInject(value = "llmbatch.cost.per-gpu-hour", defaultValue = "")
    String costPerGpuHour;
    @PropertyInject(value = "llmbatch.cost.currency", defaultValue = "CNY")
    String costCurrency;
    @PropertyInject(value = "llmbatch.worker.max-prompt-chars", defaultValue = "20000")
    int maxPromptChars;
    @PropertyInject(value = "llmbatch.worker.gpus", defaultValue = "")
    String workerGpus;

    private Double costPerGpuHour() {
        try {
            return costPerGpuHour.isBlank() ? null : Double.valueOf(costPerGpuHour.trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("llmbatch.cost.per-gpu-hour is not a number: " + costPerGpuHour, e);
        }
    }

    @Override
    public void configure(CamelContext camelContext) throws Exception {
        Registry registry = camelContext.getRegistry();
        if (httpEnabled) {
            requirePortFree(httpHost, httpPort, "camel.server.port");
            // Camel 4.17 bug: with a management server beside it, platform-http consumers look up the router of
            // port 8080 whatever camel.server.port says (the engine cannot pick one of two servers): name the port
            final int port = httpPort;
            registry.bind(PlatformHttpConstants.PLATFORM_HTTP_ENGINE_NAME, PlatformHttpEngine.class, new VertxPlatformHttpEngine() {
                @Override
                public int getServerPort() {
                    return port;
                }
            });
        }
        if (managementEnabled) {
            requirePortFree(managementHost, managementPort, "camel.management.port");
            configureManagement(camelContext, registry);
        }
        if (Embedded.EMBEDDED.equals(rabbitUrl.trim())) {
            rabbitUrl = embedded(camelContext, Embedded.broker(Path.of(embeddedDataDir), embeddedBrokerPort));
        }
        Roles these = Roles.parse(roles);
        String host = InetAddress.getLocalHost().getHostName();
        CachingConnectionFactory connectionFactory = connectionFactory(these, host);
        registry.bind("rabbitConnectionFactory", connectionFactory);
        registry.bind("brokerHealth", HealthChecks.broker(connectionFactory, Urls.mask(rabbitUrl)));
        // close the broker connection after the routes have stopped
        camelContext.addService(new ServiceSupport() {
            @Override
            protected void doStop() {
                connectionFactory.destroy();
            }
        }, true, true);

        RabbitTemplate template = new RabbitTemplate(connectionFactory);
        template.setMandatory(true);
        template.setUsePublisherConnection(true);
        QueueArguments queueArgs = new QueueArguments(queueType, deliveryLimit,
                Map.of(tasksQueue, tasksDeadLetterQueue, resultsQueue, resultsDeadLetterQueue));
        registry.bind("taskQueueArgs", queueArgs.forConsumer(tasksQueue));
        registry.bind("resultQueueArgs", queueArgs.forConsumer(resultsQueue));
        ConfirmingPublisher publisher = new ConfirmingPublisher(template, new RabbitAdmin(connectionFactory),
                confirmWindow, confirmTimeout, queueArgs);

        // What escapes a consuming route (every LLM backend down, the broker failing) must go back to the queue.
        // The spring-rabbitmq default with retries off is a recoverer that logs "dropped" and acknowledges: a loss.
        registry.bind("requeueOnFailure", RetryInterceptorBuilder.stateless().maxAttempts(1)
                .recoverer(new ImmediateRequeueMessageRecoverer()).build());
        StatusReporter status = new StatusReporter(connectionFactory, statusInterval, host, these.toString());
        if (these.has(Roles.WORKER) || these.has(Roles.COLLECTOR)) {
            camelContext.addService(status, true, true);
        }
        if (these.has(Roles.INGEST)) {
            if (httpEnabled) {
                requireSecretWhenExposed("camel.server.host", httpHost, token, "the ingest endpoints", "INGEST_TOKEN (llmbatch.ingest.token)");
            }
            Progress progress = new Progress(connectionFactory, tasksQueue, resultsQueue,
                    List.of(tasksDeadLetterQueue, resultsDeadLetterQueue), costPerGpuHour(), costCurrency, host);
            registry.bind("progress", progress);
            camelContext.addService(progress, true, true);
            List<String> required = list(requiredFields);
            registry.bind("httpIngest", new HttpIngest(publisher, tasksQueue, new LinkedHashSet<>(list(allowedQueues)),
                    required, maxBody, token));
            registry.bind("fileIngest", new FileIngest(publisher, tasksQueue, required, Charset.forName(charset), camelContext));
        }
        if (these.has(Roles.WORKER)) {
            configureWorker(camelContext, registry, publisher, host, status);
        }
        if (these.has(Roles.COLLECTOR)) {
            configureCollector(camelContext, registry, publisher, status);
        }
    }

    /**
     * RabbitMQ closes a consumer's channel when a delivery stays unacknowledged longer than its consumer_timeout
     * (30 min by default): every task on it is redelivered and done again. The last of a consumer's prefetched
     * tasks waits for the ones before it, each of which may take every attempt with its full timeout.
     */
    private void warnIfConsumerTimeoutTooShort(int prefetch) {
        long backoffs = 0;
        for (int i = 1, b = (int) Math.min(llmBackoff, 30_000); i < llmMaxAttempts; i++, b = Math.min(b * 2, 30_000)) {
            backoffs += b;
        }
        long worstTask = llmMaxAttempts * llmResponseTimeout + backoffs;
        long worst = prefetch * worstTask;
        if (worst >= consumerTimeout) {
            LOG.warn("A task may stay unacknowledged {} s (prefetch {} x ({} attempts x {} ms + backoff)), longer than the broker's "
                     + "consumer_timeout of {} s (llmbatch.rabbitmq.consumer-timeout): the broker would close the channel and "
                     + "redeliver. Raise consumer_timeout in rabbitmq.conf, or lower the prefetch, attempts or response timeout.",
                    worst / 1000, prefetch, llmMaxAttempts, llmResponseTimeout, consumerTimeout / 1000);
        }
    }

    /**
     * Our meters beside Camel's on /observe/metrics (one Prometheus registry, Camel reuses the bound one), and
     * Jolokia with the configured policy. A management port on a non-loopback address needs a password.
     */
    private void configureManagement(CamelContext camelContext, Registry registry) throws Exception {
        MeterRegistry meters = registry.lookupByNameAndType(MicrometerConstants.METRICS_REGISTRY_NAME, MeterRegistry.class);
        if (meters == null) {
            meters = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
            registry.bind(MicrometerConstants.METRICS_REGISTRY_NAME, meters);
        }
        Runnable unpublish = Meters.publishTo(meters);
        camelContext.addService(new ServiceSupport() {
            @Override
            protected void doStop() {
                unpublish.run();
            }
        }, true, true);
        if (jolokiaEnabled) {
            requireSecretWhenExposed("camel.management.host", managementHost, managementPassword, "Jolokia",
                    "MANAGEMENT_PASSWORD (basic authentication)");
            registry.bind(JolokiaPlatformHttpPlugin.NAME, new JolokiaEndpoint(jolokiaPolicy, routeControl, managementUser,
                    managementPassword));
        }
    }

    private void configureCollector(CamelContext camelContext, Registry registry, ConfirmingPublisher publisher,
                                    StatusReporter status) throws Exception {
        // resolved here, not injected: a process without the collector role needs no MongoDB setting (prod profile)
        // (strict: in the prod profile a missing MONGODB_URI stops the start, it never falls back to embedded)
        String mongoUri = camelContext.resolvePropertyPlaceholders("{{llmbatch.mongodb.uri}}");
        if (Embedded.EMBEDDED.equals(mongoUri.trim())) {
            mongoUri = embedded(camelContext, Embedded.mongo(Path.of(embeddedDataDir), embeddedMongoPort));
        }
        MongoClient mongo = MongoClients.create(mongoSettings(mongoUri));
        camelContext.addService(new ServiceSupport() {
            @Override
            protected void doStop() {
                mongo.close();
            }
        }, true, true);
        registry.bind("mongoClient", mongo);
        registry.bind("mongoHealth", HealthChecks.mongo(mongo, mongoUri));
        Collector collector = new Collector(mongo.getDatabase(mongoDatabase).getCollection(mongoCollection),
                collectorModelName, publisher, resultsDeadLetterQueue, camelContext);
        registry.bind("collector", collector);
        status.with("collector", () -> Map.of("stored", collector.stored(), "documents", collector.documents()));
        LOG.info("Collector: MongoDB at {}, {}.{}", Urls.mask(mongoUri), mongoDatabase,
                mongoCollection);
        // create the indexes now, without holding up the start for MongoDB's server-selection timeout when it is
        // down; the first write creates them otherwise
        Thread indexes = new Thread(() -> {
            try {
                collector.ensureIndexes();
                LOG.info("MongoDB indexes on {}.{}: pid (unique), company, model_name", mongoDatabase, mongoCollection);
            } catch (RuntimeException e) {
                LOG.warn("Cannot create the MongoDB indexes yet (unreachable?); the first write retries: {}", e.getMessage());
            }
        }, "mongodb-indexes");
        indexes.setDaemon(true);
        indexes.start();
        publisher.declare(resultsDeadLetterQueue, false);
    }

    private void configureWorker(CamelContext camelContext, Registry registry, ConfirmingPublisher publisher, String host,
                                 StatusReporter status) throws Exception {
        // resolved here, not injected: only a worker needs LLM endpoints (prod profile)
        String llmEndpoints = camelContext.resolvePropertyPlaceholders("{{llmbatch.llm.endpoints}}");
        if (Embedded.EMBEDDED.equals(llmEndpoints.trim())) {
            llmEndpoints = embedded(camelContext, Embedded.llm(embeddedLlmPort, Embedded.LLM_SLOTS, embeddedLlmLatency));
        }
        LlmGateway gateway = new LlmGateway(Backend.parseAll(llmEndpoints, llmApi), new LlmGateway.Settings(
                llmModel, llmMaxTokens, llmTemperature, llmChatglmMaxLength, Duration.ofMillis(llmConnectTimeout),
                Duration.ofMillis(llmResponseTimeout), llmMaxAttempts, llmCooldown, llmBackoff,
                LlmGateway.Balance.valueOf(llmBalance.trim().toUpperCase(Locale.ROOT).replace('-', '_'))));
        registry.bind("llmGateway", gateway);
        registry.bind("llmHealth", HealthChecks.llm(gateway));
        PromptTemplate prompt = new PromptTemplate(Path.of(workerPrompt));
        LOG.info("Worker: prompt {} with fields {}, LLM backends {} ({} slots, {}), model {}", prompt.path(), prompt.fields(),
                gateway.backends(), gateway.totalSlots(), llmBalance, llmModel);
        String gpu = Gpu.describe(workerGpu);
        Worker worker = new Worker(prompt, publisher, resultsQueue, tasksDeadLetterQueue, workerCompanyField, host, gpu,
                maxPromptChars);
        registry.bind("worker", worker);
        int gpus = workerGpus.isBlank() ? Gpu.count(gpu) : Integer.parseInt(workerGpus.trim());
        String concurrency = camelContext.resolvePropertyPlaceholders("{{llmbatch.worker.concurrency}}");
        Double price = costPerGpuHour();
        status.with("worker", () -> {
            Map<String, Object> w = new java.util.LinkedHashMap<>();
            w.put("completed", worker.completed());
            w.put("in_flight", camelContext.getRoutes().stream().filter(r -> r.getRouteId().startsWith("worker-"))
                    .mapToInt(r -> camelContext.getInflightRepository().size(r.getRouteId())).sum());
            w.put("concurrency", concurrency);
            w.put("gpu", gpu);
            w.put("gpus", gpus);
            w.put("cost_per_gpu_hour", price);
            return w;
        });
        warnIfConsumerTimeoutTooShort(Integer.parseInt(camelContext.resolvePropertyPlaceholders("{{llmbatch.worker.prefetch}}")));
        WorkerControl control = new WorkerControl(camelContext, gateway, llmProbeInterval);
        registry.bind("workerControl", control);
        camelContext.addService(control, true, true);
        publisher.declare(tasksDeadLetterQueue, false);
    }

    /** A server bound beyond loopback must be locked: without its secret the start fails, saying what to set. */
    static void requireSecretWhenExposed(String hostSetting, String host, String secret, String what, String secretToSet)
            throws java.net.UnknownHostException {
        if (!InetAddress.getByName(host).isLoopbackAddress() && (secret == null || secret.isBlank())) {
            throw new IllegalStateException(hostSetting + "=" + host + " exposes " + what + " beyond this machine: set "
                                            + secretToSet + " or keep " + hostSetting + "=127.0.0.1");
        }
    }

    /**
     * A connection factory for {@code llmbatch.rabbitmq.url}: one broker, or a comma list of the brokers of a cluster
     * (credentials, vhost and TLS from the first); {@code amqps://} verifies the broker against the trust store.
     */
    static CachingConnectionFactory brokers(String rabbitUrl, String trustStore, String trustStorePassword) {
        CachingConnectionFactory cf = new CachingConnectionFactory();
        List<String> urls = list(rabbitUrl);
        if (urls.stream().map(Tls::isTls).distinct().count() > 1) {
            throw new IllegalArgumentException("llmbatch.rabbitmq.url mixes amqp:// and amqps:// brokers; use one scheme for all: "
                                               + Urls.mask(rabbitUrl));
        }
        if (Tls.isTls(urls.get(0))) {
            Tls.verifyPeer(cf.getRabbitConnectionFactory(), trustStore, trustStorePassword);
        }
        // every URL is parsed here: Spring's setUri logs a bad URI and carries on with localhost:5672 as guest; the
        // parser's own message may quote the password, so it is not passed on
        StringBuilder addresses = new StringBuilder();
        for (String url : urls) {
            java.net.URI u;
            try {
                u = new java.net.URI(url);
                new com.rabbitmq.client.ConnectionFactory().setUri(u);
            } catch (Exception e) {
                throw new IllegalArgumentException("llmbatch.rabbitmq.url is not a valid amqp:// or amqps:// URL (or comma list of them): "
                                                   + Urls.maskWhole(url) + " (a password with reserved characters must be percent-encoded)");
            }
            if (u.getHost() == null) {
                throw new IllegalArgumentException("llmbatch.rabbitmq.url has no host: " + Urls.maskWhole(url));
            }
            int port = u.getPort() > 0 ? u.getPort() : Tls.isTls(url) ? 5671 : 5672;
            addresses.append(addresses.length() == 0 ? "" : ",").append(u.getHost()).append(':').append(port);
        }
        cf.setUri(urls.get(0));
        if (urls.size() > 1) {
            cf.setAddresses(addresses.toString());
            cf.setAddressShuffleMode(AbstractConnectionFactory.AddressShuffleMode.RANDOM);
        }
        if (cf.getVirtualHost() == null || cf.getVirtualHost().isEmpty()) {
            cf.setVirtualHost("/"); // amqp://host:5672/ means the default vhost, as in pika and the seed
        }
        return cf;
    }

    private CachingConnectionFactory connectionFactory(Roles these, String host) {
        CachingConnectionFactory cf = brokers(rabbitUrl, rabbitTrustStore, rabbitTrustStorePassword);
        // The RabbitMQ client runs every consumer's deliveries on one shared pool of 2 x cores threads: with the
        // direct listener container that capped a worker at 4 tasks in flight whatever its concurrency.
        cf.setExecutor(Executors.newCachedThreadPool(new ThreadFactory() {
            private final AtomicInteger n = new AtomicInteger();

            @Override
            public Thread newThread(Runnable r) {
                Thread t = new Thread(r, "rabbit-" + n.incrementAndGet());
                t.setDaemon(true);
                return t;
            }
        }));
        cf.setConnectionTimeout(10_000); // also bounds the readiness probe while the broker is unreachable
        cf.setPublisherConfirmType(CachingConnectionFactory.ConfirmType.CORRELATED);
        cf.setPublisherReturns(true);
        String name = "llm-batch " + host + " (" + these + ")";
        cf.setConnectionNameStrategy(f -> name);
        LOG.info("RabbitMQ at {} (roles: {})", Urls.mask(rabbitUrl), these);
        return cf;
    }

    /**
     * The URI's settings, with bounds where it sets none: the driver's default read timeout is infinite, so a
     * server that accepts a request and never answers (restarting, a dropped network path) would hang the
     * collector's write forever instead of failing it into a retry.
     */
    static MongoClientSettings mongoSettings(String uri) {
        ConnectionString cs = new ConnectionString(uri);
        return MongoClientSettings.builder().applyConnectionString(cs).applyToSocketSettings(socket -> {
            if (cs.getConnectTimeout() == null) {
                socket.connectTimeout(10, TimeUnit.SECONDS);
            }
            if (cs.getSocketTimeout() == null) {
                socket.readTimeout(60, TimeUnit.SECONDS);
            }
        }).build();
    }

    /** Stops an embedded part with the context (after the routes); returns its address. */
    private static String embedded(CamelContext camelContext, Embedded.Running running) throws Exception {
        camelContext.addService(new ServiceSupport() {
            @Override
            protected void doStop() {
                running.stop().run();
            }
        }, true, true);
        return running.address();
    }

    /**
     * Camel 4.17's Vert.x server only logs a warning when its port is taken and the app would run deaf: fail
     * the start instead, naming the setting to change (several processes on one machine need one port each).
     */
    static void requirePortFree(String host, int port, String setting) {
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

    private static List<String> list(String commaList) {
        return Arrays.stream(commaList.split(",")).map(String::trim).filter(s -> !s.isEmpty()).toList();
    }
}
