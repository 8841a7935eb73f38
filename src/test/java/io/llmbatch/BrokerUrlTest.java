package io.llmbatch;

import io.llmbatch.rabbit.BrokerConfiguration;
import org.junit.jupiter.api.Test;
import org.springframework.amqp.rabbit.connection.CachingConnectionFactory;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** llmbatch.rabbitmq.url is checked at start: a bad URL stops the start, and the error never shows the password. */
class BrokerUrlTest {

    @Test
    void a_url_that_does_not_parse_stops_the_start_without_showing_the_password() {
        // Spring's setUri alone would log this and connect to localhost:5672 as guest
        assertThatThrownBy(() -> BrokerConfiguration.brokers("amqp://batch:p%zz@mq.example.com/", "", ""))
                .isInstanceOf(IllegalArgumentException.class).hasNoCause()
                .hasMessageContaining("amqp://***@mq.example.com/").hasMessageContaining("percent-encoded")
                .hasMessageNotContaining("p%zz");
        assertThatThrownBy(() -> BrokerConfiguration.brokers("amqp://batch:pa ss/zq9@mq.example.com/", "", ""))
                .hasNoCause().hasMessageNotContaining("pa ss").hasMessageNotContaining("zq9");
        assertThatThrownBy(() -> BrokerConfiguration.brokers("amqp://u:s3cret@h1/,amqp://u:bad pw@h2/", "", ""))
                .hasNoCause().hasMessageNotContaining("bad pw").hasMessageNotContaining("s3cret");
        assertThatThrownBy(() -> BrokerConfiguration.brokers("http://u:s3cret@mq.example.com/", "", ""))
                .hasMessageContaining("not a valid amqp:// or amqps:// URL").hasMessageNotContaining("s3cret");
        assertThatThrownBy(() -> BrokerConfiguration.brokers("amqp://u:s3cret@mq_example/", "", ""))
                .hasMessageContaining("has no host").hasMessageNotContaining("s3cret");
    }

    @Test
    void a_valid_url_or_list_sets_host_vhost_and_credentials() {
        CachingConnectionFactory one = BrokerConfiguration.brokers("amqp://batch:p%40ss@mq.example.com:5673/jobs", "", "");
        assertThat(one.getHost()).isEqualTo("mq.example.com");
        assertThat(one.getPort()).isEqualTo(5673);
        assertThat(one.getVirtualHost()).isEqualTo("jobs");
        assertThat(one.getUsername()).isEqualTo("batch");
        assertThat(one.getRabbitConnectionFactory().getPassword()).isEqualTo("p@ss");
        CachingConnectionFactory seed = BrokerConfiguration.brokers("amqp://guest:guest@127.0.0.1:5672/", "", "");
        assertThat(seed.getVirtualHost()).as("a path of / is the default vhost, as in pika").isEqualTo("/");
        one.destroy();
        seed.destroy();
    }
}
