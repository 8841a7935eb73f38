package io.llmbatch.embedded;

import java.io.IOException;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.h2.H2Backend;
import org.apache.qpid.server.SystemLauncher;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.llmbatch.llm.LlmSimulator;

/**
 * The parts the default run starts in-process when nothing external is configured (the value {@value #EMBEDDED}):
 * an AMQP 0-9-1 broker (Apache Qpid Broker-J, Derby store) and a MongoDB-wire server (mongo-java-server, H2 file),
 * both persistent under the data directory, and the LLM simulator. Each is started only for the setting that
 * says {@value #EMBEDDED}; a configured URL is always used as it is, never replaced.
 */
public final class Embedded {

    public static final String EMBEDDED = "embedded";
    /** Requests the embedded LLM simulator serves at once. */
    public static final int LLM_SLOTS = 4;
    private static final Logger LOG = LoggerFactory.getLogger(Embedded.class);

    /**
     * mongo-java-server 1.46 (the newest on netty 4.1, which Vert.x needs) announces MongoDB 4.0 at most; driver 5.x
     * refuses servers below wire version 8 (4.2). The commands the collector uses behave the same in 4.2.
     */
    public static final MongoVersion MONGO_4_2 = new MongoVersion() {
        @Override
        public List<Integer> getVersionArray() {
            return List.of(4, 2, 0);
        }

        @Override
        public int getWireVersion() {
            return 8;
        }
    };

    private Embedded() {
    }

    /** Starts the embedded broker on 127.0.0.1:port; returns its URL and a handle to stop it. */
    public static Running broker(Path dataDir, int port) throws Exception {
        return broker(dataDir, port, Embedded.class.getResource("/embedded/qpid-config.json"), Map.of());
    }

    /** The embedded broker from another Qpid configuration (e.g. with a TLS port), with extra context variables. */
    public static Running broker(Path dataDir, int port, URL config, Map<String, String> variables) throws Exception {
        Path work = dataDir.resolve("broker").toAbsolutePath();
        Files.createDirectories(work);
        Map<String, Object> attributes = new HashMap<>();
        attributes.put("type", "JSON");
        attributes.put("initialConfigurationLocation", config.toExternalForm());
        attributes.put("storePath", work.resolve("config.json").toString());
        attributes.put("startupLoggedToSystemOut", false);
        Map<String, String> context = new HashMap<>();
        context.put("qpid.work_dir", work.toString());
        context.put("qpid.amqp_port", Integer.toString(port));
        // RabbitMQ-only queue arguments (x-queue-type, x-dead-letter-*) are logged and ignored, not refused
        context.put("queue.behaviourOnUnknownDeclareArgument", "LOG");
        context.putAll(variables);
        attributes.put("context", context);
        SystemLauncher launcher = new SystemLauncher();
        launcher.startup(attributes);
        requireListening(port, "embedded AMQP broker (Qpid Broker-J)");
        LOG.warn("EMBEDDED broker (Apache Qpid Broker-J) on 127.0.0.1:{}, data in {}: for trying llm-batch out; "
                 + "set RABBITMQ_URL (or -Dcamel.main.profile=prod) to use RabbitMQ", port, work);
        return new Running("amqp://guest:guest@127.0.0.1:" + port + "/", launcher::shutdown);
    }

    /** Starts the embedded MongoDB-wire server on 127.0.0.1:port with its data in an H2 file. */
    public static Running mongo(Path dataDir, int port) throws IOException {
        Files.createDirectories(dataDir);
        Path file = dataDir.resolve("mongodb.mv").toAbsolutePath();
        H2Backend backend = new H2Backend(file.toString());
        backend.version(MONGO_4_2);
        MongoServer server = new MongoServer(backend);
        server.bind("127.0.0.1", port);
        LOG.warn("EMBEDDED MongoDB-wire server (mongo-java-server) on 127.0.0.1:{}, data in {}: for trying llm-batch out; "
                 + "set MONGODB_URI (or -Dcamel.main.profile=prod) to use MongoDB", port, file);
        return new Running("mongodb://127.0.0.1:" + port, server::shutdownNow);
    }

    /** Starts the LLM simulator (one server, {@code slots} requests at once); its output is simulated text. */
    public static Running llm(int port, int slots, long latencyMs) throws IOException {
        LlmSimulator sim = LlmSimulator.start(port, latencyMs, slots);
        LOG.warn("EMBEDDED LLM SIMULATOR on {}: results are SIMULATED text, not model output. Point the worker at real "
                 + "LLM servers with LLM_ENDPOINTS or -Dllmbatch.llm.endpoints=http://127.0.0.1:10000,...", sim.url());
        return new Running(sim.url() + ";slots=" + slots, sim::close);
    }

    /** A started embedded part: the address to use and how to stop it. */
    public record Running(String address, Runnable stop) {
    }

    private static void requireListening(int port, String what) {
        try (java.net.Socket s = new java.net.Socket()) {
            s.connect(new java.net.InetSocketAddress("127.0.0.1", port), 2000);
        } catch (IOException e) {
            // Qpid does not throw when its port cannot be opened (FIELD-NOTES)
            throw new IllegalStateException(what + " did not open 127.0.0.1:" + port + " (port taken?): " + e.getMessage());
        }
    }
}
