package io.llmbatch;

import java.net.InetSocketAddress;
import java.net.ServerSocket;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThatThrownBy;

class PortInUseTest {

    @Test
    void a_taken_http_port_stops_the_start_with_the_setting_to_change() throws Exception {
        try (ServerSocket taken = new ServerSocket()) {
            taken.bind(new InetSocketAddress("127.0.0.1", 0));
            assertThatThrownBy(() -> Wiring.requirePortFree("127.0.0.1", taken.getLocalPort(), "camel.server.port"))
                    .hasMessageContaining("cannot serve HTTP on 127.0.0.1:" + taken.getLocalPort())
                    .hasMessageContaining("-Dcamel.server.port");
        }
    }
}
