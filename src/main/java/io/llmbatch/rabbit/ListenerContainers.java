package io.llmbatch.rabbit;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import org.apache.camel.component.springrabbit.DefaultListenerContainerFactory;
import org.apache.camel.component.springrabbit.SpringRabbitMQEndpoint;
import org.springframework.amqp.rabbit.listener.AbstractMessageListenerContainer;
import org.springframework.amqp.rabbit.listener.DirectMessageListenerContainer;
import org.springframework.scheduling.concurrent.ThreadPoolTaskScheduler;

/**
 * The spring-rabbitmq component's listener containers, as Camel makes them, remembered by queue: the worker stops
 * consuming its task queue (cancels its consumers at once, without waiting for the tasks in flight) while it cannot
 * work, and gives the task queue's consumers a stop long enough for the LLM calls in flight.
 */
public final class ListenerContainers extends DefaultListenerContainerFactory implements AutoCloseable {

    private final Map<String, AbstractMessageListenerContainer> byQueue = new ConcurrentHashMap<>();
    /**
     * The containers' consumer monitor: a container made by Spring drops its own on every stop and cannot start again
     * after a stop with a callback (NullPointerException on its task scheduler); one that is given one keeps it.
     */
    private final ThreadPoolTaskScheduler monitor = new ThreadPoolTaskScheduler();

    public ListenerContainers() {
        monitor.setPoolSize(1);
        monitor.setThreadNamePrefix("rabbit-consumer-monitor-");
        monitor.setDaemon(true);
        monitor.afterPropertiesSet();
    }
    private final Map<String, Long> shutdownTimeouts = new ConcurrentHashMap<>();
    private long consumerRestartInterval = 10_000;

    /**
     * How often a container looks for consumers lost with their connection (a node stopped, a network cut) and how long
     * it waits before retrying a failed restart. Spring's 10 s and 5 s kept a worker off the queue up to 10 s after
     * each node of a rolling restart (7.4-9.9 s measured); llmbatch.rabbitmq.consumer-restart-interval sets it.
     */
    public void consumerRestartInterval(long millis) {
        this.consumerRestartInterval = millis;
    }

    /** A graceful stop of {@code queue}'s consumers waits this long for the messages in flight (Spring's default: 5 s). */
    public void shutdownTimeout(String queue, long millis) {
        shutdownTimeouts.put(queue, millis);
    }

    @Override
    public AbstractMessageListenerContainer createListenerContainer(SpringRabbitMQEndpoint endpoint) {
        AbstractMessageListenerContainer container = super.createListenerContainer(endpoint);
        container.setRecoveryInterval(consumerRestartInterval);
        // the direct container restarts lost consumers only this long after its previous restart attempt (Spring: 5 s)
        container.setFailedDeclarationRetryInterval(consumerRestartInterval);
        if (container instanceof DirectMessageListenerContainer direct) {
            direct.setTaskScheduler(monitor);
            direct.setMonitorInterval(consumerRestartInterval);
        }
        String queues = endpoint.getQueues();
        if (queues != null) {
            Long timeout = shutdownTimeouts.get(queues);
            if (timeout != null) {
                container.setShutdownTimeout(timeout);
            }
            byQueue.put(queues, container);
        }
        return container;
    }

    /** The container consuming {@code queue}, or null before its route started. */
    public AbstractMessageListenerContainer forQueue(String queue) {
        return byQueue.get(queue);
    }

    @Override
    public void close() {
        monitor.shutdown();
    }
}
