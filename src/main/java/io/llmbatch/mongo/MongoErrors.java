package io.llmbatch.mongo;

import java.util.Map;

import com.mongodb.MongoCommandException;
import com.mongodb.MongoException;
import com.mongodb.MongoSecurityException;
import com.mongodb.MongoServerException;
import com.mongodb.bulk.WriteConcernError;

/**
 * Tells a MongoDB refusal that retrying will not change (wrong credentials, no permission, an index that conflicts
 * or cannot be built, a write concern the deployment cannot satisfy) from an outage, which ends by itself. A
 * refusal is reported (readiness DOWN, one ERROR line) instead of being retried in silence.
 */
public final class MongoErrors {

    /** Server error codes that mean "not until someone changes something" (src/mongo/base/error_codes.yml). */
    public static final Map<Integer, String> PERMANENT = Map.ofEntries(
            Map.entry(2, "BadValue"),
            Map.entry(9, "FailedToParse"),
            Map.entry(13, "Unauthorized"),
            Map.entry(18, "AuthenticationFailed"),
            Map.entry(67, "CannotCreateIndex"),
            Map.entry(79, "UnknownReplWriteConcern"),
            Map.entry(85, "IndexOptionsConflict"),
            Map.entry(86, "IndexKeySpecsConflict"),
            Map.entry(100, "UnsatisfiableWriteConcern"),
            Map.entry(11000, "DuplicateKey"));

    private MongoErrors() {
    }

    /** The reason when {@code e} is a refusal retrying will not change; null for an outage. */
    public static String permanent(MongoException e) {
        if (e instanceof MongoSecurityException) {
            return "MongoDB refused the credentials: " + e.getMessage();
        }
        if (e instanceof MongoServerException s && PERMANENT.containsKey(s.getCode())) {
            String name = e instanceof MongoCommandException c && !c.getErrorCodeName().isEmpty() ? c.getErrorCodeName()
                    : PERMANENT.get(s.getCode());
            return name + " (" + s.getCode() + "): " + message(e);
        }
        return null;
    }

    /** Whether a write concern error can only end when the deployment or the setting changes. */
    public static boolean permanent(WriteConcernError error) {
        return error.getCode() != 64 && PERMANENT.containsKey(error.getCode()); // 64 WriteConcernFailed: wtimeout, may pass
    }

    public static String describe(WriteConcernError error) {
        return (error.getCodeName().isEmpty() ? "code" : error.getCodeName()) + " (" + error.getCode() + "): " + error.getMessage();
    }

    private static String message(MongoException e) {
        return e instanceof MongoCommandException c ? c.getErrorMessage() : e.getMessage();
    }
}
