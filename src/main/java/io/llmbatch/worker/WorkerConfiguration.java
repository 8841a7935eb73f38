package io.llmbatch.worker;

import io.llmbatch.jobs.PromptTemplate;
import io.llmbatch.jobs.SystemPrompt;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

import org.apache.camel.CamelConfiguration;
import org.apache.camel.CamelContext;
import org.apache.camel.PropertyInject;
import org.apache.camel.component.http.HttpComponent;
import org.apache.camel.model.Model;
import org.apache.camel.spi.Registry;
import org.apache.camel.support.service.ServiceSupport;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.llmbatch.Roles;
import io.llmbatch.Wiring;
import io.llmbatch.embedded.Embedded;
import io.llmbatch.llm.Endpoint;
import io.llmbatch.llm.LlmAnswers;
import io.llmbatch.llm.LlmBackends;
import io.llmbatch.llm.LlmBalancer;
import io.llmbatch.llm.LlmHttpDeadline;
import io.llmbatch.ops.HealthChecks;
import io.llmbatch.ops.Progress;
import io.llmbatch.ops.StatusReporter;
import io.llmbatch.rabbit.BrokerConfiguration;
import io.llmbatch.rabbit.ConfirmingPublisher;
import io.llmbatch.rabbit.ListenerContainers;

/**
 * The worker role: the prompt, the LLM backends of {@code llmbatch.llm.endpoints} (their routes, breakers, balancer
 * and answer readers), pause/resume, the result publisher, and a stop that lets LLM calls in flight finish.
 */
public class WorkerConfiguration implements CamelConfiguration {

    private static final Logger LOG = LoggerFactory.getLogger(WorkerConfiguration.class);

    @PropertyInject("llmbatch.queue.tasks")
    String tasksQueue;
    @PropertyInject("llmbatch.jobs.default")
    String defaultJob;
    @PropertyInject("llmbatch.queue.results")
    String resultsQueue;
    @PropertyInject("llmbatch.queue.tasks-dlq")
    String tasksDeadLetterQueue;
    @PropertyInject("llmbatch.rabbitmq.consumer-timeout")
    long consumerTimeout;
    @PropertyInject("llmbatch.worker.prefetch")
    int prefetch;
    @PropertyInject("llmbatch.worker.prompt")
    String promptFile;
    @PropertyInject("llmbatch.worker.company-field")
    String companyField;
    @PropertyInject(value = "llmbatch.worker.gpu", defaultValue = "")
    String gpuDescription;
    @PropertyInject(value = "llmbatch.worker.gpus", defaultValue = "")
    String gpus;
    @PropertyInject("llmbatch.worker.max-prompt-chars")
    int maxPromptChars;
    @PropertyInject("llmbatch.llm.api")
    String api;
    @PropertyInject("llmbatch.llm.model")
    String model;
    @PropertyInject(value = "llmbatch.llm.api-key", defaultValue = "")
    String apiKey;
    @PropertyInject(value = "llmbatch.llm.system-prompt", defaultValue = "")
    String systemPrompt;
    @PropertyInject(value = "llmbatch.llm.system-prompt-file", defaultValue = "")
    String systemPromptFile;
    @PropertyInject("llmbatch.llm.max-tokens")
    int maxTokens;
    @PropertyInject("llmbatch.llm.hold")
    long hold;
    @PropertyInject("llmbatch.llm.connect-timeout")
    long connectTimeout;
    @PropertyInject("llmbatch.llm.response-timeout")
    long responseTimeout;
    @PropertyInject("llmbatch.llm.max-attempts")
    int maxAttempts;
    @PropertyInject("llmbatch.llm.cooldown")
    long cooldown;
    @PropertyInject("llmbatch.llm.backoff")
    long backoff;
    @PropertyInject("llmbatch.llm.balance")
    String balance;
    @PropertyInject("llmbatch.llm.probe-interval")
    long probeInterval;
    @PropertyInject("llmbatch.embedded.llm-port")
    int embeddedLlmPort;
    @PropertyInject("llmbatch.embedded.llm-latency")
    long embeddedLlmLatency;
    @PropertyInject(value = "llmbatch.cost.per-gpu-hour", defaultValue = "")
    String costPerGpuHour;
    @PropertyInject("llmbatch.batches.cancelled-queue")
    String cancelledBatchesQueue;
    @PropertyInject("llmbatch.batches.cancel-refresh")
    long cancelRefresh;

    @Override
    public void configure(CamelContext camelContext) throws Exception {
        Wiring.Node node = Wiring.node(camelContext);
        if (!node.roles().has(Roles.WORKER)) {
            return;
        }
        Registry registry = camelContext.getRegistry();
        ConfirmingPublisher publisher = registry.lookupByNameAndType(BrokerConfiguration.PUBLISHER, ConfirmingPublisher.class);
        // resolved here, not injected: only a worker needs LLM endpoints (strict in the prod profile)
        String endpoints = camelContext.resolvePropertyPlaceholders("{{llmbatch.llm.endpoints}}");
        if (Embedded.EMBEDDED.equals(endpoints.trim())) {
            endpoints = Wiring.embedded(camelContext, Embedded.llm(embeddedLlmPort, Embedded.LLM_SLOTS, embeddedLlmLatency));
        }
        LlmBackends backends = new LlmBackends(camelContext, Endpoint.parseAll(endpoints, api), new LlmBackends.Settings(
                model, apiKey, connectTimeout, responseTimeout, cooldown, probeInterval, hold, backoff, maxAttempts));
        // the llm-backend-N routes are made from the template with these parameters, and again when it is edited
        registry.bind("llmBackends", backends);
        camelContext.getCamelContextExtension().getContextPlugin(Model.class).addModelLifecycleStrategy(backends);
        for (var b : backends.all()) {
            registry.bind(LlmBackends.breakerName(b.id()), b.breaker());
        }
        registry.bind("llmBalancer", new LlmBalancer(camelContext, backends, LlmBalancer.Balance.parse(balance), maxTokens));
        registry.bind("llmAnswers", new LlmAnswers(backends));
        // a deadline for each whole LLM call, body included (camel-http's own timeouts count silence between reads)
        LlmHttpDeadline deadline = new LlmHttpDeadline(responseTimeout);
        for (String scheme : new String[] { "http", "https" }) {
            camelContext.getComponent(scheme, HttpComponent.class).setHttpClientConfigurer(deadline);
        }
        Wiring.stopWith(camelContext, deadline::close);
        camelContext.addService(new ServiceSupport() { // with the context, not with the routes that call it
            @Override
            protected void doStart() {
                backends.start();
            }

            @Override
            protected void doStop() throws Exception {
                backends.stop();
            }
        }, true, true);
        registry.bind("llmHealth", HealthChecks.llm(backends));
        PromptTemplate prompt = new PromptTemplate(Path.of(promptFile));
        SystemPrompt system = SystemPrompt.of(systemPrompt, systemPromptFile);
        LOG.info("Worker: prompt {} with fields {}, system prompt {}, {} LLM slots ({}): {}", prompt.path(), prompt.fields(), system,
                backends.totalSlots(), balance, backends.describe());
        String gpu = Gpu.describe(gpuDescription);
        Worker worker = new Worker(prompt, system, publisher, resultsQueue, tasksDeadLetterQueue, companyField, node.host(), gpu,
                maxPromptChars, model, defaultJob);
        registry.bind("worker", worker);
        // the leaves of the worker route's check-and-repair loop: a task's output checks travel with it (x-llmbatch-checks)
        registry.bind("outputChecks", new OutputChecks());
        // lines of OpenAI batches cancelled since they were queued are skipped (the list comes through the broker)
        worker.cancelledBatches(new io.llmbatch.jobs.CancelledBatches(
                registry.lookupByNameAndType(BrokerConfiguration.CONNECTION_FACTORY, org.springframework.amqp.rabbit.connection.ConnectionFactory.class),
                cancelledBatchesQueue, cancelRefresh));
        int gpuCount = gpus.isBlank() ? Gpu.count(gpu) : Integer.parseInt(gpus.trim());
        worker.gpusPerSlot((double) gpuCount / backends.totalSlots());
        String concurrency = camelContext.resolvePropertyPlaceholders("{{llmbatch.worker.concurrency}}");
        Double price = Progress.price(costPerGpuHour);
        registry.lookupByNameAndType(BrokerConfiguration.STATUS, StatusReporter.class).with("worker", () -> {
            Map<String, Object> w = new LinkedHashMap<>();
            w.put("completed", worker.completed());
            w.put("in_flight", camelContext.getRoutes().stream().filter(r -> r.getRouteId().startsWith("worker-"))
                    .mapToInt(r -> camelContext.getInflightRepository().size(r.getRouteId())).sum());
            Map<String, Integer> byJob = new java.util.TreeMap<>();
            camelContext.getInflightRepository().browse().forEach(i -> {
                if (i.getFromRouteId() != null && i.getFromRouteId().startsWith("worker-")) {
                    byJob.merge(worker.jobOf(i.getExchange()), 1, Integer::sum);
                }
            });
            w.put("in_flight_by_job", byJob);
            w.put("concurrency", concurrency);
            w.put("gpu", gpu);
            w.put("gpus", gpuCount);
            w.put("cost_per_gpu_hour", price);
            return w;
        });
        warnIfConsumerTimeoutTooShort();
        ListenerContainers containers = registry.lookupByNameAndType(BrokerConfiguration.LISTENER_CONTAINERS, ListenerContainers.class);
        WorkerControl control = new WorkerControl(camelContext, () -> containers.forQueue(tasksQueue),
                () -> backends.anyUsable() && prompt.readable(), probeInterval);
        backends.onChange(control::changed);
        registry.bind("workerControl", control);
        Wiring.stopWith(camelContext, control::stop);
        letCallsInFlightFinishOnStop(camelContext, containers);
        publisher.declare(tasksDeadLetterQueue, false);
    }

    /**
     * A graceful stop lets the LLM calls in flight finish (up to the response timeout) before the channels close: with
     * Spring's default of 5 s their tasks would be redelivered to other workers while this one still computes them.
     */
    private void letCallsInFlightFinishOnStop(CamelContext camelContext, ListenerContainers containers) {
        long millis = responseTimeout + 5_000;
        containers.shutdownTimeout(tasksQueue, millis);
        var shutdown = camelContext.getShutdownStrategy(); // camel.main.shutdownTimeout, when that is longer
        if (shutdown.getTimeUnit().toMillis(shutdown.getTimeout()) < millis + 5_000) {
            shutdown.setTimeUnit(java.util.concurrent.TimeUnit.MILLISECONDS);
            shutdown.setTimeout(millis + 5_000);
        }
    }

    /**
     * RabbitMQ closes a consumer's channel when a delivery stays unacknowledged longer than its consumer_timeout
     * (30 min by default): every task on it is redelivered and done again. The last of a consumer's prefetched
     * tasks waits for the ones before it, each of which may take every attempt with its full timeout.
     */
    private void warnIfConsumerTimeoutTooShort() {
        long backoffs = 0;
        for (int i = 1, b = (int) Math.min(backoff, 30_000); i < maxAttempts; i++, b = Math.min(b * 2, 30_000)) {
            backoffs += b;
        }
        long worstTask = maxAttempts * responseTimeout + backoffs + hold;
        long worst = prefetch * worstTask;
        if (worst >= consumerTimeout) {
            LOG.warn("A task may stay unacknowledged {} s (prefetch {} x ({} attempts x {} ms + backoff + llmbatch.llm.hold)), longer than the broker's "
                     + "consumer_timeout of {} s (llmbatch.rabbitmq.consumer-timeout): the broker would close the channel and "
                     + "redeliver. Raise consumer_timeout in rabbitmq.conf, or lower the prefetch, attempts or response timeout.",
                    worst / 1000, prefetch, maxAttempts, responseTimeout, consumerTimeout / 1000);
        }
    }
}
