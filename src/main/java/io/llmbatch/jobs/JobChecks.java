package io.llmbatch.jobs;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.networknt.schema.Schema;
import com.networknt.schema.SchemaRegistry;
import com.networknt.schema.SpecificationVersion;

/**
 * The output checks of a job, its {@code checks:} mapping: an answer's length in characters ({@code min_chars},
 * {@code max_chars}), that it is JSON ({@code json: true}), optionally valid against a JSON Schema ({@code json_schema:
 * <file>}), that it matches a regular expression ({@code pattern}), and finish reasons that make an answer unusable
 * ({@code refuse_finish_reasons}, default {@code [length]}: cut at max_tokens). An answer that fails is asked again,
 * with the failure said in a repair prompt ({@code repair_prompt} text or {@code repair_prompt_file}, placeholders
 * {@code {failure}} and {@code {answer}}), up to {@code max_repairs} times (default 2).
 *
 * <p>Read and checked with the job file at the ingest node; a task carries them to its worker in one small header,
 * {@link Jobs#CHECKS} ({@link #header()}), which the worker reads back with {@link #fromHeader(String)}: GPU machines
 * have no job files.
 */
public final class JobChecks {

    /** The check names, as written in the file and in the dead-letter reason {@code output-check: <check>}. */
    public static final String MIN_CHARS = "min_chars";
    public static final String MAX_CHARS = "max_chars";
    public static final String JSON_CHECK = "json";
    public static final String JSON_SCHEMA = "json_schema";
    public static final String PATTERN = "pattern";
    public static final String FINISH_REASON = "finish_reason";

    public static final int DEFAULT_MAX_REPAIRS = 2;
    public static final List<String> DEFAULT_REFUSED_FINISH_REASONS = List.of("length");
    /** Used when the job sets no repair prompt: the failure, then the request to answer again. */
    public static final String DEFAULT_REPAIR_PROMPT = "Your previous answer was not accepted: {failure}. Answer again, "
                                                       + "meeting every requirement, and give only the answer.";
    /** How {@code json_schema} travels when the request's response_format already carries the same schema. */
    static final String SCHEMA_IN_REQUEST = "response_format";

    private static final Set<String> KEYS = Set.of(MIN_CHARS, MAX_CHARS, JSON_CHECK, JSON_SCHEMA, PATTERN, "refuse_finish_reasons",
            "max_repairs", "repair_prompt", "repair_prompt_file");
    private static final Set<String> REPAIR_PLACEHOLDERS = Set.of("failure", "answer");
    private static final Pattern PLACEHOLDER = Pattern.compile("\\{([A-Za-z_][A-Za-z0-9_]*)}");
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final ObjectMapper STRICT = new ObjectMapper().enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
    private static final SchemaRegistry SCHEMAS = SchemaRegistry.withDefaultDialect(SpecificationVersion.DRAFT_2020_12);
    /** Checks read back from headers, by header text (a worker sees the same few jobs' headers again and again). */
    private static final Map<String, JobChecks> FROM_HEADERS = new ConcurrentHashMap<>();

    /** A job without a {@code checks:} mapping: every answer is taken as it comes. */
    public static final JobChecks NONE = new JobChecks(null, null, false, null, null, List.of(), 0, null, null);

    private final Integer minChars;
    private final Integer maxChars;
    private final boolean json;
    private final JsonNode schemaNode;
    private final Schema schema;
    private final Pattern pattern;
    private final List<String> refusedFinishReasons;
    private final int maxRepairs;
    private final String repairText;
    private final PromptTemplate repairFile;
    private volatile String[] header = { null, null };

    private JobChecks(Integer minChars, Integer maxChars, boolean json, JsonNode schemaNode, Pattern pattern,
                      List<String> refusedFinishReasons, int maxRepairs, String repairText, PromptTemplate repairFile) {
        this.minChars = minChars;
        this.maxChars = maxChars;
        this.json = json || schemaNode != null;
        this.schemaNode = schemaNode;
        this.schema = schemaNode == null ? null : SCHEMAS.getSchema(schemaNode);
        this.pattern = pattern;
        this.refusedFinishReasons = List.copyOf(refusedFinishReasons);
        this.maxRepairs = maxRepairs;
        this.repairText = repairText;
        this.repairFile = repairFile;
    }

    /** Whether there is anything to check (a job file with a {@code checks:} mapping). */
    public boolean any() {
        return this != NONE;
    }

    public Integer minChars() {
        return minChars;
    }

    public Integer maxChars() {
        return maxChars;
    }

    public boolean json() {
        return json;
    }

    /** The JSON Schema answers must be valid against, or null. */
    public JsonNode schema() {
        return schemaNode;
    }

    public int maxRepairs() {
        return maxRepairs;
    }

    public List<String> refusedFinishReasons() {
        return refusedFinishReasons;
    }

    /** The repair prompt as it is now (the file read again when it changed), placeholders not filled. */
    public String repairPrompt() {
        return repairFile != null ? repairFile.text() : repairText != null ? repairText : DEFAULT_REPAIR_PROMPT;
    }

    /**
     * Reads a job file's {@code checks:} mapping; every mistake names the file and the key.
     *
     * @param base the directory relative file names are resolved against (the one holding jobs/ and prompts/)
     */
    static JobChecks read(JsonNode checks, Path file, Path base) {
        if (checks == null || checks.isNull()) {
            return NONE;
        }
        if (!checks.isObject()) {
            throw new IllegalArgumentException(file + ": 'checks' is a mapping (min_chars:, max_chars:, json:, pattern:, ...)");
        }
        for (Iterator<String> it = checks.fieldNames(); it.hasNext(); ) {
            String key = it.next();
            if (!KEYS.contains(key)) {
                throw new IllegalArgumentException(file + ": unknown key 'checks." + key + "' (known: "
                                                   + String.join(", ", KEYS.stream().sorted().toList()) + ")");
            }
        }
        Integer min = count(checks, MIN_CHARS, file);
        Integer max = count(checks, MAX_CHARS, file);
        if (min != null && max != null && min > max) {
            throw new IllegalArgumentException(file + ": 'checks.min_chars' (" + min + ") is more than 'checks.max_chars' (" + max + ")");
        }
        JsonNode json = checks.get(JSON_CHECK);
        if (json != null && !json.isNull() && !json.isBoolean()) {
            throw new IllegalArgumentException(file + ": 'checks.json' is true or false");
        }
        JsonNode schema = null;
        JsonNode schemaFile = checks.get(JSON_SCHEMA);
        if (schemaFile != null && !schemaFile.isNull()) {
            if (!schemaFile.isTextual() || schemaFile.asText().isBlank()) {
                throw new IllegalArgumentException(file + ": 'checks.json_schema' is the file of a JSON Schema, e.g. schemas/answer.json");
            }
            Path p = resolve(base, schemaFile.asText().strip());
            try {
                schema = JSON.readTree(Files.readString(p, StandardCharsets.UTF_8));
            } catch (IOException e) {
                throw new IllegalArgumentException(file + ": 'checks.json_schema': cannot read " + p + " as JSON: " + e.getMessage());
            }
            if (schema == null || !schema.isObject()) {
                throw new IllegalArgumentException(file + ": 'checks.json_schema': " + p + " is not a JSON Schema (a JSON object)");
            }
            if (json != null && json.isBoolean() && !json.asBoolean()) {
                throw new IllegalArgumentException(file + ": 'checks.json_schema' needs JSON answers, but 'checks.json' is false");
            }
            try {
                SCHEMAS.getSchema(schema).validate(JSON.createObjectNode()); // a schema the validator cannot use fails here
            } catch (RuntimeException e) {
                throw new IllegalArgumentException(file + ": 'checks.json_schema': " + p + " is not a usable JSON Schema: " + e.getMessage());
            }
        }
        Pattern pattern = null;
        JsonNode regex = checks.get(PATTERN);
        if (regex != null && !regex.isNull()) {
            if (!regex.isTextual() || regex.asText().isEmpty()) {
                throw new IllegalArgumentException(file + ": 'checks.pattern' is a regular expression (Java syntax)");
            }
            try {
                pattern = Pattern.compile(regex.asText());
            } catch (PatternSyntaxException e) {
                throw new IllegalArgumentException(file + ": 'checks.pattern' is not a regular expression: " + e.getDescription()
                                                   + " near index " + e.getIndex());
            }
        }
        List<String> refused = DEFAULT_REFUSED_FINISH_REASONS;
        JsonNode reasons = checks.get("refuse_finish_reasons");
        if (reasons != null && !reasons.isNull()) {
            if (!reasons.isArray()) {
                throw new IllegalArgumentException(file + ": 'checks.refuse_finish_reasons' is a list of finish reasons, e.g. [length]");
            }
            refused = new ArrayList<>();
            for (JsonNode r : reasons) {
                if (!r.isTextual() || r.asText().isBlank()) {
                    throw new IllegalArgumentException(file + ": 'checks.refuse_finish_reasons' is a list of finish reasons, e.g. [length]");
                }
                refused.add(r.asText().strip());
            }
        }
        Integer repairs = count(checks, "max_repairs", file);
        String repairText = null;
        JsonNode text = checks.get("repair_prompt");
        if (text != null && !text.isNull()) {
            if (!text.isTextual() || text.asText().isBlank()) {
                throw new IllegalArgumentException(file + ": 'checks.repair_prompt' must be a non-empty text");
            }
            repairText = text.asText().strip();
        }
        PromptTemplate repairFile = null;
        JsonNode repairPath = checks.get("repair_prompt_file");
        if (repairPath != null && !repairPath.isNull()) {
            if (repairText != null) {
                throw new IllegalArgumentException(file + ": set 'checks.repair_prompt' or 'checks.repair_prompt_file', not both");
            }
            if (!repairPath.isTextual() || repairPath.asText().isBlank()) {
                throw new IllegalArgumentException(file + ": 'checks.repair_prompt_file' is a file name, e.g. prompts/repair.txt");
            }
            repairFile = new PromptTemplate(resolve(base, repairPath.asText().strip()), "checks.repair_prompt_file of " + file);
        }
        String repairPrompt;
        try {
            repairPrompt = repairFile != null ? repairFile.text() : repairText != null ? repairText : DEFAULT_REPAIR_PROMPT;
        } catch (PromptTemplate.PromptUnavailableException e) {
            throw new IllegalArgumentException(file + ": 'checks.repair_prompt_file': " + e.getMessage());
        }
        Matcher m = PLACEHOLDER.matcher(repairPrompt);
        while (m.find()) {
            if (!REPAIR_PLACEHOLDERS.contains(m.group(1))) {
                throw new IllegalArgumentException(file + ": 'checks." + (repairFile != null ? "repair_prompt_file" : "repair_prompt")
                                                   + "' uses {" + m.group(1) + "}; a repair prompt knows {failure} and {answer}");
            }
        }
        return new JobChecks(min, max, json != null && json.asBoolean(), schema, pattern, refused,
                repairs == null ? DEFAULT_MAX_REPAIRS : repairs, repairText, repairFile);
    }

    /**
     * What a JSON check sends to OpenAI-compatible servers when the job's params set no {@code response_format}: the
     * schema ({@code json_schema}) or JSON mode ({@code json_object}); null without a JSON check. api.py ignores it (its
     * request route takes only max_length, top_p and temperature from the params).
     */
    ObjectNode responseFormat(String jobName) {
        if (!json) {
            return null;
        }
        ObjectNode format = JSON.createObjectNode();
        if (schemaNode == null) {
            return format.put("type", "json_object");
        }
        format.put("type", "json_schema");
        format.putObject("json_schema").put("name", jobName).set("schema", schemaNode);
        return format;
    }

    /**
     * The {@link Jobs#CHECKS} header: the checks in compact JSON, only the keys that are set; the schema is left out when
     * the request's {@code response_format} carries it already ({@code schemaInRequest}). Computed once per repair prompt
     * text.
     */
    public String header(boolean schemaInRequest) {
        String prompt = repairPrompt();
        String[] cached = header;
        String key = prompt + (schemaInRequest ? "\u0001" : "\u0000");
        if (!key.equals(cached[0])) {
            ObjectNode h = JSON.createObjectNode();
            if (minChars != null) {
                h.put(MIN_CHARS, minChars);
            }
            if (maxChars != null) {
                h.put(MAX_CHARS, maxChars);
            }
            if (json) {
                h.put(JSON_CHECK, true);
            }
            if (schemaNode != null) {
                if (schemaInRequest) {
                    h.put(JSON_SCHEMA, SCHEMA_IN_REQUEST);
                } else {
                    h.set(JSON_SCHEMA, schemaNode);
                }
            }
            if (pattern != null) {
                h.put(PATTERN, pattern.pattern());
            }
            ArrayNode refused = h.putArray("refuse_finish_reasons");
            refusedFinishReasons.forEach(refused::add);
            h.put("max_repairs", maxRepairs);
            if (!prompt.equals(DEFAULT_REPAIR_PROMPT)) {
                h.put("repair_prompt", prompt);
            }
            cached = new String[] { key, h.toString() };
            header = cached;
        }
        return cached[1];
    }

    /**
     * The checks a task's {@link Jobs#CHECKS} header carries; {@code request} is the task's rendered request, whose
     * {@code params.response_format} holds the schema when the header says {@value #SCHEMA_IN_REQUEST}.
     *
     * @throws IllegalArgumentException when the header is not what {@link #header} writes
     */
    public static JobChecks fromHeader(String header, JsonNode request) {
        JobChecks cached = FROM_HEADERS.get(header);
        if (cached != null) {
            return cached;
        }
        JsonNode h;
        try {
            h = JSON.readTree(header);
        } catch (JsonProcessingException e) {
            throw new IllegalArgumentException(Jobs.CHECKS + " is not JSON: " + e.getOriginalMessage());
        }
        if (h == null || !h.isObject()) {
            throw new IllegalArgumentException(Jobs.CHECKS + " is not a JSON object");
        }
        JsonNode schema = h.get(JSON_SCHEMA);
        boolean fromRequest = schema != null && schema.isTextual();
        if (fromRequest) {
            schema = request == null ? null : request.path("params").path("response_format").path("json_schema").get("schema");
            if (schema == null || !schema.isObject()) {
                throw new IllegalArgumentException(Jobs.CHECKS + " names the schema of the request's response_format, which has none");
            }
        }
        String key = fromRequest ? header + "\u0000" + schema : header;
        cached = FROM_HEADERS.get(key);
        if (cached != null) {
            return cached;
        }
        List<String> refused = new ArrayList<>();
        h.path("refuse_finish_reasons").forEach(r -> refused.add(r.asText()));
        JobChecks checks = new JobChecks(h.has(MIN_CHARS) ? h.get(MIN_CHARS).asInt() : null,
                h.has(MAX_CHARS) ? h.get(MAX_CHARS).asInt() : null, h.path(JSON_CHECK).asBoolean(false),
                schema == null || schema.isNull() ? null : schema, h.hasNonNull(PATTERN) ? Pattern.compile(h.get(PATTERN).asText()) : null,
                refused, h.path("max_repairs").asInt(DEFAULT_MAX_REPAIRS), h.path("repair_prompt").asText(null), null);
        if (FROM_HEADERS.size() > 256) {
            FROM_HEADERS.clear(); // jobs come and go: keep the cache small
        }
        FROM_HEADERS.put(key, checks);
        return checks;
    }

    /** Why an answer failed: the check (its name in the reason {@code output-check: <check>}) and what is wrong. */
    public record Failure(String check, String message) {
    }

    /** The first check {@code answer} fails (finish reason, length, JSON, schema, pattern, in that order), or null. */
    public Failure evaluate(String answer, String finishReason) {
        if (finishReason != null && refusedFinishReasons.contains(finishReason)) {
            return new Failure(FINISH_REASON, "the answer was cut off (finish_reason " + finishReason + ")"
                                              + ("length".equals(finishReason) ? ": it must be shorter" : ""));
        }
        String text = answer == null ? "" : answer.strip();
        int chars = text.codePointCount(0, text.length());
        if (minChars != null && chars < minChars) {
            return new Failure(MIN_CHARS, "it has " + chars + " characters, at least " + minChars + " are required");
        }
        if (maxChars != null && chars > maxChars) {
            return new Failure(MAX_CHARS, "it has " + chars + " characters, at most " + maxChars + " are allowed");
        }
        if (json) {
            JsonNode parsed;
            try {
                parsed = STRICT.readTree(text);
            } catch (JsonProcessingException e) {
                return new Failure(JSON_CHECK, "it is not valid JSON (" + e.getOriginalMessage() + "); answer with JSON only");
            }
            if (parsed == null || parsed.isMissingNode()) {
                return new Failure(JSON_CHECK, "it is empty, a JSON document is required");
            }
            if (schema != null) {
                List<com.networknt.schema.Error> errors = schema.validate(parsed);
                if (!errors.isEmpty()) {
                    Set<String> messages = new LinkedHashSet<>();
                    errors.stream().limit(5).forEach(e -> messages.add(e.getInstanceLocation() + ": " + e.getMessage()));
                    return new Failure(JSON_SCHEMA, "the JSON does not match the schema: " + String.join("; ", messages));
                }
            }
        }
        if (pattern != null && !pattern.matcher(text).find()) {
            return new Failure(PATTERN, "it does not match the required pattern " + pattern.pattern());
        }
        return null;
    }

    /** The repair prompt for a failed answer: {failure} and {answer} filled. */
    public String repairPrompt(Failure failure, String answer) {
        Matcher m = PLACEHOLDER.matcher(repairPrompt());
        StringBuilder out = new StringBuilder();
        while (m.find()) {
            String value = switch (m.group(1)) {
                case "failure" -> failure.message();
                case "answer" -> answer == null ? "" : answer;
                default -> m.group();
            };
            m.appendReplacement(out, Matcher.quoteReplacement(value));
        }
        m.appendTail(out);
        return out.toString();
    }

    private static Integer count(JsonNode checks, String key, Path file) {
        JsonNode v = checks.get(key);
        if (v == null || v.isNull()) {
            return null;
        }
        if (!v.isIntegralNumber() || v.asLong() < 0 || v.asLong() > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(file + ": 'checks." + key + "' is a whole number, 0 or more");
        }
        return v.asInt();
    }

    private static Path resolve(Path base, String file) {
        Path p = Path.of(file);
        return p.isAbsolute() ? p : base.resolve(p);
    }
}
