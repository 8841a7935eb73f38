package io.llmbatch;

import java.util.ArrayList;
import java.util.List;

import org.apache.camel.main.Main;

/**
 * Entry point of {@code target/llm-batch.jar}: Camel Main reading {@code application.properties} and
 * {@code routes/*.camel.yaml} from the working directory (defaults packaged in the jar).
 *
 * <p>Arguments of the form {@code -Dkey=value} after {@code -jar} override any configuration key, like
 * JVM system properties before it.
 */
public final class Application {

    /** Packaged defaults first, then the working directory's file, which wins on every key it sets. */
    static final String PROPERTY_LOCATIONS
            = "classpath:application.properties;optional=true,file:application.properties;optional=true";

    private Application() {
    }

    public static void main(String[] args) throws Exception {
        Main main = new Main();
        main.setPropertyPlaceholderLocations(PROPERTY_LOCATIONS);
        List<String> rest = new ArrayList<>();
        for (String arg : args) {
            if (arg.startsWith("-D") && arg.indexOf('=') > 2) {
                int eq = arg.indexOf('=');
                main.addOverrideProperty(arg.substring(2, eq), arg.substring(eq + 1));
            } else {
                rest.add(arg);
            }
        }
        System.exit(main.run(rest.toArray(String[]::new)));
    }
}
