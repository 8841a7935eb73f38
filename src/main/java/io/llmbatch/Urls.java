package io.llmbatch;

import java.util.regex.Pattern;

/** Connection URLs as they may appear in logs and errors: never with their password. */
public final class Urls {

    private static final Pattern USER_INFO = Pattern.compile("([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\\s]*):[^@/\\s]*@");

    private Urls() {
    }

    /** {@code amqp://user:secret@host/} becomes {@code amqp://user:***@host/}; also mongodb://, amqps://, ... */
    public static String mask(String text) {
        return text == null ? null : USER_INFO.matcher(text).replaceAll("$1:***@");
    }
}
