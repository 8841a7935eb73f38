package io.llmbatch;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

class UrlsTest {

    @Test
    void mask_hides_the_password_of_every_url_in_a_text() {
        assertThat(Urls.mask("amqp://batch:s3cr3t@mq.example.com:5672/")).isEqualTo("amqp://batch:***@mq.example.com:5672/");
        assertThat(Urls.mask("amqps://u:p%40ss@h/vh")).isEqualTo("amqps://u:***@h/vh");
        assertThat(Urls.mask("mongodb+srv://llm:pw@cluster0.example.net/?retryWrites=true"))
                .isEqualTo("mongodb+srv://llm:***@cluster0.example.net/?retryWrites=true");
        assertThat(Urls.mask("connection refused: amqp://a:b@h:5672/ (timeout)")).isEqualTo("connection refused: amqp://a:***@h:5672/ (timeout)");
        assertThat(Urls.mask("mongodb://127.0.0.1:27017")).isEqualTo("mongodb://127.0.0.1:27017");
    }

    @Test
    void mask_hides_secrets_in_query_strings_whatever_the_case_of_their_key() {
        assertThat(Urls.mask("mongodb://db.example.com/?tls=true&tlsCertificateKeyFilePassword=hunter2&w=majority"))
                .isEqualTo("mongodb://db.example.com/?tls=true&tlsCertificateKeyFilePassword=***&w=majority");
        assertThat(Urls.mask("mongodb://h/?PASSWORD=a&Secret=b;token=c&apiKey=d&sig=e&SAS=f&authMechanismProperties=AWS_SESSION_TOKEN:g"))
                .isEqualTo("mongodb://h/?PASSWORD=***&Secret=***;token=***&apiKey=***&sig=***&SAS=***&authMechanismProperties=***");
        assertThat(Urls.mask("https://acct.blob.core.windows.net/c?sv=2024-01-01&sp=r&sig=abc%2Bdef#frag"))
                .isEqualTo("https://acct.blob.core.windows.net/c?sv=2024-01-01&sp=r&sig=***#frag");
        assertThat(Urls.mask("http://h/x?access_token=eyJhbGciOi&page=2")).isEqualTo("http://h/x?access_token=***&page=2");
    }

    @Test
    void mask_keeps_harmless_query_parameters_and_finds_urls_inside_longer_text() {
        assertThat(Urls.mask("mongodb://h:27017/llm?replicaSet=rs0&authSource=admin&serverSelectionTimeoutMS=3000"))
                .isEqualTo("mongodb://h:27017/llm?replicaSet=rs0&authSource=admin&serverSelectionTimeoutMS=3000");
        assertThat(Urls.mask("Collector: MongoDB at mongodb://llm:pw@h/?tlsCertificateKeyFilePassword=s3 failed (timeout); retrying"))
                .isEqualTo("Collector: MongoDB at mongodb://llm:***@h/?tlsCertificateKeyFilePassword=*** failed (timeout); retrying");
        assertThat(Urls.mask("two: amqps://u:p@a/?password=x and 'mongodb://b/?token=y'"))
                .isEqualTo("two: amqps://u:***@a/?password=*** and 'mongodb://b/?token=***'");
        assertThat(Urls.maskWhole("amqp://u:p/w d@h/?password=x")).as("a URL that does not parse").isEqualTo("amqp://***@h/?password=***");
    }
}
