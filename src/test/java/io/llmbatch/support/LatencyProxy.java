package io.llmbatch.support;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.Arrays;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A TCP proxy that behaves like a slow, unreliable network, for a kernel without {@code netem}: every chunk of bytes
 * is delivered {@code oneWayMs} ± {@code jitterMs} after it was read (in order: a chunk never overtakes the one before
 * it, as on a TCP stream), in both directions, so a round trip takes about twice {@code oneWayMs}. Every
 * {@code cutEveryMs} all connections are cut at once (both sides reset, as when a NAT box or a link drops). Run it on
 * its own with {@code java -cp target/test-classes io.llmbatch.support.LatencyProxy --listen 127.0.0.1:20401
 * --to 127.0.0.1:5672 --one-way-ms 50 --jitter-ms 10 --cut-every-ms 60000}.
 */
public final class LatencyProxy implements AutoCloseable {

    private final ServerSocket server;
    private final InetSocketAddress target;
    private final long oneWayNanos;
    private final long jitterNanos;
    private final Set<Socket> open = ConcurrentHashMap.newKeySet();
    private final ScheduledExecutorService cutter = Executors.newSingleThreadScheduledExecutor(r -> daemon(r, "proxy-cutter"));
    private final AtomicLong accepted = new AtomicLong();
    private final AtomicLong cuts = new AtomicLong();
    private final Set<Thread> threads = ConcurrentHashMap.newKeySet();
    private final Thread acceptor;
    private volatile boolean closed;

    private LatencyProxy(InetSocketAddress listen, InetSocketAddress target, long oneWayMs, long jitterMs, long cutEveryMs)
            throws IOException {
        this.target = target;
        this.oneWayNanos = TimeUnit.MILLISECONDS.toNanos(oneWayMs);
        this.jitterNanos = TimeUnit.MILLISECONDS.toNanos(jitterMs);
        server = new ServerSocket();
        server.setReuseAddress(true);
        server.bind(listen, 128);
        acceptor = daemon(this::accept, "proxy-accept-" + listen.getPort());
        acceptor.start();
        if (cutEveryMs > 0) {
            cutter.scheduleAtFixedRate(this::cutAll, cutEveryMs, cutEveryMs, TimeUnit.MILLISECONDS);
        }
    }

    /** Listens on {@code listen}, forwards to {@code target}; {@code cutEveryMs} 0 never cuts. */
    public static LatencyProxy start(InetSocketAddress listen, InetSocketAddress target, long oneWayMs, long jitterMs, long cutEveryMs)
            throws IOException {
        return new LatencyProxy(listen, target, oneWayMs, jitterMs, cutEveryMs);
    }

    public int port() {
        return server.getLocalPort();
    }

    /** Connections accepted so far. */
    public long accepted() {
        return accepted.get();
    }

    /** Times every open connection was cut. */
    public long cuts() {
        return cuts.get();
    }

    /** Resets every open connection now (both sides see the connection end). */
    public void cutAll() {
        cuts.incrementAndGet();
        for (Socket s : open) {
            reset(s);
        }
    }

    private void accept() {
        while (!closed) {
            try {
                Socket client = server.accept();
                if (closed) {
                    // accepted while close() ran: a listening socket closed under a blocked accept() goes on
                    // accepting until that accept returns (seen on a loaded machine: a reconnect got through)
                    reset(client);
                    break;
                }
                accepted.incrementAndGet();
                Socket upstream = new Socket();
                try {
                    upstream.connect(target, 5_000);
                } catch (IOException e) {
                    reset(client);
                    continue;
                }
                for (Socket s : new Socket[] { client, upstream }) {
                    s.setTcpNoDelay(true);
                    open.add(s);
                }
                pipe(client, upstream);
                pipe(upstream, client);
            } catch (IOException e) {
                if (!closed) {
                    System.err.println("proxy: accept failed: " + e);
                }
            }
        }
    }

    /** One direction: a reader stamps each chunk with its delivery time, a writer delivers it then. */
    private void pipe(Socket from, Socket to) {
        LinkedBlockingQueue<Object[]> chunks = new LinkedBlockingQueue<>();
        started(daemon(() -> {
            long last = 0;
            byte[] buf = new byte[64 * 1024];
            try (InputStream in = from.getInputStream()) {
                int n;
                while ((n = in.read(buf)) >= 0) {
                    long jitter = jitterNanos == 0 ? 0 : ThreadLocalRandom.current().nextLong(-jitterNanos, jitterNanos + 1);
                    last = Math.max(last, System.nanoTime() + oneWayNanos + jitter);
                    chunks.put(new Object[] { last, Arrays.copyOf(buf, n) });
                }
            } catch (IOException | InterruptedException e) {
                // reset or closed
            }
            chunks.add(new Object[] { 0L, null }); // end of stream, delivered after what came before it
        }, "proxy-read"));
        started(daemon(() -> {
            try (OutputStream out = to.getOutputStream()) {
                while (true) {
                    Object[] chunk = chunks.take();
                    if (chunk[1] == null) {
                        break;
                    }
                    long wait = (long) chunk[0] - System.nanoTime();
                    if (wait > 0) {
                        TimeUnit.NANOSECONDS.sleep(wait);
                    }
                    out.write((byte[]) chunk[1]);
                    out.flush();
                }
            } catch (IOException | InterruptedException e) {
                // reset or closed
            } finally {
                reset(from);
                reset(to);
            }
        }, "proxy-write"));
    }

    private void started(Thread t) {
        threads.add(t);
        t.start();
    }

    private void reset(Socket s) {
        open.remove(s);
        try {
            s.setSoLinger(true, 0); // RST, not FIN: the connection is gone, not closed politely
            s.close();
        } catch (IOException e) {
            // already closed
        }
    }

    private Thread daemon(Runnable r, String name) {
        Thread t = new Thread(() -> {
            try {
                r.run();
            } finally {
                threads.remove(Thread.currentThread());
            }
        }, name);
        t.setDaemon(true);
        return t;
    }

    /**
     * Stops accepting and resets every connection, and returns only when no connection can get through any more: a
     * socket closed while another thread blocks on it is really closed (and the peer told) only when that thread
     * returns, so the threads are awaited (up to 10 s).
     */
    @Override
    public void close() throws IOException {
        closed = true;
        cutter.shutdownNow();
        server.close();
        try {
            acceptor.join(10_000);
            open.forEach(this::reset);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            for (Thread t : threads) {
                t.join(Math.max(1, TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime())));
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** {@code --listen host:port --to host:port [--one-way-ms 50] [--jitter-ms 10] [--cut-every-ms 60000]}; runs until killed. */
    public static void main(String[] args) throws Exception {
        Map<String, String> o = new java.util.HashMap<>();
        for (int i = 0; i + 1 < args.length; i += 2) {
            o.put(args[i].replaceFirst("^--", ""), args[i + 1]);
        }
        LatencyProxy p = start(address(o.get("listen")), address(o.get("to")), Long.parseLong(o.getOrDefault("one-way-ms", "50")),
                Long.parseLong(o.getOrDefault("jitter-ms", "10")), Long.parseLong(o.getOrDefault("cut-every-ms", "0")));
        System.out.println("proxy " + o.get("listen") + " -> " + o.get("to") + " one way " + o.getOrDefault("one-way-ms", "50")
                           + " ms +- " + o.getOrDefault("jitter-ms", "10") + ", cut every " + o.getOrDefault("cut-every-ms", "0") + " ms");
        Thread.currentThread().join();
        p.close();
    }

    private static InetSocketAddress address(String hostPort) throws IOException {
        int colon = hostPort.lastIndexOf(':');
        return new InetSocketAddress(InetAddress.getByName(hostPort.substring(0, colon)), Integer.parseInt(hostPort.substring(colon + 1)));
    }
}
