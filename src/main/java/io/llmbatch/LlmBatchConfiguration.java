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

import org.apache.camel.CamelConfiguration;
import org.apache.camel.CamelContext;
import org.apache.camel.PropertyInject;
import org.apache.camel.spi.Registry;
import org.apache.camel.support.service.ServiceSupport;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.amqp.rabbit.connection.CachingConnectionFactory;
import org.springframework.amqp.rabbit.core.RabbitAdmin;
import org.springframework.amqp.rabbit.core.RabbitTemplate;

import io.llmbatch.ingest.FileIngest;
import io.llmbatch.ingest.HttpIngest;
import io.llmbatch.rabbit.ConfirmingPublisher;
import io.llmbatch.rabbit.RabbitUrls;

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

    @PropertyInject(value = "camel.server.enabled", defaultValue = "false")
    boolean httpEnabled;
    @PropertyInject(value = "camel.server.host", defaultValue = "0.0.0.0")
    String httpHost;
    @PropertyInject(value = "camel.server.port", defaultValue = "8080")
    int httpPort;

    @Override
    public void configure(CamelContext camelContext) throws Exception {
        if (httpEnabled) {
            requirePortFree(httpHost, httpPort);
        }
        Registry registry = camelContext.getRegistry();
        CachingConnectionFactory connectionFactory = connectionFactory();
        registry.bind("rabbitConnectionFactory", connectionFactory);
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
        ConfirmingPublisher publisher = new ConfirmingPublisher(template, new RabbitAdmin(connectionFactory),
                confirmWindow, confirmTimeout, Map.of());
        registry.bind("taskPublisher", publisher);

        List<String> required = list(requiredFields);
        registry.bind("httpIngest", new HttpIngest(publisher, tasksQueue, new LinkedHashSet<>(list(allowedQueues)),
                required, maxBody, token));
        registry.bind("fileIngest", new FileIngest(publisher, tasksQueue, required, Charset.forName(charset), camelContext));
    }

    private CachingConnectionFactory connectionFactory() throws Exception {
        CachingConnectionFactory cf = new CachingConnectionFactory();
        try {
            cf.setUri(rabbitUrl);
        } catch (RuntimeException e) {
            throw new IllegalArgumentException("llmbatch.rabbitmq.url is not a valid amqp:// or amqps:// URL: "
                                               + RabbitUrls.mask(rabbitUrl), e);
        }
        if (cf.getVirtualHost() == null || cf.getVirtualHost().isEmpty()) {
            cf.setVirtualHost("/"); // amqp://host:5672/ means the default vhost, as in pika and the seed
        }
        cf.setPublisherConfirmType(CachingConnectionFactory.ConfirmType.CORRELATED);
        cf.setPublisherReturns(true);
        String name = "llm-batch " + InetAddress.getLocalHost().getHostName() + " (" + Roles.parse(roles) + ")";
        cf.setConnectionNameStrategy(f -> name);
        LOG.info("RabbitMQ at {} (roles: {})", RabbitUrls.mask(rabbitUrl), Roles.parse(roles));
        return cf;
    }

    /**
     * Camel 4.17's Vert.x server only logs a warning when its port is taken and the app would run deaf: fail
     * the start instead, naming the setting to change (several processes on one machine need one port each).
     */
    static void requirePortFree(String host, int port) {
        if (port == 0) {
            return;
        }
        try (ServerSocket probe = new ServerSocket()) {
            probe.setReuseAddress(true);
            probe.bind(new InetSocketAddress(host, port));
        } catch (IOException e) {
            throw new IllegalStateException("cannot serve HTTP on " + host + ":" + port + " (" + e.getMessage()
                                            + "): another process listens there; give this one its own -Dcamel.server.port=...", e);
        }
    }

    private static List<String> list(String commaList) {
        return Arrays.stream(commaList.split(",")).map(String::trim).filter(s -> !s.isEmpty()).toList();
    }
}
