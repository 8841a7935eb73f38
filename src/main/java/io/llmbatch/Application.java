package io.llmbatch;

import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import org.apache.camel.impl.DefaultCamelContext;
import org.apache.camel.main.Main;
import org.apache.camel.spi.PropertiesComponent;

/**
 * Entry point of {@code target/llm-batch.jar}: Camel Main reading {@code application.properties} and
 * {@code routes/*.camel.yaml} from the working directory (defaults packaged in the jar).
 *
 * <p>Arguments of the form {@code -Dkey=value} after {@code -jar} override any configuration key, like
 * JVM system properties before it.
 */
public final class Application {

    /** Camel takes each key from the first location that has it: the working directory's file, then the packaged one. */
    static final String PROPERTY_LOCATIONS
            = "file:application.properties;optional=true,classpath:application.properties;optional=true";

    private Application() {
    }

    /** With a profile (e.g. {@code prod}), {@code application-<profile>.properties} is read last and wins. */
    static String locations(String profile) {
        if (profile == null || profile.isBlank()) {
            return PROPERTY_LOCATIONS;
        }
        String p = profile.trim();
        // Camel reads a key from the first location that has it: the profile's file goes first, as Camel Main does
        return "file:application-" + p + ".properties;optional=true,classpath:application-" + p + ".properties;optional=true,"
               + PROPERTY_LOCATIONS;
    }

    /** A bare context only to read the settings the way the app does (never started, so nothing to stop). */
    static DefaultCamelContext settings(String locations, java.util.Properties overrides) {
        DefaultCamelContext context = new DefaultCamelContext();
        PropertiesComponent pc = context.getPropertiesComponent();
        pc.setLocation(locations);
        pc.setOverrideProperties(overrides);
        context.build();
        return context;
    }

    public static void main(String[] args) throws Exception {
        Main main = new Main();
        List<String> rest = new ArrayList<>();
        java.util.Properties overrides = new java.util.Properties();
        String profile = System.getProperty("camel.main.profile", System.getenv("CAMEL_MAIN_PROFILE"));
        for (String arg : args) {
            if (arg.startsWith("-D") && arg.indexOf('=') > 2) {
                int eq = arg.indexOf('=');
                String key = arg.substring(2, eq);
                main.addOverrideProperty(key, arg.substring(eq + 1));
                overrides.setProperty(key, arg.substring(eq + 1));
                if ("camel.main.profile".equals(key)) {
                    profile = arg.substring(eq + 1);
                }
            } else {
                rest.add(arg);
            }
        }
        if (!rest.isEmpty() && ("export".equals(rest.get(0)) || "redrive".equals(rest.get(0)))) {
            System.exit(JobsCommand.run(locations(profile), overrides, rest, System.out));
        }
        if (!rest.isEmpty() && ("results".equals(rest.get(0)) || "status".equals(rest.get(0)))) {
            if ("status".equals(rest.get(0))) {
                boolean once = rest.remove("--once");
                String job = JobsCommand.option(rest, "--job");
                System.exit(StatusCommand.run(locations(profile), overrides, rest.size() > 1 ? rest.get(1) : null, job, once, 2000,
                        System.out));
            }
            System.exit(ResultsCommand.run(locations(profile), overrides, rest.size() > 1 ? rest.get(1) : null, System.out));
        }
        main.setPropertyPlaceholderLocations(locations(profile));
        try {
            System.exit(main.run(rest.toArray(String[]::new)));
        } catch (RuntimeException e) {
            String missing = missingFile(e);
            if (missing == null) {
                // a failed start must end the process: the embedded parts (or any non-daemon thread) would keep a
                // half-started, deaf node alive
                e.printStackTrace();
                System.err.println("llm-batch cannot start: " + e.getMessage());
                System.exit(1);
            }
            // Camel's own report is a bare NoSuchFileException and a stack trace
            System.err.println("llm-batch cannot start: " + missing + " not found (working directory "
                               + Path.of("").toAbsolutePath() + "). Start it from the directory that holds routes/, prompts/ and "
                               + "application.properties, or point camel.main.routesIncludePattern at the routes, e.g. "
                               + "-Dcamel.main.routesIncludePattern=file:/opt/llm-batch/routes/*.camel.yaml");
            System.exit(2);
        }
    }

    /** The file a failed start could not find, or null when it failed for another reason. */
    static String missingFile(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof NoSuchFileException missing) {
                return missing.getFile();
            }
        }
        return null;
    }
}
