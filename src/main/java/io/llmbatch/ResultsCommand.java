package io.llmbatch;

import java.io.PrintStream;
import java.util.Properties;

import com.mongodb.client.MongoClient;
import com.mongodb.client.MongoClients;
import com.mongodb.client.MongoCollection;
import com.mongodb.client.model.Filters;
import com.mongodb.client.model.Sorts;
import org.apache.camel.impl.DefaultCamelContext;
import org.bson.Document;
import org.bson.conversions.Bson;

import io.llmbatch.embedded.Embedded;

/**
 * {@code java -jar target/llm-batch.jar results [company] [-Dkey=value ...]}: how many results are stored and the
 * latest few (or the one of a company), read from the MongoDB the collector writes to, embedded or not.
 */
final class ResultsCommand {

    private ResultsCommand() {
    }

    static int run(String locations, Properties overrides, String company, PrintStream out) throws Exception {
        DefaultCamelContext context = Application.settings(locations, overrides);
        String uri = context.resolvePropertyPlaceholders("{{llmbatch.mongodb.uri}}").trim();
        if (Embedded.EMBEDDED.equals(uri)) {
            uri = "mongodb://127.0.0.1:" + context.resolvePropertyPlaceholders("{{llmbatch.embedded.mongodb-port}}")
                  + "/?serverSelectionTimeoutMS=3000";
        }
        try (MongoClient client = MongoClients.create(uri)) {
            MongoCollection<Document> docs = client.getDatabase(context.resolvePropertyPlaceholders("{{llmbatch.mongodb.database}}"))
                    .getCollection(context.resolvePropertyPlaceholders("{{llmbatch.mongodb.collection}}"));
            Bson filter = company == null ? new Document() : Filters.eq("company", company);
            out.println(docs.countDocuments() + " result(s) stored in " + Urls.mask(uri) + (company == null ? "; latest:" : ":"));
            for (Document d : docs.find(filter).sort(Sorts.descending("updated_at")).limit(5)) {
                out.println();
                out.println("company:     " + d.getString("company"));
                out.println("model_name:  " + d.getString("model_name") + "   pid: " + d.getString("pid"));
                out.println("worker/gpu:  " + d.getString("worker_host") + " / " + d.getString("gpu") + " via " + d.getString("backend"));
                out.println("spends:      " + d.get("spends") + " s, finished " + d.getString("finished_at"));
                out.println("intro:       " + d.getString("intro"));
            }
        }
        return 0;
    }
}
