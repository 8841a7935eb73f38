package io.llmbatch.cluster;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import io.llmbatch.support.RabbitCluster;

/** Who is connected where, from the client side: the established TCP sockets of each process to the cluster's nodes. */
final class Probe {

    private static final Pattern SS = Pattern.compile("\\S+:(\\d+)\\s+\\S+:(\\d+)\\s+users:.*?pid=(\\d+),");

    /** A client socket: its own port and the node's AMQP port. */
    record Socket(int localPort, int remotePort) {
    }

    /** The state just before a fault: each role's sockets, the queues' consumers, documents stored, the task queue's leader. */
    record Snapshot(Map<String, List<Socket>> sockets, int taskConsumers, int resultConsumers, long stored, String leader) {
    }

    private Probe() {
    }

    /** Established sockets to any node of the cluster, by the pid of the process that holds them ({@code ss -tnp}). */
    static Map<Long, List<Socket>> sockets(RabbitCluster cluster) throws Exception {
        Process p = new ProcessBuilder("ss", "-tnpH", "state", "established").redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        p.waitFor(10, TimeUnit.SECONDS);
        Map<Long, List<Socket>> byPid = new HashMap<>();
        for (String line : out.split("\n")) {
            Matcher m = SS.matcher(line);
            if (m.find() && cluster.nodeOfPort(Integer.parseInt(m.group(2))) > 0) {
                byPid.computeIfAbsent(Long.parseLong(m.group(3)), k -> new ArrayList<>())
                        .add(new Socket(Integer.parseInt(m.group(1)), Integer.parseInt(m.group(2))));
            }
        }
        return byPid;
    }
}
