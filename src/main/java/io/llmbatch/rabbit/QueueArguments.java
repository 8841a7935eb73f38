package io.llmbatch.rabbit;

import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.function.Function;

/**
 * The arguments llm-batch declares its queues with, from {@code llmbatch.queue.type}: {@code classic} (none, as
 * the seed's queues) or {@code quorum} (replicated on a cluster) where a message delivered more than
 * {@code llmbatch.queue.delivery-limit} times - a task that kills or stalls every worker it reaches - is moved
 * to its dead-letter queue by the broker (at-least-once) instead of looping. Publishers and consumers declare
 * with the same arguments; RabbitMQ refuses a declaration that differs from the existing queue.
 */
public final class QueueArguments implements Function<String, Map<String, Object>> {

    private final boolean quorum;
    private final int deliveryLimit;
    private final Map<String, String> deadLetterQueues;

    /** @param deadLetterQueues each main queue and its dead-letter queue */
    public QueueArguments(String type, int deliveryLimit, Map<String, String> deadLetterQueues) {
        String t = type == null ? "" : type.trim().toLowerCase(Locale.ROOT);
        if (!t.equals("classic") && !t.equals("quorum")) {
            throw new IllegalArgumentException("llmbatch.queue.type must be classic or quorum, was: " + type);
        }
        if (deliveryLimit < 1) {
            throw new IllegalArgumentException("llmbatch.queue.delivery-limit must be at least 1, was: " + deliveryLimit);
        }
        this.quorum = t.equals("quorum");
        this.deliveryLimit = deliveryLimit;
        this.deadLetterQueues = Map.copyOf(deadLetterQueues);
    }

    public boolean quorum() {
        return quorum;
    }

    /** The x-arguments of {@code queue}'s declaration. */
    @Override
    public Map<String, Object> apply(String queue) {
        Map<String, Object> args = new LinkedHashMap<>();
        if (!quorum) {
            return args;
        }
        args.put("x-queue-type", "quorum");
        String deadLetterQueue = deadLetterQueues.get(queue);
        if (deadLetterQueue != null) {
            args.put("x-delivery-limit", deliveryLimit);
            args.put("x-dead-letter-exchange", "");
            args.put("x-dead-letter-routing-key", deadLetterQueue);
            args.put("x-dead-letter-strategy", "at-least-once");
            args.put("x-overflow", "reject-publish"); // what at-least-once dead-lettering requires
        }
        return args;
    }

    /** The same declaration for a spring-rabbitmq consumer endpoint ({@code args: "#..."}): durable, same arguments. */
    public Map<String, Object> forConsumer(String queue) {
        Map<String, Object> args = new LinkedHashMap<>();
        args.put("queue.durable", true);
        apply(queue).forEach((k, v) -> args.put("queue." + k, v));
        return args;
    }
}
