package io.llmbatch.rabbit;

import java.util.regex.Pattern;

/** Broker URLs as they may appear in logs and errors: never with their password. */
public final class RabbitUrls {

    private static final Pattern USER_INFO = Pattern.compile("(amqps?://[^:/@]*):[^@/]*@");

    private RabbitUrls() {
    }

    /** {@code amqp://user:secret@host/} becomes {@code amqp://user:***@host/}. */
    public static String mask(String url) {
        return url == null ? null : USER_INFO.matcher(url).replaceAll("$1:***@");
    }
}
