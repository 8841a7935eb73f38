package io.llmbatch.worker;

import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

import org.apache.camel.CamelConfiguration;
import org.apache.camel.CamelContext;
import org.apache.camel.PropertyInject;
import org.apache.camel.spi.Registry;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.llmbatch.Roles;
import io.llmbatch.Wiring;
import io.llmbatch.embedded.Embedded;
import io.llmbatch.llm.Backend;
import io.llmbatch.llm.LlmGateway;
import io.llmbatch.ops.HealthChecks;
import io.llmbatch.ops.Progress;
import io.llmbatch.ops.StatusReporter;
import io.llmbatch.rabbit.BrokerConfiguration;
import io.llmbatch.rabbit.ConfirmingPublisher;

/** The worker role: the prompt, the LLM gateway over {@code llmbatch.llm.endpoints}, pause/resume, the result publisher. */
public class WorkerConfiguration implements CamelConfiguration {

    private static final Logger LOG = LoggerFactory.getLogger(WorkerConfiguration.class);

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
    @PropertyInject("llmbatch.llm.max-tokens")
    int maxTokens;
    @PropertyInject("llmbatch.llm.temperature")
    double temperature;
    @PropertyInject("llmbatch.llm.chatglm-max-length")
    int chatglmMaxLength;
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
        LlmGateway gateway = new LlmGateway(Backend.parseAll(endpoints, api), new LlmGateway.Settings(
                model, maxTokens, temperature, chatglmMaxLength, Duration.ofMillis(connectTimeout),
                Duration.ofMillis(responseTimeout), maxAttempts, cooldown, backoff,
                LlmGateway.Balance.valueOf(balance.trim().toUpperCase(Locale.ROOT).replace('-', '_'))));
        registry.bind("llmGateway", gateway);
        registry.bind("llmHealth", HealthChecks.llm(gateway));
        PromptTemplate prompt = new PromptTemplate(Path.of(promptFile));
        LOG.info("Worker: prompt {} with fields {}, LLM backends {} ({} slots, {}), model {}", prompt.path(), prompt.fields(),
                gateway.backends(), gateway.totalSlots(), balance, model);
        String gpu = Gpu.describe(gpuDescription);
        Worker worker = new Worker(prompt, publisher, resultsQueue, tasksDeadLetterQueue, companyField, node.host(), gpu,
                maxPromptChars);
        registry.bind("worker", worker);
        int gpuCount = gpus.isBlank() ? Gpu.count(gpu) : Integer.parseInt(gpus.trim());
        String concurrency = camelContext.resolvePropertyPlaceholders("{{llmbatch.worker.concurrency}}");
        Double price = Progress.price(costPerGpuHour);
        registry.lookupByNameAndType(BrokerConfiguration.STATUS, StatusReporter.class).with("worker", () -> {
            Map<String, Object> w = new LinkedHashMap<>();
            w.put("completed", worker.completed());
            w.put("in_flight", camelContext.getRoutes().stream().filter(r -> r.getRouteId().startsWith("worker-"))
                    .mapToInt(r -> camelContext.getInflightRepository().size(r.getRouteId())).sum());
            w.put("concurrency", concurrency);
            w.put("gpu", gpu);
            w.put("gpus", gpuCount);
            w.put("cost_per_gpu_hour", price);
            return w;
        });
        warnIfConsumerTimeoutTooShort();
        WorkerControl control = new WorkerControl(camelContext, gateway, probeInterval);
        registry.bind("workerControl", control);
        camelContext.addService(control, true, true);
        publisher.declare(tasksDeadLetterQueue, false);
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
        long worstTask = maxAttempts * responseTimeout + backoffs;
        long worst = prefetch * worstTask;
        if (worst >= consumerTimeout) {
            LOG.warn("A task may stay unacknowledged {} s (prefetch {} x ({} attempts x {} ms + backoff)), longer than the broker's "
                     + "consumer_timeout of {} s (llmbatch.rabbitmq.consumer-timeout): the broker would close the channel and "
                     + "redeliver. Raise consumer_timeout in rabbitmq.conf, or lower the prefetch, attempts or response timeout.",
                    worst / 1000, prefetch, maxAttempts, responseTimeout, consumerTimeout / 1000);
        }
    }
}
