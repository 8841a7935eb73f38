package io.llmbatch.worker;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;

import org.apache.camel.CamelContext;
import org.apache.camel.Exchange;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.amqp.rabbit.listener.AbstractMessageListenerContainer;

import io.llmbatch.ops.Meters;

/**
 * Stops the worker's task consumers while it cannot work (no LLM backend usable for longer than the hold, the prompt
 * file unreadable) and starts them again by itself once it can. The consumers are cancelled before the task that found
 * out goes back to the queue, so the broker does not hand it (or the next one) straight back: each task held or
 * prefetched returns to the queue once per outage, whatever the outage's length (on quorum queues every return counts
 * toward the delivery limit). Not a Camel service: the worker route calls it as a bean, and Camel would stop it with
 * every live edit of that route; {@link #stop()} follows the context.
 */
public class WorkerControl {

    private static final Logger LOG = LoggerFactory.getLogger(WorkerControl.class);

    private final Supplier<AbstractMessageListenerContainer> consumers;
    private final BooleanSupplier canWork;
    private final long checkIntervalMillis;
    private volatile boolean paused;
    private volatile CountDownLatch stopped = new CountDownLatch(0);
    private volatile boolean closed;
    private final ScheduledExecutorService scheduler = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "worker-control");
        t.setDaemon(true);
        return t;
    });

    private final CamelContext camelContext;

    public WorkerControl(CamelContext camelContext, Supplier<AbstractMessageListenerContainer> consumers, BooleanSupplier canWork,
                         long checkIntervalMillis) {
        this.camelContext = camelContext;
        this.consumers = consumers;
        this.canWork = canWork;
        this.checkIntervalMillis = checkIntervalMillis;
    }

    public boolean isPaused() {
        return paused;
    }

    /**
     * Called by the worker route when a task could not be worked on, before it goes back to the queue: cancels the
     * task consumers now (the tasks in flight finish on their own: they go back to the queue too).
     */
    public void pauseUntilBackendsReturn(Exchange exchange) {
        Meters.retried("requeue");
        synchronized (this) {
            if (paused || !running()) {
                return; // a stop: the consumers are being stopped anyway
            }
            paused = true;
            Exception why = exchange.getProperty(Exchange.EXCEPTION_CAUGHT, Exception.class);
            LOG.warn("The worker cannot work, its tasks go back to the queue and it stops consuming until it can: {}",
                    why == null ? "unknown" : why.getMessage());
            AbstractMessageListenerContainer container = consumers.get();
            if (container != null) {
                CountDownLatch done = new CountDownLatch(1);
                stopped = done;
                container.stop(done::countDown); // cancels the consumers before returning; waits for in-flight elsewhere
            }
            scheduler.schedule(() -> resumeWhenReady(true), checkIntervalMillis, TimeUnit.MILLISECONDS);
        }
    }

    /** Something changed (a backend came back): check now rather than at the next interval. */
    public void changed() {
        if (paused && running()) {
            scheduler.execute(() -> resumeWhenReady(false));
        }
    }

    private synchronized void resumeWhenReady(boolean periodic) {
        if (!running() || !paused) {
            return;
        }
        // a consumer can start again only once the previous stop has finished (its tasks in flight returned)
        if (canWork.getAsBoolean() && stopped.getCount() == 0) {
            AbstractMessageListenerContainer container = consumers.get();
            try {
                if (container != null) {
                    container.start();
                }
                LOG.info("The worker can work again: consuming tasks");
                paused = false;
            } catch (RuntimeException e) {
                LOG.warn("Cannot start consuming again, retrying: {}", e.toString());
            }
        }
        if (paused && periodic) {
            scheduler.schedule(() -> resumeWhenReady(true), checkIntervalMillis, TimeUnit.MILLISECONDS);
        }
    }

    private boolean running() {
        return !closed && camelContext.getStatus().isStarted() && !camelContext.isStopping();
    }

    /** The context stops. */
    public void stop() {
        closed = true;
        scheduler.shutdownNow();
    }
}
