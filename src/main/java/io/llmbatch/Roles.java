package io.llmbatch;

import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;

/**
 * The roles a process plays ({@code llmbatch.roles}) and the routes each one owns.
 *
 * <p>A route belongs to a role by the prefix of its id; the prefixes become Camel's route filter so a
 * machine loads (and reloads) only its own routes, whichever YAML files sit in {@code routes/}.
 */
public record Roles(Set<String> names) {

    public static final String INGEST = "ingest";
    public static final String WORKER = "worker";
    public static final String COLLECTOR = "collector";

    /** Route id patterns per role; the worker also owns the LLM gateway routes. */
    private static final Map<String, List<String>> ROUTE_IDS = Map.of(
            INGEST, List.of("ingest-*"),
            WORKER, List.of("worker-*", "llm-*"),
            COLLECTOR, List.of("collector-*"));

    private static final List<String> KNOWN = List.of(INGEST, WORKER, COLLECTOR);

    public static Roles parse(String value) {
        if (value == null || value.isBlank()) {
            return new Roles(new LinkedHashSet<>(KNOWN));
        }
        Set<String> names = new LinkedHashSet<>();
        for (String part : value.split(",")) {
            String name = part.trim().toLowerCase(Locale.ROOT);
            if (name.isEmpty()) {
                continue;
            }
            if (!KNOWN.contains(name)) {
                throw new IllegalArgumentException("llmbatch.roles: unknown role '" + part.trim()
                                                   + "' (known roles: " + String.join(", ", KNOWN) + ")");
            }
            names.add(name);
        }
        if (names.isEmpty()) {
            throw new IllegalArgumentException("llmbatch.roles: no role given (known roles: "
                                               + String.join(", ", KNOWN) + ")");
        }
        return new Roles(names);
    }

    public boolean has(String role) {
        if (!KNOWN.contains(role)) {
            throw new IllegalArgumentException("unknown role '" + role + "' (known roles: " + String.join(", ", KNOWN) + ")");
        }
        return names.contains(role);
    }

    /** Comma list of route id patterns for {@code camel.main.routeFilterIncludePattern}. */
    public String routeFilter() {
        return names.stream().flatMap(n -> ROUTE_IDS.get(n).stream()).collect(Collectors.joining(","));
    }

    @Override
    public String toString() {
        return String.join(",", names);
    }
}
