package io.llmbatch.support;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Predicate;

import org.apache.logging.log4j.Level;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.core.LogEvent;
import org.apache.logging.log4j.core.LoggerContext;
import org.apache.logging.log4j.core.appender.AbstractAppender;
import org.apache.logging.log4j.core.config.Configuration;
import org.apache.logging.log4j.core.config.LoggerConfig;
import org.apache.logging.log4j.core.config.Property;

/**
 * Captures the log events that reach the console appender, with the shipped log4j2.properties and its filters in
 * force (the appender sits beside the console one on every logger that has an appender). For the tests where a log
 * line is the behaviour under test: an operator's only trace of a broken consumer.
 */
public final class LogEvents extends AbstractAppender {

    private final List<LogEvent> events = new CopyOnWriteArrayList<>();

    private LogEvents() {
        super("test-capture", null, null, true, Property.EMPTY_ARRAY);
    }

    /** Starts capturing from now on. */
    public static LogEvents capture() {
        LogEvents appender = new LogEvents();
        appender.start();
        LoggerContext context = (LoggerContext) LogManager.getContext(false);
        Configuration config = context.getConfiguration();
        for (LoggerConfig logger : config.getLoggers().values()) {
            if (!logger.getAppenders().isEmpty()) {
                // same level and filters as the console appender of that logger
                logger.addAppender(appender, null, logger.getAppenderRefs().isEmpty() ? null : logger.getAppenderRefs().get(0).getFilter());
            }
        }
        config.getRootLogger().addAppender(appender, null, null);
        context.updateLoggers();
        return appender;
    }

    @Override
    public void append(LogEvent event) {
        events.add(event.toImmutable());
    }

    /** Events at WARN or worse whose message or exception text matches. */
    public List<LogEvent> warnings(Predicate<String> text) {
        return events.stream().filter(e -> e.getLevel().isMoreSpecificThan(Level.WARN))
                .filter(e -> text.test(describe(e))).toList();
    }

    public List<LogEvent> all() {
        return List.copyOf(events);
    }

    /** The message, the logger and the exception chain's messages: what an operator reads. */
    public static String describe(LogEvent e) {
        StringBuilder s = new StringBuilder(e.getLoggerName()).append(' ').append(e.getMessage().getFormattedMessage());
        for (Throwable t = e.getThrown(); t != null; t = t.getCause()) {
            s.append(" | ").append(t);
        }
        return s.toString();
    }

    public void stopCapturing() {
        LoggerContext context = (LoggerContext) LogManager.getContext(false);
        for (LoggerConfig logger : context.getConfiguration().getLoggers().values()) {
            logger.removeAppender(getName());
        }
        context.getConfiguration().getRootLogger().removeAppender(getName());
        context.updateLoggers();
        stop();
    }
}
