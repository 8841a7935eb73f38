package io.llmbatch;

import java.util.regex.Pattern;

/** Connection URLs as they may appear in logs and errors: never with their password or a secret of their query. */
public final class Urls {

    private static final Pattern USER_INFO = Pattern.compile("([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\\s]*):[^@/\\s]*@");
    /**
     * Words that make a query parameter secret wherever they appear in its name, any case: MongoDB's
     * {@code tlsCertificateKeyFilePassword} and {@code authMechanismProperties} (AWS session tokens), {@code password=},
     * {@code secret}, {@code token} ({@code access_token}), {@code key} ({@code apiKey}), Azure SAS ({@code sas},
     * {@code sig}), {@code credential}. Broad on purpose: a masked harmless value costs less than a leaked secret.
     */
    static final String SECRET_WORDS = "password|passwd|pwd|secret|token|key|sas|sig|credential|authmechanismproperties";
    private static final Pattern SECRET_PARAM = Pattern.compile(
            "([?&;][^=&;#\\s'\"]*(?:" + SECRET_WORDS + ")[^=&;#\\s'\"]*=)[^&;#\\s'\"]*", Pattern.CASE_INSENSITIVE);

    private Urls() {
    }

    /**
     * {@code amqp://user:secret@host/} becomes {@code amqp://user:***@host/} (also mongodb://, amqps://, ...), and
     * {@code ?tlsCertificateKeyFilePassword=x} becomes {@code ?tlsCertificateKeyFilePassword=***} (see {@link #SECRET_WORDS}),
     * wherever they are in the text.
     */
    public static String mask(String text) {
        return text == null ? null : SECRET_PARAM.matcher(USER_INFO.matcher(text).replaceAll("$1:***@")).replaceAll("$1***");
    }

    /**
     * One URL that may not even parse (a password with a space or a slash): everything between {@code ://} and the
     * last {@code @} is hidden, user included.
     */
    public static String maskWhole(String url) {
        int scheme = url.indexOf("://");
        int at = url.lastIndexOf('@');
        String masked = scheme < 0 || at < scheme ? url : url.substring(0, scheme + 3) + "***" + url.substring(at);
        return SECRET_PARAM.matcher(masked).replaceAll("$1***");
    }

    /**
     * Whether a Host header (name and optional port) names this machine's loopback: localhost, 127.x.x.x or [::1]. A
     * server on loopback asked under any other name is reached by a page that made its own name resolve to 127.0.0.1
     * (DNS rebinding).
     */
    public static boolean isLoopbackName(String hostHeader) {
        String name = hostHeader.startsWith("[") ? hostHeader.substring(0, hostHeader.indexOf(']') + 1)
                : hostHeader.replaceFirst(":\\d*$", "");
        return name.equalsIgnoreCase("localhost") || name.equals("[::1]") || name.equals("::1") || name.matches("127(\\.\\d{1,3}){3}");
    }
}
