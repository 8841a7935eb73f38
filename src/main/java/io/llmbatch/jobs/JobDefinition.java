package io.llmbatch.jobs;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.Iterator;
import java.util.List;
import java.util.Set;
import java.util.regex.Pattern;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;

/**
 * One job, as {@code jobs/<name>.yaml} describes it: the prompt template (a file with {@code {field}} placeholders), an
 * optional system prompt, the model and sampling settings, the task fields it requires, the fields that key a result,
 * where results go (a MongoDB collection) and how answers are checked. The seed's job is {@code jobs/company_intro.yaml}.
 *
 * @param name           the file's name without {@code .yaml}; tasks name it with a {@code job} field
 * @param description    what the job makes, for people
 * @param prompt         the prompt template
 * @param system         the system prompt (text or file), or none
 * @param model          the model: written to results as {@code model_name} (part of the key), sent to the LLM servers
 *                       (unless an endpoint names it its own way); null: the worker's {@code llmbatch.llm.model}
 * @param params         fields merged into every LLM request (max_tokens, temperature, top_p, stop, response_format, ...)
 * @param requiredFields task fields that must be there, non-blank
 * @param keyFields      task fields that key a result: the same key, model and job overwrite one document
 * @param companyField   a task field copied into the result as {@code company} (the seed's result shape), or null
 * @param outputField    the result field holding the LLM's answer ({@code intro} for the seed)
 * @param collection     the MongoDB collection results go to (in {@code llmbatch.mongodb.database})
 * @param checks         the output checks ({@code checks:}), or {@link JobChecks#NONE}
 * @param force          true: every task is sent even when its result is stored from the same request (a job whose
 *                       answers should differ each time, e.g. sampled at a high temperature); default false
 * @param file           where it was read from
 */
public record JobDefinition(String name, String description, PromptTemplate prompt, SystemPrompt system, String model,
                            ObjectNode params, List<String> requiredFields, List<String> keyFields, String companyField,
                            String outputField, String collection, JobChecks checks, boolean force, Path file) {

    static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());
    static final ObjectMapper JSON = new ObjectMapper();
    private static final ThreadLocal<MessageDigest> SHA256 = digest("SHA-256");
    private static final Pattern NAME = Pattern.compile("[a-z0-9][a-z0-9_-]{0,62}");
    private static final Set<String> KEYS = Set.of("name", "description", "prompt", "system", "system_file", "model", "params",
            "required_fields", "key_fields", "company_field", "output_field", "collection", "checks", "force");
    /** MongoDB collection names llm-batch keeps for itself. */
    static final Set<String> RESERVED_COLLECTIONS = Set.of("llmbatch_tasks", "llmbatch_jobs", "fs.files", "fs.chunks",
            "llmbatch_batches", "openai_batch_results"); // the last two: the OpenAI Batch API's (llmbatch.batches.*)

    /** Whether {@code name} can be a job's name (and so a file name, a queue-name suffix and part of a URL path). */
    public static boolean validName(String name) {
        return name != null && NAME.matcher(name).matches();
    }

    /** Reads and checks a job file; every mistake is reported with the file and the key. */
    public static JobDefinition read(Path file) throws IOException {
        String fileName = file.getFileName().toString();
        String name = fileName.replaceFirst("\\.ya?ml$", "");
        if (!validName(name)) {
            throw new IllegalArgumentException(file + ": a job's name (the file name) is lower-case letters, digits, '_' and '-'");
        }
        JsonNode root = YAML.readTree(Files.readString(file, StandardCharsets.UTF_8));
        if (root == null || !root.isObject()) {
            throw new IllegalArgumentException(file + ": a job file is a YAML mapping (prompt:, model:, ...)");
        }
        for (Iterator<String> it = root.fieldNames(); it.hasNext(); ) {
            String key = it.next();
            if (!KEYS.contains(key)) {
                throw new IllegalArgumentException(file + ": unknown key '" + key + "' (known: " + String.join(", ", KEYS.stream().sorted().toList()) + ")");
            }
        }
        if (root.hasNonNull("name") && !name.equals(root.get("name").asText())) {
            throw new IllegalArgumentException(file + ": name '" + root.get("name").asText() + "' differs from the file name '" + name + "'");
        }
        String promptFile = text(root, "prompt", file);
        if (promptFile == null) {
            throw new IllegalArgumentException(file + ": 'prompt' is required: the prompt template file, e.g. prompts/" + name + ".txt");
        }
        Path base = file.toAbsolutePath().getParent().getParent(); // the working directory that holds jobs/ and prompts/
        PromptTemplate prompt = new PromptTemplate(resolve(base, promptFile), "prompt of " + file);
        List<String> placeholders;
        try {
            placeholders = prompt.fields();
        } catch (PromptTemplate.PromptUnavailableException e) {
            throw new IllegalArgumentException(file + ": " + e.getMessage());
        }
        String systemFile = text(root, "system_file", file);
        SystemPrompt system = SystemPrompt.of(text(root, "system", file), systemFile == null ? null : resolve(base, systemFile).toString());
        JsonNode params = root.get("params");
        if (params != null && !params.isNull() && !params.isObject()) {
            throw new IllegalArgumentException(file + ": 'params' is a mapping of request fields (max_tokens: 256, temperature: 0.7, ...)");
        }
        if (params != null && params.has("messages") || params != null && params.has("prompt")) {
            throw new IllegalArgumentException(file + ": 'params' cannot set messages or prompt: they come from the prompt template");
        }
        List<String> required = list(root, "required_fields", file, placeholders);
        for (String p : placeholders) {
            if (!required.contains(p)) {
                throw new IllegalArgumentException(file + ": the prompt uses {" + p + "}, which required_fields does not list");
            }
        }
        List<String> key = list(root, "key_fields", file, required);
        if (key.isEmpty()) {
            throw new IllegalArgumentException(file + ": key_fields is empty: name the task fields that identify a result");
        }
        String company = text(root, "company_field", file);
        String output = text(root, "output_field", file);
        String collection = text(root, "collection", file);
        collection = collection == null ? name : collection;
        if (!collection.matches("[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}") || RESERVED_COLLECTIONS.contains(collection)
            || collection.startsWith("system.")) {
            throw new IllegalArgumentException(file + ": collection '" + collection + "' is not a collection name results can go to");
        }
        JobChecks checks = JobChecks.read(root.get("checks"), file, base);
        JsonNode force = root.get("force");
        if (force != null && !force.isNull() && !force.isBoolean()) {
            throw new IllegalArgumentException(file + ": 'force' is true or false");
        }
        return new JobDefinition(name, text(root, "description", file), prompt, system, text(root, "model", file),
                params == null || params.isNull() ? JSON.createObjectNode() : (ObjectNode) params, List.copyOf(required),
                List.copyOf(key), company, output == null ? "output" : output, collection,
                checks,
                force != null && force.asBoolean(), file);
    }

    /**
     * The version of what makes this job's answers: the prompt template and the system prompt as they are now (12 hex
     * digits of their SHA-256). Stored with each result; a changed prompt makes new versions, not new documents.
     */
    public String promptVersion() {
        return prompt.version(system.text());
    }

    /** Lower-case hex SHA-256 of the UTF-8 bytes. */
    public static String sha256(String text) {
        return hex(SHA256, text);
    }

    /** Lower-case hex SHA-256 of the bytes. */
    public static String sha256(byte[] bytes) {
        return hex(SHA256, bytes);
    }

    /** One digest per thread: hashed for every task an ingest takes, and {@code getInstance} looks the provider up each time. */
    static ThreadLocal<MessageDigest> digest(String algorithm) {
        return ThreadLocal.withInitial(() -> {
            try {
                return MessageDigest.getInstance(algorithm);
            } catch (NoSuchAlgorithmException e) {
                throw new IllegalStateException(e);
            }
        });
    }

    /** Lower-case hex digest of the UTF-8 bytes ({@code digest} resets the digest for the next use). */
    static String hex(ThreadLocal<MessageDigest> digest, String text) {
        return hex(digest, text.getBytes(StandardCharsets.UTF_8));
    }

    private static String hex(ThreadLocal<MessageDigest> digest, byte[] bytes) {
        return HexFormat.of().formatHex(digest.get().digest(bytes));
    }

    private static Path resolve(Path base, String file) {
        Path p = Path.of(file);
        return p.isAbsolute() ? p : base.resolve(p);
    }

    private static String text(JsonNode root, String key, Path file) {
        JsonNode v = root.get(key);
        if (v == null || v.isNull()) {
            return null;
        }
        if (!v.isValueNode() || v.asText().isBlank()) {
            throw new IllegalArgumentException(file + ": '" + key + "' must be a non-empty text");
        }
        return v.asText().strip();
    }

    private static List<String> list(JsonNode root, String key, Path file, List<String> otherwise) {
        JsonNode v = root.get(key);
        if (v == null || v.isNull()) {
            return otherwise;
        }
        if (!v.isArray()) {
            throw new IllegalArgumentException(file + ": '" + key + "' is a list of task field names");
        }
        List<String> out = new ArrayList<>();
        for (JsonNode f : v) {
            if (!f.isTextual() || f.asText().isBlank()) {
                throw new IllegalArgumentException(file + ": '" + key + "' is a list of task field names");
            }
            out.add(f.asText());
        }
        return out;
    }
}
