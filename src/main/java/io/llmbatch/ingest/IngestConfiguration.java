package io.llmbatch.ingest;

import java.nio.charset.Charset;
import java.nio.file.Path;
import java.util.LinkedHashSet;
import java.util.List;

import org.apache.camel.CamelConfiguration;
import org.apache.camel.CamelContext;
import org.apache.camel.PropertyInject;
import org.apache.camel.component.platform.http.PlatformHttpConstants;
import org.apache.camel.component.platform.http.spi.PlatformHttpEngine;
import org.apache.camel.component.platform.http.vertx.VertxPlatformHttpEngine;
import org.apache.camel.spi.Registry;
import org.springframework.amqp.rabbit.connection.ConnectionFactory;
import org.springframework.amqp.rabbit.core.RabbitAdmin;

import io.llmbatch.Roles;
import io.llmbatch.Wiring;
import io.llmbatch.jobs.CancelledBatches;
import io.llmbatch.jobs.JobStore;
import io.llmbatch.jobs.OpenAiBatches;
import io.llmbatch.jobs.Jobs;
import io.llmbatch.jobs.JobsApi;
import io.llmbatch.jobs.Redrive;
import io.llmbatch.jobs.TaskRenderer;
import io.llmbatch.mongo.MongoConfiguration;
import io.llmbatch.ops.Progress;
import io.llmbatch.rabbit.BrokerConfiguration;
import io.llmbatch.rabbit.ConfirmingPublisher;

/** The ingest role: the HTTP endpoints, the inbox and {@code /api/progress}, publishing through the shared publisher. */
public class IngestConfiguration implements CamelConfiguration {

    @PropertyInject("camel.server.enabled")
    boolean httpEnabled;
    @PropertyInject("camel.server.host")
    String httpHost;
    @PropertyInject("camel.server.port")
    int httpPort;
    @PropertyInject("llmbatch.queue.tasks")
    String tasksQueue;
    @PropertyInject("llmbatch.queue.results")
    String resultsQueue;
    @PropertyInject("llmbatch.queue.tasks-dlq")
    String tasksDeadLetterQueue;
    @PropertyInject("llmbatch.queue.results-dlq")
    String resultsDeadLetterQueue;
    @PropertyInject("llmbatch.ingest.allowed-queues")
    String allowedQueues;
    @PropertyInject("llmbatch.jobs.dir")
    String jobsDir;
    @PropertyInject("llmbatch.jobs.default")
    String defaultJob;
    @PropertyInject("llmbatch.llm.model")
    String defaultModel;
    @PropertyInject("llmbatch.ingest.max-body")
    long maxBody;
    @PropertyInject("llmbatch.ingest.max-bytes-in-flight")
    long maxBytesInFlight;
    @PropertyInject("llmbatch.ingest.max-record-chars")
    int maxRecordChars;
    @PropertyInject(value = "llmbatch.ingest.token", defaultValue = "")
    String token;
    @PropertyInject("llmbatch.ingest.charset")
    String charset;
    @PropertyInject(value = "llmbatch.cost.per-gpu-hour", defaultValue = "")
    String costPerGpuHour;
    @PropertyInject("llmbatch.cost.currency")
    String costCurrency;
    @PropertyInject("llmbatch.batches.files-bucket")
    String batchFilesBucket;
    @PropertyInject("llmbatch.batches.collection")
    String batchesCollection;
    @PropertyInject("llmbatch.batches.results-collection")
    String batchResultsCollection;
    @PropertyInject("llmbatch.batches.cancelled-queue")
    String cancelledBatchesQueue;
    @PropertyInject("llmbatch.batches.max-file-bytes")
    long maxBatchFileBytes;

    @Override
    public void configure(CamelContext camelContext) throws Exception {
        Wiring.Node node = Wiring.node(camelContext);
        if (!node.roles().has(Roles.INGEST)) {
            return;
        }
        Registry registry = camelContext.getRegistry();
        if (httpEnabled) {
            Wiring.requirePortFree(httpHost, httpPort, "camel.server.port");
            Wiring.requireSecretWhenExposed("camel.server.host", httpHost, token, "the ingest endpoints", "INGEST_TOKEN (llmbatch.ingest.token)");
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
        ConfirmingPublisher publisher = registry.lookupByNameAndType(BrokerConfiguration.PUBLISHER, ConfirmingPublisher.class);
        Progress progress = new Progress(registry.lookupByNameAndType(BrokerConfiguration.CONNECTION_FACTORY, ConnectionFactory.class),
                tasksQueue, resultsQueue, List.of(tasksDeadLetterQueue, resultsDeadLetterQueue,
                        // the seed's job's answers that failed their output checks
                        io.llmbatch.worker.Worker.outputCheckQueue(tasksDeadLetterQueue, defaultJob)), Progress.price(costPerGpuHour),
                costCurrency, node.host());
        registry.bind("progress", progress);
        camelContext.addService(progress, true, true);
        // the jobs: every task published here is rendered for its job; the default job's file must be there
        Jobs jobs = new Jobs(Path.of(jobsDir), defaultJob, defaultModel);
        try {
            jobs.defaultJob();
        } catch (RuntimeException e) {
            throw new IllegalStateException("llmbatch.jobs.default: " + e.getMessage(), e);
        }
        jobs.broken().forEach((name, problem) -> org.slf4j.LoggerFactory.getLogger(IngestConfiguration.class)
                .warn("{} (its tasks are refused until then)", problem));
        MongoConfiguration.Mongo mongo = MongoConfiguration.orNull(camelContext);
        JobStore store = mongo == null ? null : new JobStore(mongo.database());
        TaskRenderer renderer = new TaskRenderer(jobs, store, publisher);
        ConnectionFactory connectionFactory = registry.lookupByNameAndType(BrokerConfiguration.CONNECTION_FACTORY, ConnectionFactory.class);
        registry.bind("jobsApi", new JobsApi(jobs, store, new RabbitAdmin(connectionFactory), progress, tasksDeadLetterQueue,
                new Redrive(connectionFactory, publisher, jobs, store, tasksQueue)));
        registry.bind("httpIngest", new HttpIngest(publisher, tasksQueue, new LinkedHashSet<>(Wiring.list(allowedQueues)),
                renderer, maxBody, maxBytesInFlight, token));
        // the OpenAI Batch API (/v1/files, /v1/batches): a batch's lines go to the task queue like any job's tasks
        CancelledBatches cancelledBatches = new CancelledBatches(connectionFactory, cancelledBatchesQueue, 1000);
        registry.bind("openAiBatches", new OpenAiBatches(mongo == null ? null : mongo.database(), batchFilesBucket, batchesCollection,
                batchResultsCollection, publisher, tasksQueue, cancelledBatches, defaultModel, maxBatchFileBytes));
        registry.bind("fileIngest", new FileIngest(publisher, tasksQueue, renderer, Charset.forName(charset), maxRecordChars, camelContext));
    }
}
