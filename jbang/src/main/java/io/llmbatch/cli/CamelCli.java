package io.llmbatch.cli;

import org.apache.camel.dsl.jbang.core.commands.CamelJBangMain;

/**
 * The {@code camel} command of Camel JBang, run from a class path Maven resolved (bin/camel), without the jbang
 * launcher: camel-jbang-core has no main method of its own.
 */
public final class CamelCli {

    private CamelCli() {
    }

    public static void main(String[] args) {
        CamelJBangMain.run(args);
    }
}
