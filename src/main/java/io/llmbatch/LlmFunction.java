package io.llmbatch;

import org.apache.camel.CamelContext;
import org.apache.camel.CamelContextAware;
import org.apache.camel.spi.PropertiesFunction;

import io.llmbatch.llm.Backend;

/**
 * Property function {@code {{llmbatch-llm:total-slots}}}: the sum of the slots of {@code llmbatch.llm.endpoints},
 * the worker's default concurrency (one task in flight per slot the LLM servers offer).
 */
public class LlmFunction implements PropertiesFunction, CamelContextAware {

    private CamelContext camelContext;

    @Override
    public String getName() {
        return "llmbatch-llm";
    }

    @Override
    public String apply(String remainder) {
        if (!"total-slots".equals(remainder.trim())) {
            throw new IllegalArgumentException("{{llmbatch-llm:" + remainder + "}}: only total-slots is known");
        }
        var pc = camelContext.getPropertiesComponent();
        String endpoints = pc.resolveProperty("llmbatch.llm.endpoints").orElse("");
        String api = pc.resolveProperty("llmbatch.llm.api").orElse("chatglm");
        return String.valueOf(Backend.parseAll(endpoints, api).stream().mapToInt(Backend::slots).sum());
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
