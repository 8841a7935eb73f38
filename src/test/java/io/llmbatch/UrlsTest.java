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
}
