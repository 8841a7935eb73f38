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

    /**
     * One URL that may not even parse (a password with a space or a slash): everything between {@code ://} and the
     * last {@code @} is hidden, user included.
     */
    public static String maskWhole(String url) {
        int scheme = url.indexOf("://");
        int at = url.lastIndexOf('@');
        return scheme < 0 || at < scheme ? url : url.substring(0, scheme + 3) + "***" + url.substring(at);
    }
}
