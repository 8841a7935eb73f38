package io.llmbatch.ingest;

import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.Closeable;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.Reader;
import java.io.UncheckedIOException;
import java.nio.charset.Charset;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.TreeMap;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.camel.CamelContext;
import org.apache.camel.Exchange;
import org.apache.commons.csv.CSVFormat;
import org.apache.commons.csv.CSVParser;
import org.apache.commons.csv.CSVRecord;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.llmbatch.jobs.TaskRenderer;
import io.llmbatch.rabbit.ConfirmingPublisher;
import io.llmbatch.rabbit.MessageRefusedException;
import io.llmbatch.rabbit.OutboundMessage;
import io.llmbatch.rabbit.PublishException;

/**
 * Streams one inbox file ({@code .csv} with a header row, {@code .jsonl}/{@code .ndjson}, {@code .json} array)
 * onto the tasks queue with publisher confirms, never holding more than the confirm window in memory. A file in
 * {@code inbox/<job>/} holds tasks of that job, one in the inbox itself tasks of the job each names (else the default
 * job); each task is rendered for its job, and one whose result is stored from the same request is skipped unless the
 * file's name has {@code .force.} in it ({@code companies.force.csv}).
 *
 * <p>A bad record goes to {@code .done/<file>.rejects.jsonl} with its line number and reason and the rest of
 * the file goes on. A broker failure does not fail the file: publishing resumes after the last confirmed
 * record once the broker is back. A file that cannot be read at all fails (the route moves it to
 * {@code .failed/} with an error report).
 */
public class FileIngest {

    private static final Logger LOG = LoggerFactory.getLogger(FileIngest.class);
    private static final long PROGRESS_EVERY = 100_000;
    private static final long MAX_BACKOFF_MILLIS = 30_000;
    /** How much of a refused record the rejects file quotes. */
    private static final int MAX_RAW_CHARS = 10_000;

    private final ConfirmingPublisher publisher;
    private final String queue;
    private final TaskRenderer renderer;
    private final Charset charset;
    private final int maxRecordChars;
    private final CamelContext camelContext;

    /** Tasks rendered and admitted together: one ledger round trip to MongoDB per this many records. */
    private static final int ADMIT_BATCH = 500;

    public FileIngest(ConfirmingPublisher publisher, String queue, TaskRenderer renderer, Charset charset,
                      int maxRecordChars, CamelContext camelContext) {
        this.publisher = publisher;
        this.queue = queue;
        this.renderer = renderer;
        this.charset = charset;
        this.maxRecordChars = maxRecordChars;
        this.camelContext = camelContext;
    }

    /** Counts of one file, as logged and set as headers on the exchange. */
    public record Counts(String file, String job, long read, long published, long skipped, long rejected, Path rejects, long millis) {
        @Override
        public String toString() {
            return "read " + read + ", published " + published + ", skipped " + skipped + " (stored from the same request), rejected "
                   + rejected + (rejected > 0 ? " (see " + rejects + ")" : "") + " in " + millis + " ms"
                   + (job != null ? " (job " + job + ")" : "");
        }
    }

    /** The failure of a file, with how far publishing got, for the error report. */
    public static class FileIngestException extends RuntimeException {
        private final long confirmed;

        FileIngestException(String message, long confirmed, Throwable cause) {
            super(message, cause);
            this.confirmed = confirmed;
        }

        public long confirmed() {
            return confirmed;
        }
    }

    /**
     * The node stops (or the route is stopped) while a file is being published: what was sent is settled, the position
     * saved, and the file stays in the inbox (the route leaves it there) to resume on the next start.
     */
    public static class InboxStoppedException extends RuntimeException {
        InboxStoppedException(String message) {
            super(message);
        }
    }

    /**
     * Streams the file onto the tasks queue. Its confirmed position is saved beside it as confirms arrive (every half
     * confirm window), and a file that has a saved position resumes after it. At most half the confirm window is in
     * flight, so after a {@code kill -9} at most the confirm window of rows is sent twice: the rows in flight and those
     * confirmed since the last save.
     */
    public Counts ingest(Exchange exchange) {
        File file = exchange.getMessage().getBody(File.class);
        String name = file.getName();
        String relative = exchange.getMessage().getHeader(Exchange.FILE_NAME, name, String.class);
        String job = jobOf(relative);
        boolean force = name.toLowerCase(Locale.ROOT).contains(".force.");
        Path done = job == null ? inboxOf(file.toPath(), null).resolve(".done") : inboxOf(file.toPath(), job).resolve(".done").resolve(job);
        Path rejects = done.resolve(name + ".rejects.jsonl");
        long start = System.nanoTime();
        InboxPosition position;
        try {
            position = InboxPosition.of(file.toPath(), job);
        } catch (IOException e) {
            throw new FileIngestException("cannot read " + name + ": " + e.getMessage(), 0, e);
        }
        int inFlight = Math.max(1, publisher.window() / 2);
        Progress progress = new Progress(rejects, position, inFlight);
        InboxPosition.Saved saved = position.load();
        if (saved != null) {
            progress.resume(saved);
            LOG.info("Inbox {}: resuming after record {} ({} task(s) confirmed, {} skipped, {} rejected before it stopped)",
                    name, saved.doneThrough() + 1, saved.published(), saved.skipped(), saved.rejected());
        }
        java.util.function.BooleanSupplier stopping = stopRequested(exchange);
        long backoff = 1000;
        try {
            while (!progress.stopped) {
                try (Records records = open(file.toPath(), name, job)) {
                    publisher.publish(queue, new TaskMessages(records, name, job, force, progress, stopping), inFlight, progress::confirmed);
                    break;
                } catch (MessageRefusedException e) {
                    // the broker refused this record for itself (its size over the broker's own limit): reject it and
                    // go on with the records not yet confirmed; the publisher now refuses such records before sending
                    OutboundMessage m = e.message();
                    String body = new String(m.body(), java.nio.charset.StandardCharsets.UTF_8);
                    progress.reject(new Record(m.position(), lineOf(m), null, e.getMessage(),
                            body.length() > MAX_RAW_CHARS ? body.substring(0, MAX_RAW_CHARS) + "..." : body));
                    LOG.warn("Inbox {}: the broker refused line {}: {}; going on with the rest", name, lineOf(m), e.getMessage());
                } catch (PublishException | com.mongodb.MongoException e) {
                    // the broker, or the job's ledger in MongoDB (each block's stored results are looked up and its tasks
                    // entered before they are sent), failed or refused: the file waits where it is and resumes
                    if (stopping.getAsBoolean()) {
                        progress.stopped = true;
                        break;
                    }
                    String refusal = e instanceof com.mongodb.MongoException me ? io.llmbatch.mongo.MongoErrors.permanent(me) : null;
                    if (refusal != null) {
                        LOG.error("Inbox {}: MongoDB refused the job's ledger after {} confirmed task(s); retrying in {} s until "
                                  + "someone fixes it: {}", name, progress.published(), backoff / 1000, refusal);
                    } else {
                        LOG.warn("Inbox {}: {} failure after {} confirmed task(s); resuming with the unconfirmed ones in {} s: {}",
                                name, e instanceof PublishException ? "broker" : "MongoDB", progress.published(), backoff / 1000,
                                e.getMessage());
                    }
                    progress.stopped = !sleep(backoff, stopping);
                    backoff = Math.min(backoff * 2, MAX_BACKOFF_MILLIS);
                }
            }
            progress.save();
        } catch (IOException | UncheckedIOException e) {
            throw new FileIngestException("cannot read " + name + ": " + rootMessage(e), progress.published(), e);
        } finally {
            progress.closeRejects();
        }
        if (progress.stopped) {
            throw new InboxStoppedException("stopped after " + (progress.doneThrough + 1) + " record(s) (" + progress.published
                                            + " task(s) confirmed, " + progress.rejected + " rejected): left in the inbox, "
                                            + "it resumes after them on the next start");
        }
        // the saved position goes once the file is in .done/ (this runs after the file component's move)
        exchange.getExchangeExtension().addOnCompletion(new org.apache.camel.support.SynchronizationAdapter() {
            @Override
            public void onComplete(Exchange done) {
                if (!file.exists()) {
                    position.delete();
                }
            }

            @Override
            public int getOrder() {
                return LOWEST;
            }
        });
        Counts counts = new Counts(name, job, progress.read, progress.published, progress.skipped, progress.rejected, rejects,
                (System.nanoTime() - start) / 1_000_000);
        LOG.info("Inbox {}: {}", name, counts);
        var msg = exchange.getMessage();
        msg.setHeader("llmbatchRead", counts.read());
        msg.setHeader("llmbatchPublished", counts.published());
        msg.setHeader("llmbatchRejected", counts.rejected());
        msg.setHeader("llmbatchSkipped", counts.skipped());
        return counts;
    }

    /** The inbox directory of a file: its directory, or its directory's parent for a file of a job's directory. */
    private static Path inboxOf(Path file, String job) {
        Path dir = file.getParent() != null ? file.getParent() : file.toAbsolutePath().getParent();
        return job == null ? dir : dir.toAbsolutePath().getParent();
    }

    /**
     * The job a file's place names: {@code inbox/<job>/<file>} that job (its {@code jobs/<job>.yaml} must exist), a file
     * in the inbox itself none (each task's {@code job} field, else the default job).
     *
     * @param relative the file's path relative to the inbox ({@code CamelFileName})
     */
    private String jobOf(String relative) {
        String path = relative == null ? "" : relative.replace('\\', '/');
        int slash = path.indexOf('/');
        if (slash < 0) {
            return null;
        }
        if (path.indexOf('/', slash + 1) >= 0) {
            throw new FileIngestException("inbox files go in the inbox or in inbox/<job>/, not deeper: " + relative, 0, null);
        }
        String job = path.substring(0, slash);
        try {
            renderer.jobs().get(job);
        } catch (io.llmbatch.jobs.Jobs.UnknownJobException e) {
            throw new FileIngestException("the directory " + job + "/ names no job: " + e.getMessage(), 0, e);
        }
        return job;
    }

    /** The text of {@code .failed/[<job>/]<file>.error.txt}, from the exception the route caught. */
    public String errorReport(Exchange exchange) {
        Exception e = exchange.getProperty(Exchange.EXCEPTION_CAUGHT, Exception.class);
        String name = exchange.getMessage().getHeader(Exchange.FILE_NAME_ONLY, String.class);
        StringBuilder report = new StringBuilder()
                .append("file: ").append(name).append('\n')
                .append("failed at: ").append(java.time.OffsetDateTime.now()).append('\n')
                .append("error: ").append(e == null ? "unknown" : e.getMessage()).append('\n');
        if (e instanceof FileIngestException fe) {
            report.append("tasks confirmed before the failure: ").append(fe.confirmed()).append('\n');
            if (fe.confirmed() > 0) {
                report.append("dropping the file into the inbox again publishes only those not yet stored (the job's ledger skips "
                              + "the rest); the collector's upsert by pid keeps one document per task either way\n");
            }
        }
        LOG.error("Inbox {} failed, moved to .failed/: {}", name, e == null ? "unknown" : e.getMessage());
        return report.toString();
    }

    /**
     * Moves a file that failed to {@code .failed/[<job>/]} (the report is written beside it) and forgets its position: the
     * route does this itself rather than with the file endpoint's moveFailed, which would also move a file that was
     * only stopped.
     */
    public void moveToFailed(Exchange exchange) throws IOException {
        // the body is the report by now: the file is the one the exchange was made for
        org.apache.camel.component.file.GenericFile<?> consumed = exchange.getProperty(Exchange.FILE_EXCHANGE_FILE,
                org.apache.camel.component.file.GenericFile.class);
        File file = consumed.getFile() instanceof File f ? f : null;
        if (file == null || !file.exists()) {
            return;
        }
        String relative = consumed.getRelativeFilePath().replace('\\', '/');
        Path failed = file.toPath().resolveSibling(".failed");
        if (relative.contains("/")) { // a job's file: .failed/<job>/ in the inbox
            String job = relative.substring(0, relative.indexOf('/'));
            failed = inboxOf(file.toPath(), job).resolve(".failed").resolve(job);
        }
        Files.createDirectories(failed);
        Files.move(file.toPath(), failed.resolve(file.getName()), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        Files.deleteIfExists(InboxPosition.pathFor(file.toPath(), relative.contains("/") ? relative.substring(0, relative.indexOf('/')) : null));
    }

    /** True once the node or this route is stopping (or suspended): the file then stops where it is. */
    private java.util.function.BooleanSupplier stopRequested(Exchange exchange) {
        org.apache.camel.Route route = exchange.getFromRouteId() == null ? null : camelContext.getRoute(exchange.getFromRouteId());
        org.apache.camel.Consumer consumer = route == null ? null : route.getConsumer();
        return () -> camelContext.isStopping() || camelContext.isStopped()
                     || consumer instanceof org.apache.camel.StatefulService s && !s.isStarted();
    }

    /** Sleeps while the broker is failing; false when a stop came first. */
    private static boolean sleep(long millis, java.util.function.BooleanSupplier stopping) {
        long until = System.currentTimeMillis() + millis;
        try {
            while (System.currentTimeMillis() < until) {
                if (stopping.getAsBoolean()) {
                    return false;
                }
                Thread.sleep(Math.min(100, Math.max(1, until - System.currentTimeMillis())));
            }
            return true;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    // ---- reading records ----------------------------------------------------------------------------------

    /** One record of a file: its 0-based position, the line it starts on, the parsed task or the reason it is bad. */
    record Record(long position, long line, JsonNode task, String problem, String raw) {
    }

    interface Records extends Iterator<Record>, Closeable {
    }

    private Records open(Path path, String name, String job) throws IOException {
        String lower = name.toLowerCase(Locale.ROOT);
        if (lower.endsWith(".csv")) {
            return new CsvRecords(reader(path), job);
        } else if (lower.endsWith(".jsonl") || lower.endsWith(".ndjson")) {
            return new JsonLinesRecords(reader(path), maxRecordChars);
        } else if (lower.endsWith(".json")) {
            return new JsonArrayRecords(reader(path));
        }
        throw new IOException("unsupported file type (expected .csv, .jsonl, .ndjson or .json)");
    }

    /** Strict decoding: bytes that are not valid in the configured charset fail the file instead of turning into U+FFFD. */
    private Reader reader(Path path) throws IOException {
        CharsetDecoder decoder = charset.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT);
        InputStream in = Files.newInputStream(path);
        return new InputStreamReader(in, decoder);
    }

    private final class CsvRecords implements Records {
        private final CSVParser parser;
        private final Iterator<CSVRecord> rows;
        private final List<String> header;
        private long position;
        private long nextLine = 2;

        private final RecordGuard guard;

        /** @param job the job the file's directory names, or null */
        CsvRecords(Reader reader, String job) throws IOException {
            BufferedReader in = new BufferedReader(reader, 1 << 16);
            in.mark(1);
            if (in.read() != '\uFEFF') { // a UTF-8 byte order mark, as spreadsheet exports write, is not part of the header
                in.reset();
            }
            this.guard = new RecordGuard(in, () -> "the CSV record starting at line " + nextLine + " is longer than "
                    + "llmbatch.ingest.max-record-chars (" + maxRecordChars + " characters): most likely a quote (\") opened on "
                    + "line " + nextLine + " is never closed, which makes the rest of the file one field. A quote decides where a "
                    + "CSV record ends, so reading cannot resume after it: fix the file and drop it again");
            nextLine = 1;
            this.parser = CSVFormat.RFC4180.builder().setHeader().setSkipHeaderRecord(true)
                    .setIgnoreSurroundingSpaces(false).get().parse(guard);
            nextLine = 2;
            guard.recordDone();
            this.header = parser.getHeaderNames();
            // the columns the file's job needs (a file with a job column names the job per row: checked per row)
            List<String> required = job == null && header.contains("job") ? List.of()
                    : renderer.jobs().get(job != null ? job : renderer.jobs().defaultJobName()).requiredFields();
            if (header.isEmpty()) {
                throw new IOException("empty file: a CSV needs a header row (" + String.join(",", required) + ", ...)");
            }
            List<String> missing = new ArrayList<>(required);
            missing.removeAll(header);
            if (!missing.isEmpty()) {
                throw new IOException("the header row lacks required column(s) " + missing + " of job "
                                      + (job != null ? job : renderer.jobs().defaultJobName()) + "; it has " + header);
            }
            if (new HashSet<>(header).size() != header.size()) {
                throw new IOException("the header row names a column twice: " + header);
            }
            this.rows = parser.iterator();
        }

        @Override
        public boolean hasNext() {
            return rows.hasNext();
        }

        @Override
        public Record next() {
            CSVRecord row = rows.next();
            long line = nextLine;
            nextLine = parser.getCurrentLineNumber() + 1;
            guard.recordDone();
            String raw = String.join(",", row.values());
            if (row.size() != header.size()) {
                return new Record(position++, line, null,
                        "row has " + row.size() + " field(s), the header has " + header.size(), raw);
            }
            ObjectNode task = Tasks.JSON.createObjectNode();
            for (int i = 0; i < header.size(); i++) {
                task.put(header.get(i), row.get(i));
            }
            return new Record(position++, line, task, null, raw);
        }

        @Override
        public void close() throws IOException {
            parser.close();
        }
    }

    /**
     * One task per line. A line longer than {@code maxChars} is not kept: it is read to its newline (or the end of the
     * file) and discarded, and becomes a rejected record quoting its start, so a line without a newline cannot fill the
     * heap and the lines after an over-long one are read as usual.
     */
    private static final class JsonLinesRecords implements Records {
        private static final int QUOTED = 200;
        private final Reader in;
        private final int maxChars;
        private final char[] buf = new char[1 << 16];
        private int pos;
        private int end;
        private long lineNo;
        private Record pending;

        JsonLinesRecords(Reader in, int maxChars) {
            this.in = in;
            this.maxChars = maxChars;
        }

        @Override
        public boolean hasNext() {
            try {
                while (pending == null) {
                    StringBuilder line = new StringBuilder();
                    long length = 0;
                    char last = 0;
                    boolean eof = true;
                    while (fill()) {
                        eof = false;
                        int nl = pos;
                        while (nl < end && buf[nl] != '\n') {
                            nl++;
                        }
                        int take = nl - pos;
                        if (take > 0) {
                            last = buf[nl - 1];
                        }
                        if (length + take <= maxChars + 1L) { // + 1: a CR before the newline is not part of the line
                            line.append(buf, pos, take);
                        } else if (line.length() > QUOTED) { // over-long: keep only its start, to quote it
                            line.setLength(QUOTED);
                        } else if (line.length() < QUOTED) {
                            line.append(buf, pos, (int) Math.min(take, QUOTED - line.length()));
                        }
                        length += take;
                        pos = nl;
                        if (nl < end) { // the newline
                            pos++;
                            break;
                        }
                    }
                    if (eof) {
                        return false;
                    }
                    lineNo++;
                    if (last == '\r') {
                        length--;
                        if (length < line.length()) {
                            line.setLength((int) length);
                        }
                    }
                    if (length > maxChars) {
                        pending = new Record(lineNo - 1, lineNo, null, "line of " + length + " characters is longer than "
                                + "llmbatch.ingest.max-record-chars (" + maxChars + ")", line + "...");
                    } else if (!line.toString().isBlank()) {
                        String text = line.toString();
                        try {
                            pending = new Record(lineNo - 1, lineNo, Tasks.JSON.readTree(text), null, text);
                        } catch (IOException e) {
                            pending = new Record(lineNo - 1, lineNo, null, Tasks.describe(e).replaceFirst(" at line 1,", " at"), text);
                        }
                    }
                }
                return true;
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }

        /** Whether characters are left (refilling the buffer when it is used up). */
        private boolean fill() throws IOException {
            if (pos < end) {
                return true;
            }
            end = in.read(buf, 0, buf.length);
            pos = 0;
            if (end <= 0) {
                end = 0;
                return false;
            }
            return true;
        }

        @Override
        public Record next() {
            if (!hasNext()) {
                throw new NoSuchElementException();
            }
            Record r = pending;
            pending = null;
            return r;
        }

        @Override
        public void close() throws IOException {
            in.close();
        }
    }

    private final class JsonArrayRecords implements Records {
        private final JsonParser parser;
        private long elementLine = 1;
        private long position;
        private Boolean more;

        private final RecordGuard guard;

        JsonArrayRecords(Reader reader) throws IOException {
            this.guard = new RecordGuard(reader, () -> "the array element starting at line " + elementLine + " is longer than "
                    + "llmbatch.ingest.max-record-chars (" + maxRecordChars + " characters); an element cannot be skipped without "
                    + "reading it, so the file stops here: split such tasks out, or use .jsonl, where an over-long line is only rejected");
            this.parser = Tasks.JSON.createParser(guard);
            if (parser.nextToken() != JsonToken.START_ARRAY) {
                throw new IOException("a .json file must hold one JSON array of tasks");
            }
        }

        @Override
        public boolean hasNext() {
            if (more == null) {
                try {
                    JsonToken t = parser.nextToken();
                    if (t == null) {
                        throw new IOException("the JSON array is not closed (unexpected end of file)");
                    }
                    more = t != JsonToken.END_ARRAY;
                    if (!more && parser.nextToken() != null) {
                        throw new IOException("unexpected content after the JSON array at line "
                                              + parser.currentTokenLocation().getLineNr());
                    }
                } catch (IOException e) {
                    throw new UncheckedIOException(e instanceof com.fasterxml.jackson.core.JsonProcessingException
                            ? new IOException(Tasks.describe(e), e) : e);
                }
            }
            return more;
        }

        @Override
        public Record next() {
            if (!hasNext()) {
                throw new NoSuchElementException();
            }
            more = null;
            long line = parser.currentTokenLocation().getLineNr();
            elementLine = line;
            try {
                JsonNode node = Tasks.STREAM.readTree(parser);
                guard.recordDone();
                return new Record(position++, line, node, null, node.toString());
            } catch (IOException e) {
                throw new UncheckedIOException(new IOException(Tasks.describe(e), e));
            }
        }

        @Override
        public void close() throws IOException {
            parser.close();
        }
    }

    /**
     * Stops a parser that keeps reading one record (a CSV quote never closed, a huge .json element): it counts the
     * characters handed out since the last {@link #recordDone()} and fails the read once they exceed the record limit
     * plus the parser's own read-ahead, so a record within the limit always passes and none can take the heap.
     */
    private final class RecordGuard extends java.io.FilterReader {
        /** More than the CSV and JSON parsers read ahead of the record they return (8 KiB buffers). */
        private static final int READ_AHEAD = 1 << 15;
        private final java.util.function.Supplier<String> tooLong;
        private long count;
        private long recordStart;

        RecordGuard(Reader in, java.util.function.Supplier<String> tooLong) {
            super(in);
            this.tooLong = tooLong;
        }

        void recordDone() {
            recordStart = count;
        }

        @Override
        public int read() throws IOException {
            char[] one = new char[1];
            return read(one, 0, 1) < 0 ? -1 : one[0];
        }

        @Override
        public int read(char[] cbuf, int off, int len) throws IOException {
            if (count - recordStart > (long) maxRecordChars + READ_AHEAD) {
                throw new IOException(tooLong.get());
            }
            int n = super.read(cbuf, off, len);
            if (n > 0) {
                count += n;
            }
            return n;
        }
    }

    // ---- records to messages ------------------------------------------------------------------------------

    /**
     * Where a file stands, across resumes: records read, rejects written, and which positions are done (confirmed
     * by the broker, skipped or rejected), kept as a contiguous prefix plus the few done positions beyond it. The
     * saved position holds the prefix only, with its counts and its rejects: a reject read ahead of a record not yet
     * confirmed is written to the rejects file once that record is, or else (a stop, a crash) read and rejected again
     * after the resume, never twice.
     */
    private static final class Progress {
        final Path rejectsPath;
        final InboxPosition position;
        /** Positions done between two saves. */
        final int saveEvery;
        BufferedWriter rejects;
        /** Bytes of the rejects file that belong to the records done. */
        long rejectsBytes;
        /** A resumed file appends to its rejects file (cut back to the saved length) instead of replacing it. */
        boolean resumed;
        boolean stopped;
        long read;
        /** Counts of this run so far, beyond the prefix too (for the logs and the file's report). */
        long rejected;
        long published;
        long skipped;
        /** Counts of the positions up to {@link #doneThrough}: what the saved position holds. */
        long prefixRejected;
        long prefixPublished;
        long prefixSkipped;
        /** Every position up to this one is done. */
        long doneThrough = -1;
        long savedThrough = -1;
        /** Done positions beyond the prefix: {@link #CONFIRMED}, {@link #SKIPPED}, {@link #BLANK}, or a reject's JSON line. */
        final TreeMap<Long, String> doneBeyond = new TreeMap<>();
        static final String CONFIRMED = "confirmed";
        static final String SKIPPED = "skipped";
        static final String BLANK = "blank";

        Progress(Path rejectsPath, InboxPosition position, int saveEvery) {
            this.rejectsPath = rejectsPath;
            this.position = position;
            this.saveEvery = saveEvery;
        }

        void resume(InboxPosition.Saved saved) {
            doneThrough = saved.doneThrough();
            savedThrough = doneThrough;
            read = doneThrough + 1;
            published = prefixPublished = saved.published();
            rejected = prefixRejected = saved.rejected();
            skipped = prefixSkipped = saved.skipped();
            rejectsBytes = saved.rejectsBytes();
            resumed = true;
            try (var channel = java.nio.channels.FileChannel.open(rejectsPath, StandardOpenOption.WRITE)) {
                if (channel.size() > rejectsBytes) {
                    channel.truncate(rejectsBytes); // rejects of records after the saved position are written again
                }
            } catch (java.nio.file.NoSuchFileException e) {
                rejectsBytes = 0;
            } catch (IOException e) {
                throw new UncheckedIOException("cannot resume the rejects file " + rejectsPath, e);
            }
        }

        /** Saves how far the file got (its rejects written out first, so the saved length is on disk). */
        void save() {
            try {
                if (rejects != null) {
                    rejects.flush();
                }
            } catch (IOException e) {
                throw new UncheckedIOException("cannot write rejects file " + rejectsPath, e);
            }
            position.save(new InboxPosition.Saved(doneThrough, prefixPublished, prefixRejected, prefixSkipped, rejectsBytes));
            savedThrough = doneThrough;
        }

        boolean isDone(long position) {
            return position <= doneThrough || doneBeyond.containsKey(position);
        }

        void confirmed(long position) {
            published++;
            io.llmbatch.ops.Meters.ingested("file", 1);
            done(position, CONFIRMED);
        }

        /** A task not sent: its result is stored from the same request already. */
        void skipped(long position) {
            skipped++;
            done(position, SKIPPED);
        }

        /** A position that holds no record (a blank line): done, counted nowhere. */
        void blank(long position) {
            if (!isDone(position)) {
                done(position, BLANK);
            }
        }

        /** A record that is no task: its line goes to the rejects file once the records before it are done. */
        void reject(Record r) {
            Map<String, Object> line = new LinkedHashMap<>();
            line.put("line", r.line());
            line.put("reason", r.problem());
            line.put("record", r.raw());
            try {
                rejected++;
                done(r.position(), Tasks.JSON.writeValueAsString(line) + "\n");
            } catch (IOException e) {
                throw new UncheckedIOException("cannot write rejects file " + rejectsPath, e);
            }
        }

        private void done(long position, String what) {
            doneBeyond.put(position, what);
            String next;
            while ((next = doneBeyond.remove(doneThrough + 1)) != null) {
                doneThrough++;
                if (next.equals(CONFIRMED)) {
                    prefixPublished++;
                } else if (next.equals(SKIPPED)) {
                    prefixSkipped++;
                } else if (!next.equals(BLANK)) {
                    writeReject(next);
                }
            }
            if (doneThrough - savedThrough >= saveEvery) {
                save();
            }
        }

        private void writeReject(String json) {
            try {
                if (rejects == null) {
                    Files.createDirectories(rejectsPath.getParent());
                    rejects = Files.newBufferedWriter(rejectsPath, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                            resumed ? StandardOpenOption.APPEND : StandardOpenOption.TRUNCATE_EXISTING);
                }
                rejects.write(json);
                rejectsBytes += json.getBytes(java.nio.charset.StandardCharsets.UTF_8).length;
                prefixRejected++;
            } catch (IOException e) {
                throw new UncheckedIOException("cannot write rejects file " + rejectsPath, e);
            }
        }

        long published() {
            return published;
        }

        void closeRejects() {
            if (rejects != null) {
                try {
                    rejects.close();
                } catch (IOException e) {
                    LOG.warn("Cannot close {}: {}", rejectsPath, e.getMessage());
                }
            }
        }
    }

    /**
     * Turns records into messages, skipping what a previous attempt already confirmed, writing rejects. Records are
     * read, checked and rendered {@link #ADMIT_BATCH} at a time, and each block is entered in the jobs' ledgers at
     * once; a task whose result is stored from the same request is marked done without being sent.
     */
    private final class TaskMessages implements Iterator<OutboundMessage> {
        private final Records records;
        private final String name;
        private final String job;
        private final boolean force;
        private final Progress progress;
        private final java.util.function.BooleanSupplier stopping;
        private final java.util.ArrayDeque<OutboundMessage> ready = new java.util.ArrayDeque<>();
        /** The position after the last record read. */
        private long nextPosition;
        /** The file failed to read after the records of the block: thrown once they are published. */
        private RuntimeException failure;

        TaskMessages(Records records, String name, String job, boolean force, Progress progress,
                     java.util.function.BooleanSupplier stopping) {
            this.records = records;
            this.name = name;
            this.job = job;
            this.force = force;
            this.progress = progress;
            this.stopping = stopping;
        }

        /** Ends early when a stop is requested: the publisher then settles what it sent, and the file stops there. */
        @Override
        public boolean hasNext() {
            while (ready.isEmpty() && failure == null && records.hasNext()) {
                List<TaskRenderer.Prepared> block = new ArrayList<>(ADMIT_BATCH);
                while (block.size() < ADMIT_BATCH) {
                    if (stopping.getAsBoolean()) {
                        progress.stopped = true;
                        break;
                    }
                    Record r;
                    try {
                        if (!records.hasNext()) {
                            break;
                        }
                        r = records.next();
                    } catch (RuntimeException e) {
                        failure = e; // the records before it go first, so the error report counts them
                        break;
                    }
                    if (r.position() >= progress.read) {
                        progress.read = r.position() + 1;
                        if (progress.read % PROGRESS_EVERY == 0) {
                            LOG.info("Inbox {}: {} records read, {} skipped, {} rejected so far", name, progress.read,
                                    progress.skipped, progress.rejected);
                        }
                    }
                    for (long blank = nextPosition; blank < r.position(); blank++) {
                        progress.blank(blank); // a .jsonl file's blank line: a position with no record
                    }
                    nextPosition = Math.max(nextPosition, r.position() + 1);
                    if (progress.isDone(r.position())) {
                        continue; // confirmed, skipped or rejected before a resume
                    }
                    TaskRenderer.Prepared p = r.problem() != null ? new TaskRenderer.Prepared(null, null, r.problem())
                            : renderer.prepare(r.task(), job, "file:" + name + ":" + r.line(), r.position(), false);
                    if (p.problem() != null) {
                        progress.reject(new Record(r.position(), r.line(), null, p.problem(), r.raw()));
                    } else {
                        block.add(p);
                    }
                }
                java.util.Set<Long> sent = new java.util.HashSet<>();
                for (TaskRenderer.Prepared p : renderer.admit(block, force)) {
                    sent.add(p.message().position());
                    ready.add(io.llmbatch.jobs.TaskEnvelope.wrap(p.message()));
                }
                for (TaskRenderer.Prepared p : block) {
                    if (!sent.contains(p.message().position())) {
                        progress.skipped(p.message().position());
                    }
                }
                if (progress.stopped) {
                    break;
                }
            }
            if (ready.isEmpty() && failure != null) {
                throw failure;
            }
            return !ready.isEmpty();
        }

        @Override
        public OutboundMessage next() {
            if (!hasNext()) {
                throw new NoSuchElementException();
            }
            return ready.poll();
        }
    }

    /** The line a message came from, from its source ({@code file:<name>:<line>}; in its body once it is wrapped). */
    private static long lineOf(OutboundMessage m) {
        String source = String.valueOf(io.llmbatch.jobs.TaskEnvelope.source(m));
        return Long.parseLong(source.substring(source.lastIndexOf(':') + 1));
    }

    private static String rootMessage(Throwable e) {
        Throwable t = e;
        while (t.getCause() != null && (t instanceof UncheckedIOException || t.getMessage() == null)) {
            t = t.getCause();
        }
        String msg = t.getMessage();
        if (t instanceof java.nio.charset.CharacterCodingException) {
            msg = "the file is not valid text in the configured charset (llmbatch.ingest.charset): " + t;
        }
        return msg;
    }
}
