package io.llmbatch.ingest;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.MappingIterator;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.camel.Exchange;
import org.apache.camel.Header;
import org.apache.camel.Message;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.http.HttpServerRequest;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.llmbatch.jobs.TaskRenderer;
import io.llmbatch.rabbit.ConfirmingPublisher;
import io.llmbatch.rabbit.MessageRefusedException;
import io.llmbatch.rabbit.OutboundMessage;
import io.llmbatch.rabbit.PublishException;

/**
 * The steps of the HTTP ingest routes: check the caller, parse and validate the whole body (nothing is
 * published unless every message is good), render each task for its job, leave out what is stored from the same
 * request already, publish with confirms, answer in JSON.
 */
public class HttpIngest {

    private static final Logger LOG = LoggerFactory.getLogger(HttpIngest.class);
    /** writes jobs' ledgers while their tasks are published (a thread per request in flight, gone when idle) */
    private static final java.util.concurrent.ExecutorService LEDGER_WRITERS = java.util.concurrent.Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r, "llmbatch-ledger");
        t.setDaemon(true);
        return t;
    });
    /** How many individual problems an error answer lists. */
    private static final int MAX_DETAILS = 10;

    private final ConfirmingPublisher publisher;
    private final String tasksQueue;
    private final Set<String> allowedQueues;
    private final TaskRenderer renderer;
    private final long maxBody;
    /** Request body bytes held across all requests at once, and the most allowed (beyond it: 429). */
    private final java.util.concurrent.atomic.AtomicLong bytesInFlight = new java.util.concurrent.atomic.AtomicLong();
    private final long maxBytesInFlight;
    /** What a 429 tells the client to wait, in seconds: about the time a large request takes to publish. */
    static final int RETRY_AFTER_SECONDS = 2;
    private final byte[] token;
    /** A client that stops sending mid-body gets 408 after this long. */
    private final long bodyTimeoutMillis = 120_000;

    public HttpIngest(ConfirmingPublisher publisher, String tasksQueue, Set<String> allowedQueues,
                      TaskRenderer renderer, long maxBody, long maxBytesInFlight, String token) {
        if (maxBytesInFlight < maxBody) {
            throw new IllegalArgumentException("llmbatch.ingest.max-bytes-in-flight (" + maxBytesInFlight + ") is below "
                                               + "llmbatch.ingest.max-body (" + maxBody + "): a body of the largest size could never be taken");
        }
        this.maxBytesInFlight = maxBytesInFlight;
        this.publisher = publisher;
        this.tasksQueue = tasksQueue;
        this.allowedQueues = Set.copyOf(allowedQueues);
        this.renderer = renderer;
        this.maxBody = maxBody;
        this.token = token == null || token.isBlank() ? null : token.getBytes(StandardCharsets.UTF_8);
    }

    /**
     * Messages parsed from one request, all valid, bound for one queue; {@code where} names a message's place in the
     * request from its {@link OutboundMessage#position()} ({@code tasks[7]}, {@code line 12}); {@code force}: send
     * every task even when its result is stored from the same request.
     */
    public record Batch(String queue, List<TaskRenderer.Prepared> tasks, java.util.function.LongFunction<String> where,
                        boolean force) {
    }

    /**
     * What a request published: confirmed messages, and tasks left out because their result is stored already.
     *
     * @param warning null, or why the job's ledger could not be written (the tasks were published)
     */
    public record Published(String queue, long published, long skipped, String warning) {
    }

    /** Refuses the request (401) when an ingest token is configured and the caller did not present it. */
    public void authorize(Exchange exchange) {
        if (token == null) {
            return;
        }
        String auth = exchange.getMessage().getHeader("Authorization", String.class);
        byte[] presented = auth != null && auth.regionMatches(true, 0, "Bearer ", 0, 7)
                ? auth.substring(7).trim().getBytes(StandardCharsets.UTF_8) : null;
        if (presented == null || !MessageDigest.isEqual(token, presented)) {
            throw new IngestException(401, auth == null
                    ? "missing Authorization: Bearer <token> header (llmbatch.ingest.token is set)"
                    : "invalid ingest token");
        }
    }

    /**
     * Content types the POST routes take. A browser page can send {@code text/plain}, form and multipart bodies (and a
     * body without a type) to any site without asking; every other type needs a CORS preflight, which this server
     * never grants. So requiring one of these keeps web pages out while curl, Python requests and the seed's
     * producers, which send {@code application/json}, pass.
     */
    static final List<String> CONTENT_TYPES = List.of("application/json", "application/x-ndjson", "application/jsonl");

    /** 415 unless the body is declared JSON or NDJSON ({@link #CONTENT_TYPES}, or any {@code application/*+json}). */
    public void checkContentType(Exchange exchange) {
        String header = header(exchange, "Content-Type");
        String type = header == null ? "" : header.split(";", 2)[0].trim().toLowerCase(java.util.Locale.ROOT);
        if (CONTENT_TYPES.contains(type) || type.startsWith("application/") && type.endsWith("+json")) {
            return;
        }
        throw new IngestException(415, (header == null ? "no Content-Type" : "Content-Type " + header + " is not accepted")
                                       + ": send the body as " + String.join(", ", CONTENT_TYPES)
                                       + " (curl: -H 'Content-Type: application/json'; Python: requests.post(url, json=...))");
    }

    /**
     * 403 for what a browser marks as coming from another site: an {@code Origin} other than this server's own, or
     * {@code Sec-Fetch-Site} other than {@code same-origin}/{@code none}. Without a token the node is on loopback only,
     * so a {@code Host} that is not a loopback name is a page that made its own name resolve to 127.0.0.1 (DNS
     * rebinding), for which the browser's own checks pass. curl and scripts send none of these headers.
     */
    public void refuseCrossSite(Exchange exchange) {
        String host = authority(exchange);
        String origin = header(exchange, "Origin");
        if (origin != null && (host == null || !origin.equalsIgnoreCase("http://" + host))) {
            throw new IngestException(403, "cross-site request refused: Origin " + origin + " is not this server ("
                                           + (host == null ? "no Host header" : "http://" + host) + ")");
        }
        String site = header(exchange, "Sec-Fetch-Site");
        if (site != null && !site.equalsIgnoreCase("same-origin") && !site.equalsIgnoreCase("none")) {
            throw new IngestException(403, "cross-site request refused: Sec-Fetch-Site is " + site
                                           + " (a web page of another site or origin may not publish tasks)");
        }
        if (token == null && host != null && !io.llmbatch.Urls.isLoopbackName(host)) {
            throw new IngestException(403, "Host " + host + " is not a loopback name: without llmbatch.ingest.token this node "
                                           + "answers only 127.0.0.1, localhost or [::1] (a page reaching it under its own "
                                           + "name, by DNS rebinding, is refused)");
        }
    }

    /** The host (and port) the client asked for: the Host header, or HTTP/2's :authority. */
    private static String authority(Exchange exchange) {
        if (exchange.getMessage().getBody() instanceof HttpServerRequest request) {
            return request.authority() == null ? null : request.authority().toString();
        }
        return exchange.getMessage().getHeader("Host", String.class);
    }

    /** A request header, from the Vert.x request when the body has not been read yet, else from the Camel message. */
    private static String header(Exchange exchange, String name) {
        Object body = exchange.getMessage().getBody();
        if (body instanceof HttpServerRequest request) {
            return request.getHeader(name);
        }
        return exchange.getMessage().getHeader(name, String.class);
    }

    /**
     * Reads the request body (the routes use {@code useBodyHandler=false}, so the body arrives as the paused
     * Vert.x request): whatever its Content-Type, and never more than {@code llmbatch.ingest.max-body} bytes
     * into memory. Runs on a Vert.x worker thread, so waiting here does not block the event loop.
     */
    public byte[] readBody(Exchange exchange) throws Exception {
        HttpServerRequest request = exchange.getMessage().getBody(HttpServerRequest.class);
        if (request == null) { // not served by Vert.x (e.g. a test sending bytes directly)
            return exchange.getMessage().getMandatoryBody(byte[].class);
        }
        String length = request.getHeader("Content-Length");
        long declared = length != null && length.matches("\\d{1,18}") ? Long.parseLong(length) : -1;
        if (declared > maxBody) {
            discard(request);
            checkSize(declared);
        }
        // the body and what is parsed from it stay in memory until the answer: count it against the budget shared
        // by all requests, released when the exchange is done; a declared length is refused before anything is read
        long[] reserved = {0};
        exchange.getExchangeExtension().addOnCompletion(new org.apache.camel.support.SynchronizationAdapter() {
            @Override
            public void onDone(Exchange done) {
                bytesInFlight.addAndGet(-reserved[0]);
            }
        });
        if (declared >= 0) {
            if (!reserve(declared)) {
                discard(request);
                throw tooManyBytes(declared);
            }
            reserved[0] = declared;
        }
        CompletableFuture<Buffer> done = new CompletableFuture<>();
        Buffer body = declared >= 0 ? Buffer.buffer((int) declared) : Buffer.buffer();
        long[] received = {0};
        boolean[] overBudget = {false};
        request.handler(chunk -> {
            received[0] += chunk.length();
            if (declared < 0 && !overBudget[0] && received[0] <= maxBody) { // chunked: reserve as it arrives
                if (reserve(chunk.length())) {
                    reserved[0] += chunk.length();
                } else {
                    overBudget[0] = true;
                }
            }
            if (received[0] <= maxBody && !overBudget[0]) { // past a limit keep draining, but store nothing more
                body.appendBuffer(chunk);
            }
        });
        request.exceptionHandler(done::completeExceptionally);
        request.endHandler(v -> done.complete(body));
        if ("100-continue".equalsIgnoreCase(request.getHeader("Expect"))) {
            request.response().writeContinue(); // curl waits a second for this before sending a large body
        }
        request.resume();
        try {
            done.get(bodyTimeoutMillis, TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            throw new IngestException(408, "the request body did not arrive within " + bodyTimeoutMillis + " ms");
        } catch (ExecutionException e) {
            throw new IngestException(400, "cannot read the request body: " + e.getCause().getMessage());
        }
        checkSize(received[0]);
        if (overBudget[0]) {
            throw tooManyBytes(received[0]);
        }
        return body.getBytes();
    }

    /**
     * Lets a refused body flow by unread while the answer goes out: the bytes are dropped as they arrive. A paused body
     * would hold the connection (on HTTP/2, which Java's HttpClient negotiates, its unread data uses up the flow-control
     * window every other request on that connection shares, and they stall). A client that sent
     * {@code Expect: 100-continue} never gets the 100 and sends nothing.
     */
    private static void discard(HttpServerRequest request) {
        request.handler(chunk -> { });
        request.exceptionHandler(e -> { });
        request.resume();
    }

    /** Takes {@code bytes} from the budget of body bytes in flight across requests; false (nothing taken) when over it. */
    private boolean reserve(long bytes) {
        while (true) {
            long now = bytesInFlight.get();
            if (now + bytes > maxBytesInFlight) {
                return false;
            }
            if (bytesInFlight.compareAndSet(now, now + bytes)) {
                return true;
            }
        }
    }

    private IngestException tooManyBytes(long bytes) {
        return new IngestException(429, "busy: request bodies of " + bytesInFlight.get() + " bytes are being processed and this one of "
                                        + bytes + " bytes would exceed llmbatch.ingest.max-bytes-in-flight (" + maxBytesInFlight
                                        + " bytes); send it again after Retry-After seconds");
    }

    /** {@code POST /send_workq_message/}: the seed's RabbitAgent payload. */
    public Batch parseWorkqMessage(byte[] body, @Header("force") String force) {
        JsonNode root = readDocument(body);
        if (!root.isObject()) {
            throw new IngestException(400, "expected a JSON object with 'queue' and 'message_list', got " + Tasks.typeOf(root));
        }
        String queue = optionalText(root, "queue");
        String routingKey = optionalText(root, "routing_key");
        optionalText(root, "rabbit");
        JsonNode durable = root.get("durable");
        if (durable != null && !durable.isBoolean()) {
            throw new IngestException(400, "'durable' must be true or false, got " + Tasks.typeOf(durable));
        }
        if (queue == null) {
            queue = routingKey;
        } else if (routingKey != null && !routingKey.equals(queue)) {
            throw new IngestException(400, "'routing_key' (" + routingKey + ") differs from 'queue' (" + queue
                                            + "): messages go through the default exchange, so both must name the queue");
        }
        if (queue == null || queue.isBlank()) {
            throw new IngestException(400, "missing 'queue': the name of the queue to publish to");
        }
        checkAllowed(queue);
        JsonNode list = root.get("message_list");
        if (list == null || !list.isArray()) {
            throw new IngestException(400, "'message_list' must be a JSON array of messages, got "
                                            + (list == null ? "nothing" : Tasks.typeOf(list)));
        }
        // the seed's agent carries any message kind: to the task queue each is rendered for its job when it can be
        // (one it cannot render goes as it came, as the seed's did); to any other queue only the envelope rules apply
        boolean tasks = queue.equals(tasksQueue);
        return validate(queue, list, "message_list", flag(force, "force"), (position, task) -> tasks
                ? renderer.prepare(task, null, "http", position, true) : raw(task, position));
    }

    /** {@code POST /api/tasks}: a JSON array of tasks, or NDJSON (one task object per line), each of its job. */
    public Batch parseTasks(byte[] body, @Header("force") String force) {
        return parseTasks(body, null, flag(force, "force"));
    }

    /** {@code POST /api/jobs/{name}/tasks}: as {@code /api/tasks}, every task of job {@code name}. */
    public Batch parseJobTasks(byte[] body, @Header("name") String job, @Header("force") String force) {
        try {
            renderer.jobs().get(job);
        } catch (io.llmbatch.jobs.Jobs.UnknownJobException e) {
            throw new IngestException(404, e.getMessage());
        }
        return parseTasks(body, job, flag(force, "force"));
    }

    private Batch parseTasks(byte[] body, String job, boolean force) {
        checkSize(body.length);
        int first = 0;
        while (first < body.length && Character.isWhitespace(body[first])) {
            first++;
        }
        if (first == body.length) {
            throw new IngestException(400, "empty body: expected a JSON array of tasks or NDJSON, one task per line");
        }
        Checker check = (position, task) -> renderer.prepare(task, job, "http", position, false);
        if (body[first] == '[') {
            return validate(tasksQueue, readDocument(body), "tasks", force, check);
        }
        Checked checked = new Checked(check, line -> "line " + line);
        try (MappingIterator<JsonNode> it = Tasks.JSON.readerFor(JsonNode.class).readValues(body)) {
            while (it.hasNextValue()) {
                checked.add(it.getParser().currentTokenLocation().getLineNr(), it.nextValue());
            }
        } catch (IOException e) {
            throw new IngestException(400, Tasks.describe(e));
        }
        return checked.toBatch(tasksQueue, force);
    }

    /**
     * Publishes the batch and waits until the broker confirmed every message. A message the broker itself refused for
     * its size (a limit below llmbatch.ingest.max-message-bytes) is the request's fault, not an outage: 400, saying
     * how many messages before it were stored.
     */
    public Published publish(Batch batch) {
        long t0 = System.nanoTime();
        TaskRenderer.Admitted admitted = renderer.decide(batch.tasks(), batch.force());
        long decided = System.nanoTime();
        // the job's ledger is written while the tasks are published (each costs about as much), and waited for
        java.util.concurrent.Future<?> ledger = admitted.admissions().isEmpty() ? null
                : LEDGER_WRITERS.submit(() -> renderer.enter(admitted));
        ConfirmingPublisher.Confirmed confirmed;
        try {
            confirmed = publisher.publish(batch.queue(), admitted.publish().stream().map(TaskRenderer.Prepared::message)
                    .map(io.llmbatch.jobs.TaskEnvelope::wrap).iterator(), null);
        } catch (MessageRefusedException e) {
            ledgerProblem(ledger);
            io.llmbatch.ops.Meters.ingested("http", e.confirmed());
            throw new IngestException(400, "the broker refused " + batch.where().apply(e.message().position()) + "; " + e.confirmed()
                                           + " message(s) of this request were confirmed before it"
                                           + (e.unconfirmed() > 0 ? " and " + e.unconfirmed() + " sent before it may have been stored "
                                                                    + "without their confirm (the broker closed the channel)" : "")
                                           + " (sending the request again after fixing it is safe: duplicates carry the same "
                                           + "message_id and key the same document)",
                    List.of(batch.where().apply(e.message().position()) + ": " + e.getMessage()), e.confirmed(), e.unconfirmed());
        } catch (RuntimeException e) {
            ledgerProblem(ledger);
            throw e;
        }
        long published = System.nanoTime();
        String problem = ledgerProblem(ledger);
        if (LOG.isDebugEnabled()) { // where a slow request's time went (the skip lookup, the broker, the ledger's MongoDB)
            LOG.debug("{} task(s): skip decision {} ms, publishing {} ms, then the ledger {} ms more", batch.tasks().size(),
                    (decided - t0) / 1_000_000, (published - decided) / 1_000_000, (System.nanoTime() - published) / 1_000_000);
        }
        String warning = problem == null ? null
                : "every task was published, but the job's ledger could not be written (" + problem + "): the job's "
                  + "submitted and skipped counts miss these tasks until they are submitted again";
        return new Published(confirmed.queue(), confirmed.count(), batch.tasks().size() - admitted.publish().size(), warning);
    }

    /** Waits for the ledger's write; null when it was written (or there was none), else why not. */
    private static String ledgerProblem(java.util.concurrent.Future<?> ledger) {
        if (ledger == null) {
            return null;
        }
        try {
            ledger.get();
            return null;
        } catch (java.util.concurrent.ExecutionException e) {
            LOG.error("The job's ledger could not be written (the tasks' counts miss them): {}", e.getCause().toString());
            return e.getCause().getMessage();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return "interrupted";
        }
    }

    /**
     * {@code 200 {"queue": q, "published": n, "skipped": s}} once every message is confirmed; {@code skipped}: tasks not
     * sent because their result is stored from the same request already.
     */
    public String accepted(Published published, Exchange exchange) {
        LOG.info("Published {} message(s) to {} (confirmed){}", published.published(), published.queue(),
                published.skipped() > 0 ? ", " + published.skipped() + " skipped (stored from the same request)" : "");
        io.llmbatch.ops.Meters.ingested("http", published.published());
        Map<String, Object> answer = new LinkedHashMap<>();
        answer.put("queue", published.queue());
        answer.put("published", published.published());
        answer.put("skipped", published.skipped());
        if (published.warning() != null) {
            answer.put("warning", published.warning());
        }
        return respond(exchange, 200, answer);
    }

    /** Turns the exception the route caught into a JSON error answer with the right status. */
    public String failed(Exchange exchange) {
        Exception e = exchange.getProperty(Exchange.EXCEPTION_CAUGHT, Exception.class);
        Map<String, Object> answer = new LinkedHashMap<>();
        int status;
        if (e instanceof IngestException ie) {
            status = ie.status();
            answer.put("error", ie.getMessage());
            if (!ie.details().isEmpty()) {
                answer.put("details", ie.details());
            }
            if (ie.published() != null) { // the broker refused a message after others of the request were stored
                Batch batch = exchange.getMessage().getBody(Batch.class);
                answer.put("queue", batch == null ? null : batch.queue());
                answer.put("published", ie.published());
                if (ie.unconfirmed() > 0) {
                    answer.put("unconfirmed", ie.unconfirmed());
                }
            }
        } else if (e instanceof io.llmbatch.jobs.Jobs.BrokenJobException be) {
            status = 500; // the server's job file, not the request: said as it is, without a stack trace
            answer.put("error", be.getMessage());
            LOG.warn("Ingest refused: {}", be.getMessage());
        } else if (e instanceof com.mongodb.MongoException me) {
            status = 503;
            answer.put("error", "MongoDB unavailable (the job's results are looked up before its tasks are published), nothing "
                                + "was published: " + me.getMessage());
            answer.put("published", 0);
            LOG.warn("Ingest refused, MongoDB unavailable: {}", me.getMessage());
        } else if (e instanceof PublishException pe) {
            status = 503;
            answer.put("error", "broker unavailable: " + pe.getMessage());
            answer.put("queue", pe.queue());
            answer.put("published", pe.confirmed());
            io.llmbatch.ops.Meters.ingested("http", pe.confirmed());
            LOG.warn("Ingest to {} failed, {} message(s) confirmed: {}", pe.queue(), pe.confirmed(), pe.getMessage());
        } else {
            status = 500;
            answer.put("error", "internal error: " + e);
            LOG.error("Ingest failed unexpectedly", e);
        }
        answer.put("status", status);
        String json = respond(exchange, status, answer);
        if (status == 401) {
            exchange.getMessage().setHeader("WWW-Authenticate", "Bearer");
        } else if (status == 429) {
            exchange.getMessage().setHeader("Retry-After", RETRY_AFTER_SECONDS);
        }
        return json;
    }

    private String respond(Exchange exchange, int status, Map<String, Object> answer) {
        Message msg = exchange.getMessage();
        // never echo request headers (Authorization) back to the caller
        msg.getHeaders().clear();
        msg.setHeader(Exchange.HTTP_RESPONSE_CODE, status);
        msg.setHeader(Exchange.CONTENT_TYPE, "application/json");
        try {
            return Tasks.JSON.writeValueAsString(answer);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    private Batch validate(String queue, JsonNode array, String name, boolean force, Checker check) {
        if (!array.isArray()) {
            throw new IngestException(400, "expected a JSON array of tasks, got " + Tasks.typeOf(array));
        }
        Checked checked = new Checked(check, i -> name + "[" + i + "]");
        for (int i = 0; i < array.size(); i++) {
            checked.add(i, array.get(i));
        }
        return checked.toBatch(queue, force);
    }

    /** Checks one element of a request (and renders it for its job). */
    private interface Checker {
        TaskRenderer.Prepared check(long position, JsonNode element);
    }

    /** A message for a queue other than the task queue: only what any message must be. */
    private TaskRenderer.Prepared raw(JsonNode message, long position) {
        String problem = Tasks.problem(message, List.of());
        if (problem != null) {
            return new TaskRenderer.Prepared(null, null, problem);
        }
        OutboundMessage m = Tasks.toMessage((ObjectNode) message, "http", position);
        String refusal = Tasks.refusal(publisher, m, message);
        return refusal != null ? new TaskRenderer.Prepared(null, null, refusal) : new TaskRenderer.Prepared(m, null, null);
    }

    /** Messages of one request, checked one by one; the request is refused as a whole if any is bad. */
    private static final class Checked {
        private final Checker check;
        private final java.util.function.LongFunction<String> where;
        private final List<TaskRenderer.Prepared> tasks = new ArrayList<>();
        private final List<String> problems = new ArrayList<>();
        private int bad;

        Checked(Checker check, java.util.function.LongFunction<String> where) {
            this.check = check;
            this.where = where;
        }

        /** One element, at {@code position} in the request (its index, or its line for NDJSON). */
        void add(long position, JsonNode task) {
            TaskRenderer.Prepared p = check.check(position, task);
            if (p.problem() != null) {
                if (bad++ < MAX_DETAILS) {
                    problems.add(where.apply(position) + ": " + p.problem());
                }
            } else if (bad == 0) { // once refused, stop keeping messages
                tasks.add(p);
            }
        }

        Batch toBatch(String queue, boolean force) {
            if (bad > 0) {
                throw new IngestException(400, bad + " invalid message(s), nothing was published", problems);
            }
            return new Batch(queue, tasks, where, force);
        }
    }

    /** A query parameter that is true or false (absent: false). */
    private static boolean flag(String value, String name) {
        if (value == null || value.isBlank() || value.equalsIgnoreCase("false")) {
            return false;
        }
        if (value.equalsIgnoreCase("true") || value.equals("1")) {
            return true;
        }
        throw new IngestException(400, "'" + name + "' must be true or false, got '" + value + "'");
    }

    private void checkAllowed(String queue) {
        if (!allowedQueues.contains(queue)) {
            throw new IngestException(403, "queue '" + queue + "' is not in llmbatch.ingest.allowed-queues");
        }
    }

    private void checkSize(long bytes) {
        if (bytes > maxBody) {
            throw new IngestException(413, "body of " + bytes + " bytes exceeds llmbatch.ingest.max-body ("
                                            + maxBody + " bytes)");
        }
    }

    private JsonNode readDocument(byte[] body) {
        checkSize(body.length);
        try {
            JsonNode root = Tasks.JSON.readTree(body);
            if (root == null || root.isMissingNode()) {
                throw new IngestException(400, "empty body: expected JSON");
            }
            return root;
        } catch (IOException e) {
            throw new IngestException(400, Tasks.describe(e));
        }
    }

    private static String optionalText(JsonNode root, String field) {
        JsonNode value = root.get(field);
        if (value == null || value.isNull()) {
            return null;
        }
        if (!value.isTextual()) {
            throw new IngestException(400, "'" + field + "' must be a string, got " + Tasks.typeOf(value));
        }
        return value.asText();
    }
}
