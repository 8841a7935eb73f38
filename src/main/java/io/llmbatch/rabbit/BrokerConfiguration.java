package io.llmbatch.rabbit;

import java.net.InetAddress;
import java.net.URI;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.camel.CamelConfiguration;
import org.apache.camel.CamelContext;
import org.apache.camel.PropertyInject;
import org.apache.camel.component.springrabbit.SpringRabbitMQComponent;
import org.apache.camel.spi.Registry;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.amqp.rabbit.config.RetryInterceptorBuilder;
import org.springframework.amqp.rabbit.connection.AbstractConnectionFactory;
import org.springframework.amqp.rabbit.connection.CachingConnectionFactory;
import org.springframework.amqp.rabbit.core.RabbitAdmin;
import org.springframework.amqp.rabbit.retry.ImmediateRequeueMessageRecoverer;

import io.llmbatch.Roles;
import io.llmbatch.Urls;
import io.llmbatch.Wiring;
import io.llmbatch.embedded.Embedded;
import io.llmbatch.ops.HealthChecks;
import io.llmbatch.ops.StatusReporter;

/**
 * What every role shares: the broker connection ({@code llmbatch.rabbitmq.url}, embedded when unset), the
 * confirming publisher, the queue declarations, the requeue-on-escape policy of the consuming routes, and the
 * status reporter. Listed before the role configurations, which look these up in the registry.
 */
public class BrokerConfiguration implements CamelConfiguration {

    private static final Logger LOG = LoggerFactory.getLogger(BrokerConfiguration.class);

    /** Registry names of the shared beans. */
    public static final String PUBLISHER = "publisher";
    public static final String STATUS = "statusReporter";
    public static final String CONNECTION_FACTORY = "rabbitConnectionFactory";
    public static final String LISTENER_CONTAINERS = "listenerContainers";

    @PropertyInject("llmbatch.roles")
    String roles;
    @PropertyInject("llmbatch.rabbitmq.url")
    String url;
    @PropertyInject(value = "llmbatch.rabbitmq.trust-store", defaultValue = "")
    String trustStore;
    @PropertyInject(value = "llmbatch.rabbitmq.trust-store-password", defaultValue = "")
    String trustStorePassword;
    @PropertyInject("llmbatch.rabbitmq.consumer-restart-interval")
    long consumerRestartInterval;
    @PropertyInject("llmbatch.rabbitmq.confirm-timeout")
    long confirmTimeout;
    @PropertyInject("llmbatch.ingest.confirm-window")
    int confirmWindow;
    @PropertyInject("llmbatch.ingest.max-message-bytes")
    long maxMessageBytes;
    @PropertyInject("llmbatch.queue.tasks")
    String tasksQueue;
    @PropertyInject("llmbatch.queue.results")
    String resultsQueue;
    @PropertyInject("llmbatch.queue.tasks-dlq")
    String tasksDeadLetterQueue;
    @PropertyInject("llmbatch.queue.results-dlq")
    String resultsDeadLetterQueue;
    @PropertyInject("llmbatch.queue.type")
    String queueType;
    @PropertyInject("llmbatch.queue.delivery-limit")
    int deliveryLimit;
    @PropertyInject("llmbatch.status.interval")
    long statusInterval;
    @PropertyInject("llmbatch.embedded.data-dir")
    String embeddedDataDir;
    @PropertyInject("llmbatch.embedded.broker-port")
    int embeddedBrokerPort;

    @Override
    public void configure(CamelContext camelContext) throws Exception {
        Registry registry = camelContext.getRegistry();
        Roles these = Roles.parse(roles);
        String host = InetAddress.getLocalHost().getHostName();
        registry.bind(Wiring.NODE, new Wiring.Node(these, host));
        if (Embedded.EMBEDDED.equals(url.trim())) {
            url = Wiring.embedded(camelContext, Embedded.broker(Path.of(embeddedDataDir), embeddedBrokerPort));
        }
        CachingConnectionFactory connectionFactory = connectionFactory(these, host);
        registry.bind(CONNECTION_FACTORY, connectionFactory);
        registry.bind("brokerHealth", HealthChecks.broker(connectionFactory, Urls.mask(url)));
        Wiring.stopWith(camelContext, connectionFactory::destroy); // after the routes have stopped

        QueueArguments queueArgs = new QueueArguments(queueType, deliveryLimit,
                Map.of(tasksQueue, tasksDeadLetterQueue, resultsQueue, resultsDeadLetterQueue));
        registry.bind("taskQueueArgs", queueArgs.forConsumer(tasksQueue));
        registry.bind("resultQueueArgs", queueArgs.forConsumer(resultsQueue));
        registry.bind(PUBLISHER, new ConfirmingPublisher(connectionFactory.getPublisherConnectionFactory(), new RabbitAdmin(connectionFactory), confirmWindow,
                confirmTimeout, queueArgs, maxMessageBytes));

        ListenerContainers containers = new ListenerContainers();
        containers.consumerRestartInterval(consumerRestartInterval);
        registry.bind(LISTENER_CONTAINERS, containers);
        Wiring.stopWith(camelContext, containers::close);
        SpringRabbitMQComponent rabbit = camelContext.getComponent("spring-rabbitmq", SpringRabbitMQComponent.class);
        rabbit.setListenerContainerFactory(containers);

        // What escapes a consuming route (every LLM backend down, the broker failing) must go back to the queue.
        // The spring-rabbitmq default with retries off is a recoverer that logs "dropped" and acknowledges: a loss.
        // A delivery whose channel closed meanwhile (connection lost) is already back in the queue: not processed again.
        registry.bind("requeueOnFailure", DeliveryChannels.skipDeliveriesOfClosedChannels(RetryInterceptorBuilder.stateless()
                .maxAttempts(1).recoverer(new ImmediateRequeueMessageRecoverer()).build()));
        // Consumers get the real channels: an acknowledgement after a lost connection must fail, not reach a new channel.
        rabbit.setConnectionFactory(DeliveryChannels.forListeners(connectionFactory));
        StatusReporter status = new StatusReporter(connectionFactory, statusInterval, host, these.toString());
        registry.bind(STATUS, status);
        if (these.has(Roles.WORKER) || these.has(Roles.COLLECTOR)) {
            camelContext.addService(status, true, true);
        }
    }

    /**
     * A connection factory for {@code llmbatch.rabbitmq.url}: one broker, or a comma list of the brokers of a cluster
     * (credentials, vhost and TLS from the first); {@code amqps://} verifies the broker against the trust store.
     */
    public static CachingConnectionFactory brokers(String rabbitUrl, String trustStore, String trustStorePassword) {
        CachingConnectionFactory cf = new CachingConnectionFactory();
        List<String> urls = Wiring.list(rabbitUrl);
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
            URI u;
            try {
                u = new URI(url);
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
        CachingConnectionFactory cf = brokers(url, trustStore, trustStorePassword);
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
        LOG.info("RabbitMQ at {} (roles: {})", Urls.mask(url), these);
        return cf;
    }
}
