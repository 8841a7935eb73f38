package io.llmbatch.mongo;

import java.util.Locale;
import java.util.concurrent.TimeUnit;

import com.mongodb.ConnectionString;
import com.mongodb.WriteConcern;

/**
 * {@code llmbatch.mongodb.write-concern}: how durable a bulk write must be before its results are acknowledged to
 * the broker. A comma list: {@code w=majority|<n>|<tag>}, {@code j=true|false} (journal), {@code wtimeout=<ms>};
 * a bare first item is {@code w} ({@code majority}, {@code 1}, {@code 2}). {@code j} left out means true (false for
 * {@code w=0}); {@code wtimeout} left out means wait as long as it takes. When the MongoDB URI sets a write concern
 * ({@code w}, {@code journal} or {@code wtimeoutMS}) the URI wins: it is the deployment's own word, shared by every
 * tool that connects with it.
 */
public final class WriteConcerns {

    private WriteConcerns() {
    }

    /** The write concern in force and where it came from, for the start-up log line. */
    public record Chosen(WriteConcern writeConcern, String source) {
        public String describe() {
            return WriteConcerns.describe(writeConcern) + " (" + source + ")";
        }
    }

    public static Chosen choose(String setting, ConnectionString uri) {
        WriteConcern fromUri = uri.getWriteConcern();
        if (fromUri != null && !fromUri.isServerDefault()) {
            return new Chosen(fromUri, "from the MongoDB URI");
        }
        return new Chosen(parse(setting), "llmbatch.mongodb.write-concern");
    }

    public static WriteConcern parse(String setting) {
        String w = null;
        Boolean journal = null;
        Long wtimeout = null;
        String[] items = setting == null ? new String[0] : setting.split(",");
        for (int i = 0; i < items.length; i++) {
            String item = items[i].trim();
            if (item.isEmpty()) {
                continue;
            }
            int eq = item.indexOf('=');
            String key = eq < 0 ? (i == 0 ? "w" : item) : item.substring(0, eq).trim().toLowerCase(Locale.ROOT);
            String value = eq < 0 ? item : item.substring(eq + 1).trim();
            switch (key) {
                case "w" -> w = value;
                case "j", "journal" -> {
                    if (!value.equalsIgnoreCase("true") && !value.equalsIgnoreCase("false")) {
                        throw invalid(setting, "j must be true or false");
                    }
                    journal = Boolean.valueOf(value.toLowerCase(Locale.ROOT));
                }
                case "wtimeout", "wtimeoutms" -> {
                    try {
                        wtimeout = Long.valueOf(value);
                    } catch (NumberFormatException e) {
                        throw invalid(setting, "wtimeout must be a number of milliseconds");
                    }
                    if (wtimeout < 0) {
                        throw invalid(setting, "wtimeout must not be negative");
                    }
                }
                default -> throw invalid(setting, "unknown item '" + item + "' (w=, j=, wtimeout=)");
            }
        }
        if (w == null || w.isEmpty()) {
            throw invalid(setting, "w is missing (majority, a number of members, or a tag set name)");
        }
        WriteConcern wc;
        if (w.matches("\\d+")) {
            wc = new WriteConcern(Integer.parseInt(w));
        } else {
            wc = new WriteConcern(w.equalsIgnoreCase("majority") ? "majority" : w);
        }
        boolean unacknowledged = "0".equals(w);
        if (unacknowledged && Boolean.TRUE.equals(journal)) {
            throw invalid(setting, "w=0 (no acknowledgement) cannot ask for the journal");
        }
        wc = wc.withJournal(journal == null ? !unacknowledged : journal);
        if (wtimeout != null) {
            wc = wc.withWTimeout(wtimeout, TimeUnit.MILLISECONDS);
        }
        return wc;
    }

    public static String describe(WriteConcern wc) {
        Integer timeout = wc.getWTimeout(TimeUnit.MILLISECONDS);
        return "w=" + (wc.getWObject() == null ? "default" : wc.getWObject()) + ",j=" + Boolean.TRUE.equals(wc.getJournal())
               + (timeout == null ? "" : ",wtimeout=" + timeout);
    }

    private static IllegalArgumentException invalid(String setting, String why) {
        return new IllegalArgumentException("llmbatch.mongodb.write-concern=" + setting + ": " + why
                                            + "; e.g. w=majority,j=true,wtimeout=30000 or 1");
    }
}
