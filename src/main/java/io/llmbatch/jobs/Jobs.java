package io.llmbatch.jobs;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.security.MessageDigest;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.stream.Stream;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.cfg.JsonNodeFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * The job definitions of {@code llmbatch.jobs.dir} ({@code jobs/*.yaml}), read again when a file changes, and what turns a
 * task into the LLM request its worker sends: the ingest node renders every task it publishes (GPU machines need no
 * job file, only the broker), so a task carries its job, its request, the version of the prompt that made it, and
 * where and under which key its result is stored.
 */
public final class Jobs {

    /** The AMQP headers a rendered task carries (the body stays the task as submitted). */
    public static final String JOB = "x-llmbatch-job";
    public static final String REQUEST = "x-llmbatch-request";
    public static final String REQUEST_HASH = "x-llmbatch-request-hash";
    public static final String PROMPT_VERSION = "x-llmbatch-prompt-version";
    public static final String PID = "x-llmbatch-pid";
    public static final String COLLECTION = "x-llmbatch-collection";
    public static final String MODEL = "x-llmbatch-model";
    public static final String OUTPUT_FIELD = "x-llmbatch-output-field";
    public static final String COMPANY_FIELD = "x-llmbatch-company-field";
    /** The job's output checks, compact JSON ({@link JobChecks#header}); absent for a job without checks. */
    public static final String CHECKS = "x-llmbatch-checks";
    /** A line of an OpenAI batch (POST /v1/batches): its batch id, custom_id and line number in the input file. */
    public static final String BATCH = "x-llmbatch-batch";
    public static final String CUSTOM_ID = "x-llmbatch-custom-id";
    public static final String LINE = "x-llmbatch-line";

    private static final ObjectMapper CANONICAL = new ObjectMapper().configure(JsonNodeFeature.WRITE_PROPERTIES_SORTED, true);
    private static final char US = '\u001f';
    private static final ThreadLocal<MessageDigest> MD5 = JobDefinition.digest("MD5");

    /**
     * A task turned into what its worker needs.
     *
     * @param requestJson the request as the task's header carries it (canonical JSON: sorted keys, what the hash is of)
     */
    public record Rendered(JobDefinition job, ObjectNode request, String requestJson, String requestHash, String promptVersion,
                           String pid, String model) {

        /** The job's fields of the task message, by header name ({@link TaskEnvelope} puts them in its body). */
        public Map<String, Object> headers() {
            Map<String, Object> h = new java.util.LinkedHashMap<>();
            h.put(JOB, job.name());
            h.put(REQUEST, requestJson);
            h.put(REQUEST_HASH, requestHash);
            h.put(PROMPT_VERSION, promptVersion);
            h.put(PID, pid);
            h.put(COLLECTION, job.collection());
            h.put(MODEL, model);
            h.put(OUTPUT_FIELD, job.outputField());
            if (job.companyField() != null) {
                h.put(COMPANY_FIELD, job.companyField());
            }
            if (job.checks().any()) {
                h.put(CHECKS, job.checks().header(job.checks().schema() != null && job.checks().schema().equals(
                        request.path("params").path("response_format").path("json_schema").get("schema"))));
            }
            return h;
        }
    }

    /** The task names a job that has no definition. */
    public static class UnknownJobException extends RuntimeException {
        public UnknownJobException(String message) {
            super(message);
        }
    }

    /** A job file that is there but cannot be used (a mistake in it): its tasks are refused until it is fixed. */
    public static class BrokenJobException extends RuntimeException {
        public BrokenJobException(String message, Throwable cause) {
            super(message, cause);
        }
    }

    private record Loaded(FileTime modified, JobDefinition job) {
    }

    private final Path dir;
    private final String defaultJob;
    private final String defaultModel;
    private final Map<String, Loaded> cache = new ConcurrentHashMap<>();

    /**
     * @param dir          where the job files are
     * @param defaultJob   the job of tasks that name none (the seed's, {@code company_intro}); its results keep the
     *                     seed's key, md5(company + model_name)
     * @param defaultModel the model of jobs that name none ({@code llmbatch.llm.model})
     */
    public Jobs(Path dir, String defaultJob, String defaultModel) {
        this.dir = dir;
        this.defaultJob = defaultJob;
        this.defaultModel = defaultModel;
    }

    /** The model {@code job}'s tasks are sent with: its own, else {@code llmbatch.llm.model}. */
    public String modelOf(JobDefinition job) {
        return job.model() != null ? job.model() : defaultModel;
    }

    public String defaultJobName() {
        return defaultJob;
    }

    /** The default job; its file must exist (the start fails otherwise). */
    public JobDefinition defaultJob() {
        return get(defaultJob);
    }

    /** The job {@code name} as its file says now. */
    public JobDefinition get(String name) {
        if (!JobDefinition.validName(name)) {
            throw new UnknownJobException("'" + name + "' is not a job name (lower-case letters, digits, '_' and '-')");
        }
        Path file = dir.resolve(name + ".yaml");
        try {
            FileTime modified = Files.getLastModifiedTime(file);
            Loaded l = cache.get(name);
            if (l == null || !l.modified().equals(modified)) {
                try {
                    l = new Loaded(modified, JobDefinition.read(file));
                } catch (IllegalArgumentException e) {
                    cache.remove(name);
                    throw new BrokenJobException("job '" + name + "' cannot be used until its file is fixed: " + e.getMessage(), e);
                }
                cache.put(name, l);
            }
            return l.job();
        } catch (java.nio.file.NoSuchFileException e) {
            cache.remove(name);
            throw new UnknownJobException("no job '" + name + "': there is no " + file + " (jobs: " + names() + ")");
        } catch (IOException e) {
            Loaded l = cache.get(name);
            if (l != null) {
                return l.job(); // being replaced (an editor's rename): the version read before
            }
            throw new BrokenJobException("job '" + name + "' cannot be used until its file is fixed: cannot read " + file + ": "
                                         + e.getMessage(), e);
        }
    }

    /** Each job file that cannot be used now, and why (a mistake in it, YAML that does not parse). */
    public Map<String, String> broken() {
        Map<String, String> broken = new java.util.TreeMap<>();
        for (String n : names()) {
            try {
                get(n);
            } catch (BrokenJobException e) {
                broken.put(n, e.getMessage());
            } catch (UnknownJobException e) {
                // removed meanwhile
            }
        }
        return broken;
    }

    /** The names of every job file. */
    public List<String> names() {
        try (Stream<Path> files = Files.list(dir)) {
            return files.map(p -> p.getFileName().toString()).filter(n -> n.endsWith(".yaml"))
                    .map(n -> n.substring(0, n.length() - 5)).filter(JobDefinition::validName).sorted().toList();
        } catch (IOException e) {
            return List.of();
        }
    }

    /** The job a task belongs to: its {@code job} field, else {@code named}, else the default job. */
    public JobDefinition jobOf(JsonNode task, String named) {
        JsonNode field = task.get("job");
        if (field != null && !field.isNull()) {
            if (!field.isTextual()) {
                throw new UnknownJobException("'job' must be the name of a job, a string");
            }
            if (named != null && !named.equals(field.asText())) {
                throw new UnknownJobException("the task names job '" + field.asText() + "', it was sent to job '" + named + "'");
            }
            return get(field.asText());
        }
        return get(named != null ? named : defaultJob);
    }

    /**
     * The request for a task of {@code job}: the prompt from its template, its system prompt, its params and model.
     *
     * @throws PromptTemplate.MissingFieldException when the task lacks a field the prompt needs
     */
    public Rendered render(JobDefinition job, ObjectNode task) {
        String model = modelOf(job);
        ObjectNode request = CANONICAL.createObjectNode();
        request.put("prompt", job.prompt().render(task));
        String system = job.system().text();
        if (system != null) {
            request.put("system", system);
        }
        ObjectNode responseFormat = job.params().has("response_format") ? null : job.checks().responseFormat(job.name());
        if (responseFormat != null) { // a JSON check asks OpenAI-compatible servers for JSON (the job's params can say otherwise)
            request.set("params", job.params().deepCopy().set("response_format", responseFormat));
        } else if (!job.params().isEmpty()) {
            request.set("params", job.params());
        }
        request.put("model", model);
        String json;
        try {
            json = CANONICAL.writeValueAsString(request);
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
        return new Rendered(job, request, json, JobDefinition.sha256(json), job.promptVersion(), pid(job, task, model), model);
    }

    /**
     * The key of a task's result. The default job keeps the seed's, lower-case hex md5 of {@code company + model_name}, so
     * existing collections go on working; every other job's key also holds the job's name, so two jobs never overwrite
     * each other's results: md5 of job, the key fields' values and the model, joined by U+001F.
     */
    public String pid(JobDefinition job, JsonNode task, String model) {
        if (job.name().equals(defaultJob) && job.companyField() != null && job.keyFields().equals(List.of(job.companyField()))) {
            return md5(task.path(job.companyField()).asText() + model);
        }
        StringBuilder s = new StringBuilder(job.name());
        for (String f : job.keyFields()) {
            s.append(US).append(task.path(f).asText());
        }
        return md5(s.append(US).append(model).toString());
    }

    /** Lower-case hex MD5 of the UTF-8 bytes. */
    public static String md5(String text) {
        return JobDefinition.hex(MD5, text);
    }
}
