package io.llmbatch.rabbit;

import com.rabbitmq.client.BlockedListener;
import com.rabbitmq.client.Channel;
import org.aopalliance.intercept.MethodInvocation;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.amqp.AmqpException;
import org.springframework.amqp.rabbit.connection.ChannelProxy;
import org.springframework.amqp.rabbit.connection.Connection;
import org.springframework.amqp.rabbit.connection.ConnectionFactory;
import org.springframework.amqp.rabbit.connection.ConnectionListener;
import org.springframework.retry.interceptor.RetryOperationsInterceptor;

/**
 * Acknowledgements go to the channel a delivery came on, or nowhere. Spring's caching connection factory hands
 * consumers a channel <em>proxy</em>; after the connection is lost it points that proxy at a fresh channel of the new
 * connection. A worker that finishes a task it received before the loss then acknowledges an old delivery tag on a
 * channel that never delivered it: the broker closes that channel ({@code PRECONDITION_FAILED - unknown delivery tag}),
 * requeueing what it held, or, when the number happens to match a delivery of the new channel, acknowledges a task
 * that was not done. Meanwhile the broker has already requeued everything of the lost channel, so the deliveries still
 * buffered in the client for it would only be done twice.
 * <ul>
 * <li>{@link #forListeners} gives listener containers the real channel behind the proxy: an acknowledgement for a
 * closed channel fails instead of travelling to another one;
 * <li>{@link #skipDeliveriesOfClosedChannels} does not process a delivery whose channel is already closed (it is back
 * in the queue).
 * </ul>
 */
public final class DeliveryChannels {

    private static final Logger LOG = LoggerFactory.getLogger(DeliveryChannels.class);

    private DeliveryChannels() {
    }

    /** The connection factory for the consumers (listener containers): every channel is the real one, never a proxy. */
    public static ConnectionFactory forListeners(ConnectionFactory cached) {
        return new ConnectionFactory() {
            @Override
            public Connection createConnection() throws AmqpException {
                return new RealChannels(cached.createConnection());
            }

            @Override
            public String getHost() {
                return cached.getHost();
            }

            @Override
            public int getPort() {
                return cached.getPort();
            }

            @Override
            public String getVirtualHost() {
                return cached.getVirtualHost();
            }

            @Override
            public String getUsername() {
                return cached.getUsername();
            }

            @Override
            public void addConnectionListener(ConnectionListener listener) {
                cached.addConnectionListener(listener);
            }

            @Override
            public boolean removeConnectionListener(ConnectionListener listener) {
                return cached.removeConnectionListener(listener);
            }

            @Override
            public void clearConnectionListeners() {
                cached.clearConnectionListeners();
            }

            @Override
            public boolean isPublisherConfirms() {
                return cached.isPublisherConfirms();
            }

            @Override
            public boolean isPublisherReturns() {
                return cached.isPublisherReturns();
            }

            @Override
            public boolean isSimplePublisherConfirms() {
                return cached.isSimplePublisherConfirms();
            }

            @Override
            public ConnectionFactory getPublisherConnectionFactory() {
                return cached.getPublisherConnectionFactory();
            }
        };
    }

    /** The retry policy of a consuming route, first checking that the delivery's channel is still open. */
    public static RetryOperationsInterceptor skipDeliveriesOfClosedChannels(RetryOperationsInterceptor retry) {
        return new RetryOperationsInterceptor() {
            @Override
            public Object invoke(MethodInvocation invocation) throws Throwable {
                Object[] args = invocation.getArguments(); // ContainerDelegate.invokeListener(Channel, Object data)
                if (args.length > 0 && args[0] instanceof Channel channel && !channel.isOpen()) {
                    LOG.debug("Delivery of a closed channel not processed: the broker has requeued it");
                    return null;
                }
                return retry.invoke(invocation);
            }
        };
    }

    /** A connection whose channels are the targets of the cached proxies. */
    private record RealChannels(Connection connection) implements Connection {
        @Override
        public Channel createChannel(boolean transactional) throws AmqpException {
            Channel channel = connection.createChannel(transactional);
            return channel instanceof ChannelProxy proxy ? proxy.getTargetChannel() : channel;
        }

        @Override
        public void close() throws AmqpException {
            connection.close();
        }

        @Override
        public boolean isOpen() {
            return connection.isOpen();
        }

        @Override
        public int getLocalPort() {
            return connection.getLocalPort();
        }

        @Override
        public void addBlockedListener(BlockedListener listener) {
            connection.addBlockedListener(listener);
        }

        @Override
        public boolean removeBlockedListener(BlockedListener listener) {
            return connection.removeBlockedListener(listener);
        }

        @Override
        public com.rabbitmq.client.Connection getDelegate() {
            return connection.getDelegate();
        }

        @Override
        public void closeThreadChannel() {
            connection.closeThreadChannel();
        }
    }
}
