package io.llmbatch.jobs;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.mongodb.client.MongoCollection;
import com.mongodb.client.MongoCursor;
import com.mongodb.client.MongoDatabase;
import com.mongodb.client.gridfs.GridFSUploadStream;
import com.mongodb.client.gridfs.model.GridFSFile;
import com.mongodb.client.model.Filters;
import com.mongodb.client.model.FindOneAndUpdateOptions;
import com.mongodb.client.model.Indexes;
import com.mongodb.client.model.ReplaceOneModel;
import com.mongodb.client.model.ReplaceOptions;
import com.mongodb.client.model.ReturnDocument;
import com.mongodb.client.model.Sorts;
import com.mongodb.client.model.Updates;
import com.mongodb.client.model.WriteModel;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.http.HttpServerRequest;
import org.apache.camel.Exchange;
import org.apache.camel.Message;
import org.bson.Document;
import org.bson.conversions.Bson;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.llmbatch.ingest.IngestException;
import io.llmbatch.rabbit.ConfirmingPublisher;
import io.llmbatch.rabbit.OutboundMessage;
import io.llmbatch.rabbit.PublishException;

/**
 * The steps of the OpenAI Batch API routes ({@code routes/openai-batch.camel.yaml}), in the shapes of the official API:
 * {@code /v1/files} (upload, File object, content) and {@code /v1/batches} (create, retrieve, list, cancel).
 *
 * <p>A batch is a job: each line of its input file becomes a task on the normal task queue, run by the same workers,
 * backends and fault handling as any task, its request body as given (the model is the backends' own; the model the
 * line asked for is kept in its output). Each line's result is stored by the collector like any result, in
 * {@code llmbatch.batches.results-collection} under md5(batch id, custom_id). A batch's state lives in
 * {@code llmbatch.batches.collection}; its counts come from the stored results, so they are exact and survive any
 * restart. Once every line is stored (succeeded, failed or skipped as cancelled) the first request that sees it writes the
 * output and error files (GridFS, {@link BatchFiles}) and the batch is {@code completed} (or {@code cancelled}).
 *
 * <p>A file the Batch API would refuse as a whole (a line that is not JSON, no or a duplicate {@code custom_id}, another
 * method or url) fails the batch at validation with the {@code errors} list, as OpenAI does; a well-formed line whose
 * request is not one (no {@code messages}) is that line's 400 in the error file.
 */
public final class OpenAiBatches {

    private static final Logger LOG = LoggerFactory.getLogger(OpenAiBatches.class);
    static final ObjectMapper JSON = new ObjectMapper();
    public static final String ENDPOINT = "/v1/chat/completions";
    private static final long WINDOW_SECONDS = 24 * 3600;
    private static final int MAX_ERRORS = 1000;
    /** How long a cancelled batch stays on the list the workers read (its lines may wait that long behind other work). */
    private static final long CANCELLED_LIST_SECONDS = 7 * 24 * 3600;
    /**
     * A batch's lines are being queued while its {@code x_queuing} (seconds) is this recent: the node queuing them renews
     * it as it reads; older, that node stopped midway (killed), and the lines not stored are queued again.
     */
    private static final long QUEUING_LEASE_SECONDS = 60;
    private static final long QUEUING_RENEW_SECONDS = 10;
    /** A batch still validating this long after it was created was cut off (validation reads the file once, in seconds). */
    private static final long VALIDATION_CUT_OFF_SECONDS = 3600;
    /** Queues again the lines of batches whose queuing was cut off (one at a time, off the request threads). */
    private static final java.util.concurrent.ExecutorService REQUEUE = java.util.concurrent.Executors.newSingleThreadExecutor(r -> {
        Thread t = new Thread(r, "llmbatch-batch-requeue");
        t.setDaemon(true);
        return t;
    });

    private final BatchFiles files;
    private final MongoCollection<Document> batches;
    private final MongoCollection<Document> results;
    private final String resultsCollection;
    private final ConfirmingPublisher publisher;
    private final String tasksQueue;
    private final CancelledBatches cancelled;
    private final String defaultModel;
    private final long maxFileBytes;
    private final long bodyTimeoutMillis = 120_000;
    private volatile boolean indexed;
    /** The order batches are listed in: creation in microseconds, strictly increasing in this process. */
    private final java.util.concurrent.atomic.AtomicLong lastOrder = new java.util.concurrent.atomic.AtomicLong();

    public OpenAiBatches(MongoDatabase database, String filesBucket, String batchesCollection, String resultsCollection,
                         ConfirmingPublisher publisher, String tasksQueue, CancelledBatches cancelled, String defaultModel,
                         long maxFileBytes) {
        this.files = database == null ? null : new BatchFiles(database, filesBucket);
        this.batches = database == null ? null : database.getCollection(batchesCollection);
        this.results = database == null ? null : database.getCollection(resultsCollection);
        this.resultsCollection = resultsCollection;
        this.publisher = publisher;
        this.tasksQueue = tasksQueue;
        this.cancelled = cancelled;
        this.defaultModel = defaultModel;
        this.maxFileBytes = maxFileBytes;
    }

    /** An error in the OpenAI shape: {@code {"error": {"message", "type", "param", "code"}}}. */
    public static final class ApiError extends IngestException {
        final String param;
        final String code;

        public ApiError(int status, String message, String param, String code) {
            super(status, message);
            this.param = param;
            this.code = code;
        }
    }

    // ---- files ---------------------------------------------------------------------------------------------------

    /**
     * {@code POST /v1/files}, multipart/form-data with {@code purpose} and {@code file}. Read with Vert.x's own multipart
     * decoder from the request (the route uses {@code useBodyHandler=false}): Camel's body handler would write uploads to
     * a {@code file-uploads/} directory and hand them over as attachments; here the file goes to GridFS from memory,
     * never more than {@code llmbatch.batches.max-file-bytes} of it.
     */
    public String uploadFile(Exchange exchange) throws Exception {
        HttpServerRequest request = exchange.getMessage().getBody(HttpServerRequest.class);
        if (request == null) {
            throw new ApiError(400, "expected a multipart/form-data request", null, null);
        }
        String type = request.getHeader("Content-Type");
        if (type == null || !type.toLowerCase(java.util.Locale.ROOT).startsWith("multipart/form-data")) {
            request.handler(b -> { }).resume();
            throw new ApiError(415, "POST /v1/files takes multipart/form-data with 'purpose' and 'file' (got "
                                    + (type == null ? "no Content-Type" : type) + ")", null, null);
        }
        String length = request.getHeader("Content-Length");
        if (length != null && length.matches("\\d{1,18}") && Long.parseLong(length) > maxFileBytes + 65_536) {
            request.handler(b -> { }).resume();
            throw tooLarge();
        }
        CompletableFuture<Void> done = new CompletableFuture<>();
        Buffer content = Buffer.buffer();
        String[] filename = {null};
        long[] size = {0};
        request.setExpectMultipart(true);
        request.uploadHandler(upload -> {
            if (!"file".equals(upload.name()) || filename[0] != null) {
                upload.handler(b -> { });
                return;
            }
            filename[0] = upload.filename() == null || upload.filename().isBlank() ? "upload.jsonl" : upload.filename();
            upload.handler(chunk -> {
                size[0] += chunk.length();
                if (size[0] <= maxFileBytes) {
                    content.appendBuffer(chunk);
                }
            });
            upload.exceptionHandler(done::completeExceptionally);
        });
        request.exceptionHandler(done::completeExceptionally);
        request.endHandler(v -> done.complete(null));
        request.resume();
        try {
            done.get(bodyTimeoutMillis, TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            throw new ApiError(408, "the request body did not arrive within " + bodyTimeoutMillis + " ms", null, null);
        } catch (ExecutionException e) {
            throw new ApiError(400, "cannot read the multipart body: " + e.getCause().getMessage(), null, null);
        }
        if (size[0] > maxFileBytes) {
            throw tooLarge();
        }
        String purpose = request.getFormAttribute("purpose");
        if (purpose == null || purpose.isBlank()) {
            throw new ApiError(400, "Missing required parameter: 'purpose'.", "purpose", "missing_required_parameter");
        }
        if (!"batch".equals(purpose)) {
            throw new ApiError(400, "llm-batch keeps files for batches only: 'purpose' must be 'batch', got '" + purpose + "'",
                    "purpose", "invalid_value");
        }
        if (filename[0] == null) {
            throw new ApiError(400, "Missing required parameter: 'file'.", "file", "missing_required_parameter");
        }
        Map<String, Object> file = files().save(filename[0], purpose, content.getBytes());
        LOG.info("File {} ({}, {} bytes) stored for purpose {}", file.get("id"), filename[0], size[0], purpose);
        return json(exchange, 200, file);
    }

    /** {@code GET /v1/files/{id}}: the File object. */
    public String getFile(Exchange exchange) throws IOException {
        return json(exchange, 200, BatchFiles.fileObject(file(exchange)));
    }

    /** {@code GET /v1/files/{id}/content}: the file's bytes, streamed from GridFS. */
    public InputStream fileContent(Exchange exchange) {
        GridFSFile f = file(exchange);
        Message msg = exchange.getMessage();
        msg.getHeaders().clear();
        msg.setHeader(Exchange.HTTP_RESPONSE_CODE, 200);
        msg.setHeader(Exchange.CONTENT_TYPE, "application/octet-stream");
        msg.setHeader("Content-Disposition", "attachment; filename=\"" + f.getFilename().replace("\"", "") + "\"");
        return files().open(f.getId().asString().getValue());
    }

    private GridFSFile file(Exchange exchange) {
        String id = exchange.getMessage().getHeader("id", String.class);
        GridFSFile f = id == null ? null : files().find(id);
        if (f == null) {
            throw new ApiError(404, "No such File object: " + id, "id", null);
        }
        return f;
    }

    private ApiError tooLarge() {
        return new ApiError(413, "the file exceeds llmbatch.batches.max-file-bytes (" + maxFileBytes + " bytes)", "file", null);
    }

    // ---- batches -------------------------------------------------------------------------------------------------

    /**
     * {@code POST /v1/batches}: validates the input file (a file OpenAI would refuse fails the batch with its
     * {@code errors}), then queues every line as a task of the batch and answers the Batch object ({@code in_progress}).
     */
    public String createBatch(Exchange exchange) throws IOException {
        JsonNode req = readJson(exchange);
        String inputFileId = requiredText(req, "input_file_id");
        String endpoint = requiredText(req, "endpoint");
        String window = requiredText(req, "completion_window");
        if (!ENDPOINT.equals(endpoint)) {
            throw new ApiError(400, "llm-batch runs batches of " + ENDPOINT + " only, not '" + endpoint + "'", "endpoint", "invalid_value");
        }
        if (!"24h".equals(window)) {
            throw new ApiError(400, "Invalid value for 'completion_window': only '24h' is supported.", "completion_window", "invalid_value");
        }
        Document metadata = metadata(req.get("metadata"));
        GridFSFile input = files().find(inputFileId);
        if (input == null) {
            throw new ApiError(400, "Invalid 'input_file_id': no such file '" + inputFileId + "'.", "input_file_id", null);
        }
        if (input.getMetadata() == null || !"batch".equals(input.getMetadata().getString("purpose"))) {
            throw new ApiError(400, "The input file must be uploaded with purpose 'batch'.", "input_file_id", null);
        }
        ensureIndexes();
        long now = now();
        String id = BatchFiles.newId("batch_");
        Document batch = new Document("_id", id).append("object", "batch").append("endpoint", endpoint).append("errors", null)
                .append("input_file_id", inputFileId).append("completion_window", window).append("status", "validating")
                .append("output_file_id", null).append("error_file_id", null).append("created_at", now)
                .append("in_progress_at", null).append("expires_at", now + WINDOW_SECONDS).append("finalizing_at", null)
                .append("completed_at", null).append("failed_at", null).append("expired_at", null).append("cancelling_at", null)
                .append("cancelled_at", null)
                .append("request_counts", new Document("total", 0).append("completed", 0).append("failed", 0))
                .append("metadata", metadata)
                .append("x_order", lastOrder.updateAndGet(last -> Math.max(last + 1, System.currentTimeMillis() * 1000)));
        batches.insertOne(batch);

        Validation v = validate(inputFileId);
        if (!v.errors.isEmpty()) {
            Document errors = new Document("object", "list").append("data", v.errors);
            batches.updateOne(Filters.eq("_id", id), Updates.combine(Updates.set("status", "failed"), Updates.set("failed_at", now()),
                    Updates.set("errors", errors)));
            LOG.info("Batch {} failed validation of {}: {} error(s), the first: {}", id, inputFileId, v.errors.size(),
                    v.errors.get(0).getString("message"));
            return json(exchange, 200, batchObject(batches.find(Filters.eq("_id", id)).first()));
        }
        // lines whose request is not a chat completion request: their 400, stored now (they never reach a worker)
        if (!v.invalidRequests.isEmpty()) {
            List<WriteModel<Document>> writes = new ArrayList<>();
            for (Document d : v.invalidRequests) {
                d.append("batch_id", id).append("job", id).append("pid", pid(id, d.getString("custom_id")));
                d.put("response", new Document("status_code", 400).append("request_id", "req_" + d.getString("pid"))
                        .append("body", new Document("error", d.remove("problem"))));
                d.put("error", null);
                writes.add(new ReplaceOneModel<>(Filters.eq("pid", d.getString("pid")), d, new ReplaceOptions().upsert(true)));
            }
            results.bulkWrite(writes);
        }
        long started = batches.updateOne(Filters.and(Filters.eq("_id", id), Filters.eq("status", "validating")), Updates.combine(
                Updates.set("status", "in_progress"), Updates.set("in_progress_at", now()), Updates.set("request_counts.total", v.lines),
                Updates.set("x_queuing", now()))).getModifiedCount();
        if (started == 0) { // cancelled while it was being validated: nothing is queued, the lines refused above stay counted
            batches.updateOne(Filters.eq("_id", id), Updates.set("request_counts.total", (long) v.invalidRequests.size()));
            return json(exchange, 200, refresh(batches.find(Filters.eq("_id", id)).first()));
        }
        try (Lines lines = new Lines(id, inputFileId, v.invalidLines, Set.of())) {
            ConfirmingPublisher.Confirmed queued = publisher.publish(tasksQueue, lines, null);
            batches.updateOne(Filters.eq("_id", id), Updates.unset("x_queuing"));
            LOG.info("Batch {}: {} line(s) of {} queued to {}, {} refused as requests", id, queued.count(), inputFileId, tasksQueue,
                    v.invalidRequests.size());
        } catch (PublishException | io.llmbatch.rabbit.MessageRefusedException e) {
            Document errors = serverError("the broker did not take every line (" + e.getMessage() + "); lines it took may still run");
            batches.updateOne(Filters.eq("_id", id), Updates.combine(Updates.set("status", "failed"), Updates.set("failed_at", now()),
                    Updates.set("errors", errors), Updates.unset("x_queuing")));
            LOG.warn("Batch {} failed: its lines could not all be queued: {}", id, e.getMessage());
        }
        return json(exchange, 200, refresh(batches.find(Filters.eq("_id", id)).first()));
    }

    /**
     * The node that queued a batch's lines stopped midway (its lease ran out): this node takes the lease over and queues
     * again, in the background, every line of the input file that has no stored result. A line queued before the stop
     * and not yet stored runs twice; its key keeps one result.
     */
    private void requeue(Document b, long lease) {
        String id = b.getString("_id");
        if (batches.updateOne(Filters.and(Filters.eq("_id", id), Filters.eq("status", "in_progress"), Filters.eq("x_queuing", lease)),
                Updates.set("x_queuing", now())).getModifiedCount() == 0) {
            return; // another request took it over
        }
        REQUEUE.execute(() -> {
            try {
                Set<String> stored = new java.util.HashSet<>();
                results.find(Filters.eq("batch_id", id)).projection(new Document("pid", 1))
                        .forEach(d -> stored.add(d.getString("pid")));
                try (Lines lines = new Lines(id, b.getString("input_file_id"), Set.of(), stored)) {
                    long queued = publisher.publish(tasksQueue, lines, null).count();
                    batches.updateOne(Filters.eq("_id", id), Updates.unset("x_queuing"));
                    LOG.warn("Batch {}: its queuing was cut off (the node queuing it stopped); {} line(s) without a result queued again",
                            id, queued);
                }
            } catch (RuntimeException e) { // the lease runs out again: a later look at the batch tries once more
                LOG.warn("Batch {}: cannot queue its remaining lines again yet: {}", id, e.getMessage());
            }
        });
    }

    /** {@code GET /v1/batches/{id}}: the Batch object, its status and counts from the stored results. */
    public String getBatch(Exchange exchange) throws IOException {
        return json(exchange, 200, refresh(batch(exchange)));
    }

    /** {@code GET /v1/batches?limit=20&after=batch_...}: newest first, as OpenAI lists them. */
    public String listBatches(Exchange exchange) throws IOException {
        Message msg = exchange.getMessage();
        int limit = 20;
        String l = msg.getHeader("limit", String.class);
        if (l != null && !l.isBlank()) {
            try {
                limit = Integer.parseInt(l.trim());
            } catch (NumberFormatException e) {
                limit = -1;
            }
            if (limit < 1 || limit > 100) {
                throw new ApiError(400, "Invalid 'limit': an integer from 1 to 100.", "limit", "invalid_value");
            }
        }
        Bson filter = new Document();
        String after = msg.getHeader("after", String.class);
        if (after != null && !after.isBlank()) {
            Document a = batches().find(Filters.eq("_id", after)).first();
            if (a == null) {
                throw new ApiError(400, "Invalid 'after': no batch '" + after + "'.", "after", null);
            }
            long c = a.get("x_order", Number.class).longValue();
            filter = Filters.or(Filters.lt("x_order", c), Filters.and(Filters.eq("x_order", c), Filters.lt("_id", after)));
        }
        List<Map<String, Object>> data = new ArrayList<>();
        boolean more = false;
        try (MongoCursor<Document> c = batches.find(filter).sort(Sorts.descending("x_order", "_id")).limit(limit + 1).iterator()) {
            while (c.hasNext()) {
                Document d = c.next();
                if (data.size() == limit) {
                    more = true;
                    break;
                }
                data.add(refresh(d));
            }
        }
        Map<String, Object> list = new LinkedHashMap<>();
        list.put("object", "list");
        list.put("data", data);
        list.put("first_id", data.isEmpty() ? null : data.get(0).get("id"));
        list.put("last_id", data.isEmpty() ? null : data.get(data.size() - 1).get("id"));
        list.put("has_more", more);
        return json(exchange, 200, list);
    }

    /**
     * {@code POST /v1/batches/{id}/cancel}: {@code cancelling}, then {@code cancelled} once the lines still queued have
     * reached a worker, which skips them (they go to the error file as {@code batch_cancelled}); lines already done stay
     * in the output.
     */
    public String cancelBatch(Exchange exchange) throws IOException {
        Document b = batch(exchange);
        String status = b.getString("status");
        if (List.of("completed", "failed", "expired").contains(status)) {
            throw new ApiError(400, "Cannot cancel a batch with status '" + status + "'.", null, null);
        }
        if (List.of("validating", "in_progress").contains(status)) {
            batches.updateOne(Filters.and(Filters.eq("_id", b.getString("_id")), Filters.in("status", "validating", "in_progress")),
                    Updates.combine(Updates.set("status", "cancelling"), Updates.set("cancelling_at", now()),
                            Updates.set("x_final", "cancelled")));
            tellWorkers();
            LOG.info("Batch {} cancelling", b.getString("_id"));
        }
        return json(exchange, 200, refresh(batches.find(Filters.eq("_id", b.getString("_id"))).first()));
    }

    /** The batches whose queued lines workers must skip: those cancelled (or expired) within the last week. */
    private void tellWorkers() throws IOException {
        List<String> ids = new ArrayList<>();
        try (MongoCursor<Document> c = batches.find(Filters.and(Filters.exists("x_final"),
                Filters.gt("cancelling_at", now() - CANCELLED_LIST_SECONDS))).projection(new Document("_id", 1))
                .sort(Sorts.descending("cancelling_at")).limit(10_000).iterator()) {
            c.forEachRemaining(d -> ids.add(d.getString("_id")));
        }
        cancelled.publish(publisher, ids);
    }

    /**
     * The Batch object as it stands: for a batch running or cancelling, its counts from the stored results and, once every
     * line is accounted for, its output and error files written (by whichever request gets there first) and its final
     * status set. A batch past its completion window stops: its lines not run are skipped and reported
     * {@code batch_expired}.
     */
    Map<String, Object> refresh(Document b) throws IOException {
        String status = b.getString("status");
        if ("validating".equals(status) && b.get("created_at", Number.class).longValue() < now() - VALIDATION_CUT_OFF_SECONDS) {
            // the node that took the batch stopped while validating it: said, instead of validating forever
            Document errors = serverError("validation was cut off (the node that received the batch stopped): create the batch again");
            batches.updateOne(Filters.and(Filters.eq("_id", b.getString("_id")), Filters.eq("status", "validating")), Updates.combine(
                    Updates.set("status", "failed"), Updates.set("failed_at", now()), Updates.set("errors", errors)));
            return batchObject(batches.find(Filters.eq("_id", b.getString("_id"))).first());
        }
        if (!List.of("in_progress", "cancelling", "finalizing").contains(status)) {
            return batchObject(b);
        }
        String id = b.getString("_id");
        if ("in_progress".equals(status) && b.get("x_queuing") instanceof Number lease
            && lease.longValue() < now() - QUEUING_LEASE_SECONDS) {
            requeue(b, lease.longValue());
        }
        if ("in_progress".equals(status) && now() > b.get("expires_at", Number.class).longValue() && b.get("x_final") == null) {
            batches.updateOne(Filters.eq("_id", id), Updates.combine(Updates.set("x_final", "expired"), Updates.set("cancelling_at", now())));
            tellWorkers();
        }
        Counts c = counts(id);
        long total = b.get("request_counts", Document.class).get("total", Number.class).longValue();
        Document counts = new Document("total", total).append("completed", c.completed).append("failed", c.failed);
        if (c.stored < total || "finalizing".equals(status) && b.get("finalizing_at", Number.class).longValue() > now() - 600) {
            batches.updateOne(Filters.eq("_id", id), Updates.set("request_counts", counts));
            b.put("request_counts", counts);
            return batchObject(b);
        }
        // every line stored: this request writes the files, unless another one is at it (a stale claim is taken over)
        Document claimed = batches.findOneAndUpdate(Filters.and(Filters.eq("_id", id), Filters.or(
                        Filters.in("status", "in_progress", "cancelling"),
                        Filters.and(Filters.eq("status", "finalizing"), Filters.lt("finalizing_at", now() - 600)))),
                Updates.combine(Updates.set("status", "finalizing"), Updates.set("finalizing_at", now()), Updates.set("request_counts", counts)),
                new FindOneAndUpdateOptions().returnDocument(ReturnDocument.AFTER));
        if (claimed == null) {
            return batchObject(batches.find(Filters.eq("_id", id)).first());
        }
        String fin = claimed.getString("x_final") == null ? "completed" : claimed.getString("x_final");
        String[] fileIds = writeFiles(id, "expired".equals(fin));
        long at = now();
        batches.updateOne(Filters.eq("_id", id), Updates.combine(Updates.set("status", fin), Updates.set(fin + "_at", at),
                Updates.set("output_file_id", fileIds[0]), Updates.set("error_file_id", fileIds[1])));
        LOG.info("Batch {} {}: {} completed, {} failed of {}; output {}, errors {}", id, fin, c.completed, c.failed, total, fileIds[0], fileIds[1]);
        return batchObject(batches.find(Filters.eq("_id", id)).first());
    }

    private record Counts(long stored, long completed, long failed) {
    }

    private Counts counts(String id) {
        long stored = results.countDocuments(Filters.eq("batch_id", id));
        long completed = results.countDocuments(Filters.and(Filters.eq("batch_id", id), Filters.eq("response.status_code", 200)));
        long skipped = results.countDocuments(Filters.and(Filters.eq("batch_id", id), Filters.eq("error.code", "batch_cancelled")));
        return new Counts(stored, completed, stored - completed - skipped);
    }

    /** Writes the output file (lines that succeeded) and the error file (the others), in input order; null for an empty one. */
    private String[] writeFiles(String id, boolean expired) throws IOException {
        String outId = BatchFiles.newId("file-");
        String errId = BatchFiles.newId("file-");
        long outLines = 0;
        long errLines = 0;
        try (GridFSUploadStream out = files.upload(outId, id + "_output.jsonl", "batch_output");
             GridFSUploadStream err = files.upload(errId, id + "_error.jsonl", "batch_output");
             MongoCursor<Document> c = results.find(Filters.eq("batch_id", id)).sort(Sorts.ascending("line")).batchSize(1000).iterator()) {
            while (c.hasNext()) {
                Document d = c.next();
                Document response = d.get("response", Document.class);
                Document error = d.get("error", Document.class);
                if (expired && error != null && "batch_cancelled".equals(error.getString("code"))) {
                    error = new Document("code", "batch_expired")
                            .append("message", "This request could not be executed before the completion window expired.");
                }
                Document line = new Document("id", "batch_req_" + d.getString("pid")).append("custom_id", d.getString("custom_id"))
                        .append("response", response).append("error", error);
                // compact JSON, as the Batch API writes its lines (the stored values are JSON's own: maps, lists, numbers)
                byte[] bytes = (JSON.writeValueAsString(line) + "\n").getBytes(StandardCharsets.UTF_8);
                boolean ok = response != null && Integer.valueOf(200).equals(response.getInteger("status_code")) && error == null;
                if (ok) {
                    out.write(bytes);
                    outLines++;
                } else {
                    err.write(bytes);
                    errLines++;
                }
            }
            if (outLines == 0) {
                out.abort();
            }
            if (errLines == 0) {
                err.abort();
            }
        }
        return new String[] { outLines == 0 ? null : outId, errLines == 0 ? null : errId };
    }

    private Document batch(Exchange exchange) {
        String id = exchange.getMessage().getHeader("id", String.class);
        Document b = id == null ? null : batches().find(Filters.eq("_id", id)).first();
        if (b == null) {
            throw new ApiError(404, "No batch found with id '" + id + "'.", "id", null);
        }
        return b;
    }

    /** The stored batch as the API shows it: {@code id} first, no internal fields. */
    private static Map<String, Object> batchObject(Document b) {
        Map<String, Object> o = new LinkedHashMap<>();
        o.put("id", b.get("_id"));
        b.forEach((k, v) -> {
            if (!k.equals("_id") && !k.startsWith("x_")) {
                o.put(k, v);
            }
        });
        return o;
    }

    // ---- the input file ------------------------------------------------------------------------------------------

    /** What validating an input file found. */
    private static final class Validation {
        long lines;
        final List<Document> errors = new ArrayList<>();
        /** Well-formed lines whose request is not a chat completion request (each with its custom_id, line, problem). */
        final List<Document> invalidRequests = new ArrayList<>();
        final Set<Long> invalidLines = new HashSet<>();
    }

    private Validation validate(String fileId) throws IOException {
        Validation v = new Validation();
        Set<String> ids = new HashSet<>();
        try (BufferedReader r = new BufferedReader(new InputStreamReader(files.open(fileId), StandardCharsets.UTF_8))) {
            String text;
            long n = 0;
            while ((text = r.readLine()) != null) {
                n++;
                if (text.isBlank()) {
                    continue;
                }
                JsonNode line;
                try {
                    line = JSON.readTree(text);
                } catch (JsonProcessingException e) {
                    line = null;
                }
                if (line == null || !line.isObject()) {
                    error(v, "invalid_json_line", "This line is not parseable as valid JSON.", null, n);
                    continue;
                }
                v.lines++;
                JsonNode customId = line.get("custom_id");
                if (customId == null || !customId.isTextual() || customId.asText().isEmpty()) {
                    error(v, "missing_required_parameter", "Missing required parameter: 'custom_id' (a non-empty string).", "custom_id", n);
                } else if (!ids.add(customId.asText())) {
                    error(v, "duplicate_custom_id", "The custom_id for this request is a duplicate of another request. The custom_id "
                                                    + "parameter must be unique for each request in a batch.", "custom_id", n);
                }
                JsonNode method = line.get("method");
                if (method == null || !method.isTextual()) {
                    error(v, "missing_required_parameter", "Missing required parameter: 'method'.", "method", n);
                } else if (!"POST".equals(method.asText())) {
                    error(v, "invalid_value", "Invalid value for 'method': only POST is supported.", "method", n);
                }
                JsonNode url = line.get("url");
                if (url == null || !url.isTextual()) {
                    error(v, "missing_required_parameter", "Missing required parameter: 'url'.", "url", n);
                } else if (!ENDPOINT.equals(url.asText())) {
                    error(v, "mismatched_endpoint", "The provided URL '" + url.asText() + "' does not match the endpoint of the batch ('"
                                                    + ENDPOINT + "').", "url", n);
                }
                JsonNode body = line.get("body");
                if (body == null || !body.isObject()) {
                    error(v, "missing_required_parameter", "Missing required parameter: 'body' (an object).", "body", n);
                } else if (v.errors.isEmpty()) {
                    String problem = requestProblem(body);
                    if (problem != null) {
                        v.invalidLines.add(n);
                        v.invalidRequests.add(new Document("custom_id", customId.asText()).append("line", n).append("problem",
                                new Document("message", problem).append("type", "invalid_request_error").append("param", "messages")
                                        .append("code", null)));
                    }
                }
            }
        }
        if (v.errors.isEmpty() && v.lines == 0) {
            error(v, "empty_file", "The batch input file is empty.", null, 0);
        }
        return v;
    }

    private static void error(Validation v, String code, String message, String param, long line) {
        if (v.errors.size() < MAX_ERRORS) {
            v.errors.add(new Document("code", code).append("message", message).append("param", param).append("line", line == 0 ? null : line));
        }
    }

    /** Why a line's body is not a chat completion request the backends can run, or null. */
    private static String requestProblem(JsonNode body) {
        JsonNode messages = body.get("messages");
        if (messages == null || !messages.isArray() || messages.isEmpty()) {
            return "Missing required parameter: 'messages' (a non-empty array).";
        }
        for (JsonNode m : messages) {
            if (!m.isObject() || !m.path("role").isTextual()) {
                return "Invalid 'messages': each message is an object with a 'role' and 'content'.";
            }
        }
        return null;
    }

    /** The lines of an input file as tasks of the batch, read again from GridFS as they are published. */
    private final class Lines implements Iterator<OutboundMessage>, AutoCloseable {
        private final String batchId;
        private final BufferedReader reader;
        private final Set<Long> skip;
        private final Set<String> stored;
        private long n;
        private OutboundMessage next;
        private long renewed = now();

        /** @param skip line numbers not to queue; {@code stored} pids of lines whose result is stored (not queued either) */
        Lines(String batchId, String fileId, Set<Long> skip, Set<String> stored) {
            this.batchId = batchId;
            this.reader = new BufferedReader(new InputStreamReader(files.open(fileId), StandardCharsets.UTF_8));
            this.skip = skip;
            this.stored = stored;
        }

        @Override
        public boolean hasNext() {
            while (next == null) {
                String text;
                try {
                    text = reader.readLine();
                    if (text == null) {
                        reader.close();
                        return false;
                    }
                } catch (IOException e) {
                    throw new IllegalStateException("cannot read the input file again: " + e.getMessage(), e);
                }
                n++;
                if (now() - renewed >= QUEUING_RENEW_SECONDS) { // still at it: the lease stays ours
                    renewed = now();
                    batches.updateOne(Filters.eq("_id", batchId), Updates.set("x_queuing", renewed));
                }
                if (!text.isBlank() && !skip.contains(n)) {
                    OutboundMessage m = task(batchId, text, n);
                    if (!stored.contains(String.valueOf(m.headers().get(Jobs.PID)))) {
                        next = TaskEnvelope.wrap(m);
                    }
                }
            }
            return true;
        }

        @Override
        public void close() {
            try {
                reader.close();
            } catch (IOException e) {
                // nothing left to read
            }
        }

        @Override
        public OutboundMessage next() {
            if (!hasNext()) {
                throw new NoSuchElementException();
            }
            OutboundMessage m = next;
            next = null;
            return m;
        }
    }

    /**
     * One line as a task: the line itself as the body, and the job's fields every worker reads, as headers (the queuing
     * wraps them into the body, {@link TaskEnvelope}): the request (the body as given; a prompt and system prompt made
     * from its messages for ChatGLM's api.py), the key, the collection, the model the line asked for, the batch,
     * custom_id and line number.
     */
    OutboundMessage task(String batchId, String text, long n) {
        ObjectNode line;
        try {
            line = (ObjectNode) JSON.readTree(text);
        } catch (IOException e) {
            throw new IllegalStateException(e); // validated before
        }
        ObjectNode body = (ObjectNode) line.get("body");
        String customId = line.get("custom_id").asText();
        String pid = pid(batchId, customId);
        ObjectNode request = JSON.createObjectNode();
        request.set("body", body);
        StringBuilder system = new StringBuilder();
        List<String> turns = new ArrayList<>();
        for (JsonNode m : body.get("messages")) {
            String content = text(m.get("content"));
            if ("system".equals(m.path("role").asText()) || "developer".equals(m.path("role").asText())) {
                system.append(system.length() == 0 ? "" : "\n\n").append(content);
            } else {
                turns.add(m.path("role").asText() + ": " + content);
            }
        }
        int userTurns = turns.size();
        String prompt = userTurns == 1 ? text(lastNonSystem(body.get("messages")).get("content")) : String.join("\n", turns);
        request.put("prompt", prompt);
        if (system.length() > 0) {
            request.put("system", system.toString());
        }
        ObjectNode params = JSON.createObjectNode();
        for (String p : List.of("temperature", "top_p")) {
            if (body.has(p)) {
                params.set(p, body.get(p));
            }
        }
        if (!params.isEmpty()) {
            request.set("params", params);
        }
        // no "model" in the request: the worker sends its backends' own (;model= or llmbatch.llm.model), whatever the line
        // asked for; the asked model is the line's model_name and its output's model
        String model = body.path("model").isTextual() ? body.get("model").asText() : defaultModel;
        String hash = JobDefinition.sha256(request.toString());
        Map<String, Object> h = new LinkedHashMap<>();
        h.put(ConfirmingPublisher.SOURCE_HEADER, "openai-batch:" + batchId);
        h.put(Jobs.JOB, batchId);
        h.put(Jobs.REQUEST, request.toString());
        h.put(Jobs.REQUEST_HASH, hash);
        h.put(Jobs.PROMPT_VERSION, hash.substring(0, 12));
        h.put(Jobs.PID, pid);
        h.put(Jobs.COLLECTION, resultsCollection);
        h.put(Jobs.MODEL, model);
        h.put(Jobs.OUTPUT_FIELD, "output");
        h.put(Jobs.BATCH, batchId);
        h.put(Jobs.CUSTOM_ID, customId);
        h.put(Jobs.LINE, Long.toString(n));
        return new OutboundMessage(text.getBytes(StandardCharsets.UTF_8), batchId + ":" + n, h, n);
    }

    private static JsonNode lastNonSystem(JsonNode messages) {
        JsonNode last = null;
        for (JsonNode m : messages) {
            String role = m.path("role").asText();
            if (!role.equals("system") && !role.equals("developer")) {
                last = m;
            }
        }
        return last;
    }

    /** A message's content as text: a string, or the text parts of an array of parts. */
    private static String text(JsonNode content) {
        if (content == null || content.isNull()) {
            return "";
        }
        if (content.isTextual()) {
            return content.asText();
        }
        StringBuilder s = new StringBuilder();
        if (content.isArray()) {
            for (JsonNode part : content) {
                if (part.path("text").isTextual()) {
                    s.append(s.length() == 0 ? "" : "\n").append(part.get("text").asText());
                }
            }
        }
        return s.toString();
    }

    /** The key of a line's result: md5 of the batch id and custom_id, joined by U+001F (as a job's key is made). */
    static String pid(String batchId, String customId) {
        return Jobs.md5(batchId + "\u001f" + customId);
    }

    // ---- plumbing ------------------------------------------------------------------------------------------------

    private void ensureIndexes() {
        if (!indexed) {
            results.createIndex(Indexes.ascending("batch_id"));
            batches.createIndex(Indexes.descending("x_order"));
            indexed = true;
        }
    }

    private BatchFiles files() {
        if (files == null) {
            throw new ApiError(503, "the Batch API needs MongoDB, and this ingest node has none: set MONGODB_URI (llmbatch.mongodb.uri)",
                    null, null);
        }
        return files;
    }

    private MongoCollection<Document> batches() {
        files();
        return batches;
    }

    /** A batch's {@code errors} list holding one {@code server_error}: the batch failed for this server's reason. */
    private static Document serverError(String message) {
        return new Document("object", "list").append("data", List.of(new Document("code", "server_error").append("message", message)
                .append("param", null).append("line", null)));
    }

    private static long now() {
        return System.currentTimeMillis() / 1000;
    }

    private JsonNode readJson(Exchange exchange) {
        files();
        String body = exchange.getMessage().getBody(String.class);
        JsonNode req;
        try {
            req = body == null || body.isBlank() ? null : JSON.readTree(body);
        } catch (IOException e) {
            throw new ApiError(400, "We could not parse the JSON body of your request: " + io.llmbatch.ingest.Tasks.describe(e), null, null);
        }
        if (req == null || !req.isObject()) {
            throw new ApiError(400, "expected a JSON object", null, null);
        }
        return req;
    }

    private static String requiredText(JsonNode req, String field) {
        JsonNode v = req.get(field);
        if (v == null || v.isNull()) {
            throw new ApiError(400, "Missing required parameter: '" + field + "'.", field, "missing_required_parameter");
        }
        if (!v.isTextual()) {
            throw new ApiError(400, "Invalid type for '" + field + "': expected a string.", field, "invalid_type");
        }
        return v.asText();
    }

    /** Up to 16 pairs, keys up to 64 characters, values strings up to 512 (the API's metadata). */
    private static Document metadata(JsonNode m) {
        if (m == null || m.isNull()) {
            return null;
        }
        if (!m.isObject() || m.size() > 16) {
            throw new ApiError(400, "Invalid 'metadata': an object of up to 16 string values.", "metadata", "invalid_value");
        }
        Document d = new Document();
        for (Iterator<Map.Entry<String, JsonNode>> it = m.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            if (e.getKey().length() > 64 || !e.getValue().isTextual() || e.getValue().asText().length() > 512) {
                throw new ApiError(400, "Invalid 'metadata': keys up to 64 characters, values strings up to 512.", "metadata", "invalid_value");
            }
            d.append(e.getKey(), e.getValue().asText());
        }
        return d;
    }

    /** An error answer in the OpenAI shape, for whatever the route caught. */
    public String failed(Exchange exchange) throws IOException {
        Exception e = exchange.getProperty(Exchange.EXCEPTION_CAUGHT, Exception.class);
        int status;
        Map<String, Object> error = new LinkedHashMap<>();
        if (e instanceof IngestException ie) {
            status = ie.status();
            error.put("message", ie.getMessage());
            error.put("type", status >= 500 ? "server_error" : "invalid_request_error");
            error.put("param", e instanceof ApiError a ? a.param : null);
            error.put("code", e instanceof ApiError a ? a.code : status == 401 ? "invalid_api_key" : null);
        } else if (e instanceof com.mongodb.MongoException me) {
            status = 503;
            error.put("message", "MongoDB unavailable: " + me.getMessage());
            error.put("type", "server_error");
            error.put("param", null);
            error.put("code", null);
        } else {
            status = 500;
            error.put("message", "internal error: " + e);
            error.put("type", "server_error");
            error.put("param", null);
            error.put("code", null);
            LOG.error("OpenAI Batch API request failed", e);
        }
        String answer = json(exchange, status, Map.of("error", error));
        if (status == 401) {
            exchange.getMessage().setHeader("WWW-Authenticate", "Bearer");
        }
        return answer;
    }

    private static String json(Exchange exchange, int status, Object answer) throws IOException {
        Message msg = exchange.getMessage();
        msg.getHeaders().clear(); // never echo request headers (Authorization)
        msg.setHeader(Exchange.HTTP_RESPONSE_CODE, status);
        msg.setHeader(Exchange.CONTENT_TYPE, "application/json");
        return JSON.writeValueAsString(answer);
    }
}
