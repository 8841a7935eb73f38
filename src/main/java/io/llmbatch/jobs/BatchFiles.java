package io.llmbatch.jobs;

import java.io.InputStream;
import java.io.OutputStream;
import java.security.SecureRandom;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.Map;

import com.mongodb.client.MongoDatabase;
import com.mongodb.client.gridfs.GridFSBucket;
import com.mongodb.client.gridfs.GridFSBuckets;
import com.mongodb.client.gridfs.GridFSUploadStream;
import com.mongodb.client.gridfs.model.GridFSFile;
import com.mongodb.client.gridfs.model.GridFSUploadOptions;
import com.mongodb.client.model.Filters;
import org.bson.BsonString;
import org.bson.Document;

/**
 * The files of the OpenAI Files API ({@code /v1/files}): batch input files uploaded by clients and the output and error
 * files of batches, in MongoDB's GridFS (bucket {@code llmbatch.batches.files-bucket}, {@code fs} by default: its
 * {@code fs.files} and {@code fs.chunks} are names no job may take), so every ingest node serves every file and a file
 * survives any restart. A file's id is its GridFS {@code _id}, {@code file-} and 24 hex digits.
 */
public final class BatchFiles {

    private static final SecureRandom RANDOM = new SecureRandom();
    private final GridFSBucket bucket;

    public BatchFiles(MongoDatabase database, String bucketName) {
        this.bucket = GridFSBuckets.create(database, bucketName);
    }

    /** A new id: {@code prefix} and 24 random hex digits ({@code file-...}, {@code batch_...}). */
    public static String newId(String prefix) {
        byte[] b = new byte[12];
        RANDOM.nextBytes(b);
        return prefix + HexFormat.of().formatHex(b);
    }

    /** Stores a whole file; returns its File object. */
    public Map<String, Object> save(String filename, String purpose, byte[] content) {
        String id = newId("file-");
        try (GridFSUploadStream up = upload(id, filename, purpose)) {
            up.write(content);
        }
        return fileObject(find(id));
    }

    /** A file written as it is made (a batch's output): close the stream to store it; {@link #fileObject} after. */
    public GridFSUploadStream upload(String id, String filename, String purpose) {
        return bucket.openUploadStream(new BsonString(id), filename,
                new GridFSUploadOptions().metadata(new Document("purpose", purpose)));
    }

    /** The file {@code id}, or null. */
    public GridFSFile find(String id) {
        return bucket.find(Filters.eq("_id", id)).first();
    }

    /** The content of file {@code id} (which exists), read as it is sent. */
    public InputStream open(String id) {
        return bucket.openDownloadStream(new BsonString(id));
    }

    /** Copies a file's content to {@code out}. */
    public void copy(String id, OutputStream out) {
        bucket.downloadToStream(new BsonString(id), out);
    }

    /** The File object of the OpenAI API: id, object, bytes, created_at, filename, purpose (and the deprecated status). */
    public static Map<String, Object> fileObject(GridFSFile f) {
        Map<String, Object> o = new LinkedHashMap<>();
        o.put("id", f.getId().asString().getValue());
        o.put("object", "file");
        o.put("bytes", f.getLength());
        o.put("created_at", f.getUploadDate().getTime() / 1000);
        o.put("filename", f.getFilename());
        o.put("purpose", f.getMetadata() == null ? null : f.getMetadata().getString("purpose"));
        o.put("status", "processed");
        o.put("status_details", null);
        o.put("expires_at", null);
        return o;
    }
}
