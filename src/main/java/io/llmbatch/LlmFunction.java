package io.llmbatch;

import org.apache.camel.CamelContext;
import org.apache.camel.CamelContextAware;
import org.apache.camel.spi.PropertiesFunction;

import io.llmbatch.llm.Backend;

/**
 * Property function over {@code llmbatch.llm.endpoints}: {@code {{llmbatch-llm:total-slots}}} is the sum of their
 * slots, {@code {{llmbatch-llm:twice-total-slots}}} twice that, the worker's default concurrency: while one task
 * waits for the broker to confirm its result, another one uses the LLM slot.
 */
public class LlmFunction implements PropertiesFunction, CamelContextAware {

    private CamelContext camelContext;

    @Override
    public String getName() {
        return "llmbatch-llm";
    }

    @Override
    public String apply(String remainder) {
        String what = remainder.trim();
        if (!"total-slots".equals(what) && !"twice-total-slots".equals(what)) {
            throw new IllegalArgumentException("{{llmbatch-llm:" + remainder + "}}: use total-slots or twice-total-slots");
        }
        var pc = camelContext.getPropertiesComponent();
        String endpoints = pc.resolveProperty("llmbatch.llm.endpoints").orElse("");
        String api = pc.resolveProperty("llmbatch.llm.api").orElse("chatglm");
        int slots = Backend.parseAll(endpoints, api).stream().mapToInt(Backend::slots).sum();
        return String.valueOf("total-slots".equals(what) ? slots : 2 * slots);
    }

    @Override
    public CamelContext getCamelContext() {
        return camelContext;
    }

    @Override
    public void setCamelContext(CamelContext camelContext) {
        this.camelContext = camelContext;
    }
}
