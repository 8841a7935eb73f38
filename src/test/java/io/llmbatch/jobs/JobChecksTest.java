package io.llmbatch.jobs;

import java.nio.file.Files;
import java.nio.file.Path;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The {@code checks:} of a job file: read and refused at load with the file and the key, carried in one header. */
class JobChecksTest {

    @TempDir
    Path dir;
    Path jobs;

    @BeforeEach
    void files() throws Exception {
        jobs = Files.createDirectories(dir.resolve("jobs"));
        Files.createDirectories(dir.resolve("prompts"));
        Files.createDirectories(dir.resolve("schemas"));
        Files.writeString(dir.resolve("prompts/p.txt"), "写 {name}");
    }

    JobDefinition job(String checks) throws Exception {
        Path file = jobs.resolve("t14_job.yaml");
        Files.writeString(file, "prompt: prompts/p.txt\nrequired_fields: [name]\nchecks:\n" + checks.indent(2));
        return JobDefinition.read(file);
    }

    void refused(String checks, String message) {
        assertThatThrownBy(() -> job(checks)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageStartingWith(jobs.resolve("t14_job.yaml").toString() + ": ").hasMessageContaining(message);
    }

    @Test
    void mistakes_in_checks_are_refused_at_load_naming_the_file_and_the_key() {
        refused("min_char: 100", "unknown key 'checks.min_char'");
        refused("min_chars: -1", "'checks.min_chars' is a whole number");
        refused("max_chars: many", "'checks.max_chars' is a whole number");
        refused("min_chars: 300\nmax_chars: 200", "'checks.min_chars' (300) is more than 'checks.max_chars' (200)");
        refused("json: yes please", "'checks.json' is true or false");
        refused("json_schema: schemas/none.json", "'checks.json_schema': cannot read");
        refused("pattern: \"([a-z\"", "'checks.pattern' is not a regular expression");
        refused("refuse_finish_reasons: length", "'checks.refuse_finish_reasons' is a list");
        refused("max_repairs: 1.5", "'checks.max_repairs' is a whole number");
        refused("repair_prompt: \"fix {reason}\"", "'checks.repair_prompt' uses {reason}; a repair prompt knows {failure} and {answer}");
        refused("repair_prompt: a\nrepair_prompt_file: prompts/p.txt", "not both");
        refused("repair_prompt_file: prompts/missing.txt", "'checks.repair_prompt_file': cannot read");
    }

    @Test
    void defaults_are_length_refused_and_two_repairs() throws Exception {
        JobChecks c = job("min_chars: 3").checks();
        assertThat(c.refusedFinishReasons()).containsExactly("length");
        assertThat(c.maxRepairs()).isEqualTo(2);
        assertThat(c.repairPrompt()).isEqualTo(JobChecks.DEFAULT_REPAIR_PROMPT);
        assertThat(c.evaluate("abcdef", "length").check()).isEqualTo("finish_reason");
        assertThat(c.evaluate("abcdef", "stop")).isNull();
        Path file = jobs.resolve("t14_plain.yaml");
        Files.writeString(file, "prompt: prompts/p.txt\nrequired_fields: [name]\n");
        assertThat(JobDefinition.read(file).checks().any()).as("no checks: mapping, nothing checked").isFalse();
    }

    @Test
    void characters_are_code_points_and_patterns_are_found_anywhere() throws Exception {
        JobChecks c = job("min_chars: 2\nmax_chars: 3\npattern: \"^\\\\S+$\"").checks();
        assertThat(c.evaluate(" 😀😀😀 ", null)).isNull(); // 3 code points, 6 UTF-16 units, whitespace around not counted
        assertThat(c.evaluate("😀", null).message()).isEqualTo("it has 1 characters, at least 2 are required");
        assertThat(c.evaluate("a b", null).check()).isEqualTo("pattern");
    }

    @Test
    void only_a_json_check_changes_the_request_and_the_jobs_own_response_format_wins() throws Exception {
        com.fasterxml.jackson.databind.node.ObjectNode task = (com.fasterxml.jackson.databind.node.ObjectNode) new ObjectMapper()
                .readTree("{\"name\": \"x\"}");
        Jobs all = new Jobs(jobs, "t14_job", "m");
        Jobs.Rendered lengths = all.render(job("min_chars: 1\nmax_chars: 9"), task);
        Path plain = jobs.resolve("t14_plain.yaml");
        Files.writeString(plain, "prompt: prompts/p.txt\nrequired_fields: [name]\n");
        Jobs.Rendered unchecked = all.render(JobDefinition.read(plain), task);
        assertThat(lengths.request()).as("length checks leave the request (and its hash) as it was").isEqualTo(unchecked.request());
        assertThat(unchecked.headers()).doesNotContainKey(Jobs.CHECKS);
        // the header carries the request as hashed: what the worker sends is what skipping compares
        assertThat(new ObjectMapper().readTree((String) lengths.headers().get(Jobs.REQUEST))).isEqualTo(lengths.request());
        assertThat(JobDefinition.sha256((String) lengths.headers().get(Jobs.REQUEST))).isEqualTo(lengths.requestHash());
        assertThat((String) lengths.headers().get(Jobs.CHECKS))
                .isEqualTo("{\"min_chars\":1,\"max_chars\":9,\"refuse_finish_reasons\":[\"length\"],\"max_repairs\":2}");

        assertThat(all.render(job("json: true"), task).request().at("/params/response_format").toString())
                .isEqualTo("{\"type\":\"json_object\"}");
        Path own = jobs.resolve("t14_own.yaml");
        Files.writeString(own, "prompt: prompts/p.txt\nrequired_fields: [name]\nparams: {response_format: {type: text}}\nchecks: {json: true}\n");
        assertThat(all.render(JobDefinition.read(own), task).request().at("/params/response_format/type").asText()).isEqualTo("text");
    }

    @Test
    void the_header_carries_the_checks_and_the_schema_only_once() throws Exception {
        Files.writeString(dir.resolve("schemas/s.json"), "{\"type\": \"object\", \"required\": [\"a\"]}");
        JobDefinition job = job("json_schema: schemas/s.json\nrepair_prompt: \"{failure}: {answer}\"");
        Jobs all = new Jobs(jobs, "t14_job", "m");
        Jobs.Rendered r = all.render(job, (com.fasterxml.jackson.databind.node.ObjectNode) new ObjectMapper().readTree("{\"name\": \"x\"}"));
        JsonNode request = r.request();
        assertThat(request.at("/params/response_format/type").asText()).isEqualTo("json_schema");
        String header = (String) r.headers().get(Jobs.CHECKS);
        assertThat(header).contains("\"json_schema\":\"response_format\"").doesNotContain("required");
        JobChecks back = JobChecks.fromHeader(header, request);
        assertThat(back.evaluate("{\"a\": 1}", null)).isNull();
        assertThat(back.evaluate("{\"b\": 1}", null).check()).isEqualTo("json_schema");
        assertThat(back.evaluate("not json", null).check()).isEqualTo("json");
        JobChecks.Failure f = back.evaluate("[1]", null);
        assertThat(back.repairPrompt(f, "[1]")).startsWith("the JSON does not match the schema: ").endsWith(": [1]");
    }
}
