package io.llmbatch.collector;

import java.util.List;

import com.rabbitmq.client.Channel;
import org.aopalliance.intercept.MethodInvocation;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.amqp.core.Message;
import org.springframework.retry.interceptor.RetryOperationsInterceptor;

/**
 * The listener advice of the collector's consumer ({@code retry: "#collectorNackOnEscape"}): with MANUAL
 * acknowledgement Spring's listener container settles nothing when the listener throws (it nacks only in AUTO
 * mode), so a result whose processing escapes the route would stay unacknowledged until the broker's consumer
 * timeout (30 min by default) closes the channel. Here any exception that escapes sends the delivery back to the
 * queue at once ({@code basic.nack} with requeue on the delivery's own channel). The route settles a delivery only
 * as its last step (the dead-letter publish, then the ack), so what escapes was never settled.
 */
public final class NackOnEscape extends RetryOperationsInterceptor {

    private static final Logger LOG = LoggerFactory.getLogger(NackOnEscape.class);

    @Override
    public Object invoke(MethodInvocation invocation) throws Throwable {
        try {
            return invocation.proceed();
        } catch (Exception e) {
            // ContainerDelegate.invokeListener(Channel channel, Object data): data is one message or a batch
            Object[] args = invocation.getArguments();
            if (args.length < 2 || !(args[0] instanceof Channel channel)) {
                throw e;
            }
            List<?> messages = args[1] instanceof List<?> batch ? batch : List.of(args[1]);
            for (Object m : messages) {
                if (m instanceof Message message) {
                    long tag = message.getMessageProperties().getDeliveryTag();
                    try {
                        channel.basicNack(tag, false, true);
                    } catch (Exception nackFailed) {
                        LOG.error("Cannot requeue a result after a failure (it returns when its channel closes): {}", nackFailed.toString());
                        continue;
                    }
                    LOG.warn("A result failed in the collector route and is back in the queue ({}): {}",
                            message.getMessageProperties().getConsumerQueue(), rootCause(e));
                }
            }
            return null; // settled: nothing left for the container to do
        }
    }

    private static String rootCause(Throwable e) {
        Throwable t = e;
        while (t.getCause() != null && t.getCause() != t) {
            t = t.getCause();
        }
        return t.toString();
    }
}
