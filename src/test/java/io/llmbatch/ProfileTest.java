package io.llmbatch;

import org.apache.camel.impl.DefaultCamelContext;
import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The prod profile embeds nothing: without MONGODB_URI (etc.) it refuses to start, naming the variable. */
class ProfileTest {

    @Test
    void prod_profile_requires_the_external_services() throws Exception {
        try (DefaultCamelContext context = new DefaultCamelContext()) {
            context.getPropertiesComponent().setLocation(Application.locations("prod"));
            context.build();
            assertThat(context.getPropertiesComponent().resolveProperty("llmbatch.queue.tasks")).hasValue("ent_intro_task");
            // (the tests set RABBITMQ_URL to the real broker, so MongoDB shows the rule)
            if (System.getenv("MONGODB_URI") == null) {
                assertThatThrownBy(() -> context.resolvePropertyPlaceholders("{{llmbatch.mongodb.uri}}"))
                        .hasMessageContaining("env:MONGODB_URI");
            }
        }
    }

    @Test
    void without_a_profile_unset_services_are_embedded() throws Exception {
        try (DefaultCamelContext context = new DefaultCamelContext()) {
            context.getPropertiesComponent().setLocation(Application.locations(null));
            context.build();
            if (System.getenv("MONGODB_URI") == null) {
                assertThat(context.resolvePropertyPlaceholders("{{llmbatch.mongodb.uri}}")).isEqualTo("embedded");
            }
        }
    }
}
