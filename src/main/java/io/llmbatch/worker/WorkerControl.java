package io.llmbatch.worker;

import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.camel.CamelContext;
import org.apache.camel.Exchange;
import org.apache.camel.support.service.ServiceHelper;
import org.apache.camel.support.service.ServiceSupport;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.llmbatch.llm.LlmGateway;

/**
 * Pauses the worker's task consumer while every LLM backend is down, so the task queue is not drained into the
 * dead-letter queue, and resumes it by itself once a probe finds a backend answering again.
 */
public class WorkerControl extends ServiceSupport {

    private static final Logger LOG = LoggerFactory.getLogger(WorkerControl.class);

    private final CamelContext camelContext;
    private final LlmGateway gateway;
    private final long probeIntervalMillis;
    private final AtomicBoolean paused = new AtomicBoolean();
    private final ScheduledExecutorService scheduler = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "llm-backend-probe");
        t.setDaemon(true);
        return t;
    });

    public WorkerControl(CamelContext camelContext, LlmGateway gateway, long probeIntervalMillis) {
        this.camelContext = camelContext;
        this.gateway = gateway;
        this.probeIntervalMillis = probeIntervalMillis;
    }

    public boolean isPaused() {
        return paused.get();
    }

    /** Called by the worker route when a task found every backend down (the task itself is requeued). */
    public void pauseUntilBackendsReturn(Exchange exchange) {
        String routeId = exchange.getFromRouteId();
        io.llmbatch.ops.Meters.retried("requeue");
        if (paused.compareAndSet(false, true)) {
            scheduler.execute(() -> {
                LOG.warn("Every LLM backend is down: pausing route {} (tasks stay in the queue) and probing every {} ms",
                        routeId, probeIntervalMillis);
                try {
                    // suspend the consumer itself (the listener container stops taking messages; its unacknowledged
                    // ones go back to the queue for other workers) without waiting for in-flight tasks, which
                    // are being requeued right now
                    ServiceHelper.suspendService(camelContext.getRoute(routeId).getConsumer());
                } catch (Exception e) {
                    LOG.warn("Cannot pause route {}: {}", routeId, e.toString());
                }
                scheduler.schedule(() -> probe(routeId), probeIntervalMillis, TimeUnit.MILLISECONDS);
            });
        }
    }

    private void probe(String routeId) {
        if (!isRunAllowed()) {
            return;
        }
        if (gateway.probe()) {
            try {
                ServiceHelper.resumeService(camelContext.getRoute(routeId).getConsumer());
                LOG.info("An LLM backend is back: route {} resumed", routeId);
            } catch (Exception e) {
                LOG.warn("Cannot resume route {}: {}", routeId, e.toString());
            }
            paused.set(false);
        } else {
            scheduler.schedule(() -> probe(routeId), probeIntervalMillis, TimeUnit.MILLISECONDS);
        }
    }

    @Override
    protected void doStop() {
        scheduler.shutdownNow();
    }
}
