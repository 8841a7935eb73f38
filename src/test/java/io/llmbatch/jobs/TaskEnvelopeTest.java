package io.llmbatch.jobs;

import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.Test;

import io.llmbatch.ingest.Tasks;
import io.llmbatch.rabbit.ConfirmingPublisher;
import io.llmbatch.rabbit.OutboundMessage;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The job's fields of a task message ride in its body and come out again as they went in. */
class TaskEnvelopeTest {

    static final ObjectMapper JSON = new ObjectMapper();

    static OutboundMessage message(String body) {
        Map<String, Object> headers = new LinkedHashMap<>();
        headers.put(ConfirmingPublisher.SOURCE_HEADER, "http");
        headers.put(Jobs.JOB, "company_intro");
        headers.put(Jobs.REQUEST, "{\"prompt\":\"成立日期:2015-03-02\\n\\\"引号\\\"\"}");
        headers.put(Jobs.REQUEST_HASH, "abc");
        headers.put(Jobs.LINE, "7");
        return new OutboundMessage(body.getBytes(StandardCharsets.UTF_8), "id-1", headers, 3);
    }

    @Test
    void job_fields_go_into_the_body_and_come_out_as_they_went_in() throws Exception {
        OutboundMessage wrapped = TaskEnvelope.wrap(message("{\"ent_table_name\":\"某公司\",\"n\":[1,{\"a\":2}]}"));
        // no header table at all: RabbitMQ spends more CPU on a message with one (bench/HeaderCost.java)
        assertThat(wrapped.headers()).isEmpty();
        assertThat(wrapped.messageId()).isEqualTo("id-1");
        assertThat(wrapped.position()).isEqualTo(3);
        ObjectNode task = (ObjectNode) JSON.readTree(wrapped.body());
        assertThat(task.get("_llmbatch").get("request_hash").asText()).isEqualTo("abc");
        assertThat(task.get("_llmbatch").get("source").asText()).isEqualTo("http");
        Map<String, Object> fields = TaskEnvelope.unwrap(task);
        assertThat(fields).containsExactly(Map.entry(Jobs.JOB, "company_intro"),
                Map.entry(Jobs.REQUEST, "{\"prompt\":\"成立日期:2015-03-02\\n\\\"引号\\\"\"}"), Map.entry(Jobs.REQUEST_HASH, "abc"),
                Map.entry(Jobs.LINE, "7"));
        assertThat(task).isEqualTo(JSON.readTree("{\"ent_table_name\":\"某公司\",\"n\":[1,{\"a\":2}]}"));
    }

    @Test
    void a_header_that_is_neither_the_source_nor_a_job_field_stays_a_header() throws Exception {
        OutboundMessage m = message("{\"a\":1}");
        Map<String, Object> headers = new LinkedHashMap<>(m.headers());
        headers.put("x-llmbatch-other", "kept");
        OutboundMessage wrapped = TaskEnvelope.wrap(new OutboundMessage(m.body(), m.messageId(), headers, 0));
        assertThat(wrapped.headers()).containsOnly(Map.entry("x-llmbatch-other", "kept"));
    }

    @Test
    void an_empty_object_or_a_line_with_whitespace_around_it_is_wrapped_too() throws Exception {
        for (String body : List.of("{}", " { } \r\n", "\t{\"custom_id\": \"r1\"}\n")) {
            ObjectNode task = (ObjectNode) JSON.readTree(TaskEnvelope.wrap(message(body)).body());
            assertThat(TaskEnvelope.unwrap(task)).as(body).containsEntry(Jobs.JOB, "company_intro");
            assertThat(task).as(body).isEqualTo(JSON.readTree(body));
        }
    }

    @Test
    void a_message_without_job_fields_or_whose_body_is_no_object_stays_as_it_is() {
        OutboundMessage plain = OutboundMessage.fromSource("{\"a\":1}".getBytes(StandardCharsets.UTF_8), "x", "http", 0);
        assertThat(TaskEnvelope.wrap(plain)).isSameAs(plain);
        OutboundMessage array = message("[1,2]");
        assertThat(TaskEnvelope.wrap(array)).isSameAs(array);
        assertThat(TaskEnvelope.unwrap((ObjectNode) JSON.createObjectNode().put("a", 1))).isNull();
    }

    @Test
    void an_envelope_that_is_not_an_object_of_text_is_refused_and_a_submitted_task_may_not_have_one() throws Exception {
        assertThatThrownBy(() -> TaskEnvelope.unwrap((ObjectNode) JSON.readTree("{\"_llmbatch\": 3}")))
                .hasMessageContaining("is a number");
        assertThatThrownBy(() -> TaskEnvelope.unwrap((ObjectNode) JSON.readTree("{\"_llmbatch\": {\"request\": {}}}")))
                .hasMessageContaining("_llmbatch.request is an object");
        assertThat(Tasks.problem(JSON.readTree("{\"name\": \"x\", \"_llmbatch\": {}}"), List.of("name"))).contains("reserved");
    }
}
