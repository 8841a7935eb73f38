package io.llmbatch.ingest;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * How far an inbox file got, saved as {@code <inbox>/.progress/[<job>/]<name>.json} so that a file left unfinished
 * (a stop, a {@code kill -9}) resumes after its last confirmed record instead of publishing everything again. The
 * position names the file it belongs to by size, modification time and a hash of its first 64 KiB: a different file
 * dropped under the same name starts afresh.
 */
final class InboxPosition {

    private static final Logger LOG = LoggerFactory.getLogger(InboxPosition.class);
    private static final int HEAD_BYTES = 64 * 1024;

    /**
     * A saved position: every record up to {@code doneThrough} (0-based) is confirmed or rejected; the counts so far (skipped: stored from the same request already);
     * the length of the rejects file that goes with it (lines after it belong to records done again).
     */
    record Saved(long doneThrough, long published, long rejected, long skipped, long rejectsBytes) {
    }

    private final Path path;
    private final String name;
    private final Map<String, Object> identity;

    private InboxPosition(Path path, String name, Map<String, Object> identity) {
        this.path = path;
        this.name = name;
        this.identity = identity;
    }

    /** The position of {@code file}, with the file's identity as it is now. */
    /** @param job the job whose directory holds the file, or null for a file in the inbox itself */
    static InboxPosition of(Path file, String job) throws IOException {
        Map<String, Object> identity = new LinkedHashMap<>();
        identity.put("file", file.getFileName().toString());
        identity.put("size", Files.size(file));
        identity.put("modified", Files.getLastModifiedTime(file).toMillis());
        identity.put("head_sha256", headHash(file));
        return new InboxPosition(pathFor(file, job), file.getFileName().toString(), identity);
    }

    /** Where the position of {@code file} is kept. */
    static Path pathFor(Path file, String job) {
        if (job != null) { // inbox/<job>/<file>: inbox/.progress/<job>/<file>.json
            Path inbox = file.toAbsolutePath().getParent().getParent();
            return inbox.resolve(".progress").resolve(job).resolve(file.getFileName() + ".json");
        }
        return file.resolveSibling(".progress").resolve(file.getFileName() + ".json");
    }

    /** The saved position of this very file, or {@code null}: none, unreadable, or another file's (then discarded). */
    Saved load() {
        if (!Files.exists(path)) {
            return null;
        }
        try {
            JsonNode saved = Tasks.JSON.readTree(path.toFile());
            for (var field : identity.entrySet()) {
                if (!String.valueOf(field.getValue()).equals(saved.path(field.getKey()).asText())) {
                    LOG.warn("Inbox {}: the saved position {} belongs to another file ({} was {}, is {}): starting afresh",
                            name, path, field.getKey(), saved.path(field.getKey()).asText(), field.getValue());
                    delete();
                    return null;
                }
            }
            return new Saved(saved.get("done_through").asLong(), saved.get("published").asLong(), saved.get("rejected").asLong(),
                    saved.path("skipped").asLong(0), saved.get("rejects_bytes").asLong());
        } catch (IOException | RuntimeException e) {
            LOG.warn("Inbox {}: cannot read the saved position {} ({}): starting afresh", name, path, e.getMessage());
            delete();
            return null;
        }
    }

    /** Saves the position: written beside, then moved over the old one, so a crash leaves one or the other whole. */
    void save(Saved saved) {
        Map<String, Object> json = new LinkedHashMap<>(identity);
        json.put("done_through", saved.doneThrough());
        json.put("published", saved.published());
        json.put("rejected", saved.rejected());
        json.put("skipped", saved.skipped());
        json.put("rejects_bytes", saved.rejectsBytes());
        try {
            Files.createDirectories(path.getParent());
            Path tmp = path.resolveSibling(path.getFileName() + ".tmp");
            Files.write(tmp, Tasks.JSON.writeValueAsBytes(json));
            try {
                Files.move(tmp, path, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, path, StandardCopyOption.REPLACE_EXISTING);
            }
        } catch (IOException e) {
            // not saving costs duplicates after a crash, never a loss: keep publishing
            LOG.warn("Inbox {}: cannot save its position to {}: {}", name, path, e.getMessage());
        }
    }

    void delete() {
        try {
            Files.deleteIfExists(path);
        } catch (IOException e) {
            LOG.warn("Inbox {}: cannot delete its saved position {}: {}", name, path, e.getMessage());
        }
    }

    private static String headHash(Path file) throws IOException {
        try (InputStream in = Files.newInputStream(file)) {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(in.readNBytes(HEAD_BYTES)));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
