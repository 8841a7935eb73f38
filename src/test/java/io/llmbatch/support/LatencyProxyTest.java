package io.llmbatch.support;

import java.io.DataInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The slow-network proxy the WAN benchmark puts between workers and the broker: it delays, keeps order, and cuts. */
class LatencyProxyTest {

    @Test
    void bytes_arrive_whole_and_in_order_despite_jitter_and_a_cut_ends_the_connection() throws Exception {
        try (ServerSocket echo = new ServerSocket(0, 50, java.net.InetAddress.getLoopbackAddress());
             LatencyProxy proxy = LatencyProxy.start(new InetSocketAddress("127.0.0.1", 0),
                     new InetSocketAddress("127.0.0.1", echo.getLocalPort()), 5, 5, 0)) {
            Thread echoing = new Thread(() -> {
                try (Socket s = echo.accept(); InputStream in = s.getInputStream(); OutputStream out = s.getOutputStream()) {
                    in.transferTo(out);
                } catch (IOException e) {
                    // the cut
                }
            });
            echoing.start();
            try (Socket client = new Socket("127.0.0.1", proxy.port())) {
                byte[] sent = new byte[200_000];
                new java.util.Random(15).nextBytes(sent);
                OutputStream out = client.getOutputStream();
                for (int i = 0; i < sent.length; i += 1_000) { // many small writes, each delayed by its own jitter
                    out.write(sent, i, 1_000);
                }
                byte[] back = new byte[sent.length];
                new DataInputStream(client.getInputStream()).readFully(back);
                assertThat(back).isEqualTo(sent);

                proxy.cutAll();
                assertThatThrownBy(() -> {
                    out.write(1);
                    out.flush();
                    if (client.getInputStream().read() < 0) {
                        throw new IOException("end of stream");
                    }
                }).isInstanceOf(IOException.class);
                assertThat(proxy.accepted()).isEqualTo(1);
                assertThat(proxy.cuts()).isEqualTo(1);
            }
        }
    }
}
