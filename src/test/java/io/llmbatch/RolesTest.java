package io.llmbatch;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class RolesTest {

    @Test
    void default_is_every_role() {
        Roles all = Roles.parse("");
        assertThat(all.has(Roles.INGEST) && all.has(Roles.WORKER) && all.has(Roles.COLLECTOR)).isTrue();
        assertThat(all.routeFilter()).isEqualTo("ingest-*,worker-*,llm-*,collector-*");
    }

    @Test
    void roles_select_their_route_ids() {
        Roles r = Roles.parse(" Worker , collector");
        assertThat(r.has(Roles.INGEST)).isFalse();
        assertThat(r.routeFilter()).isEqualTo("worker-*,llm-*,collector-*");
    }

    @Test
    void unknown_role_is_a_clear_error() {
        assertThatThrownBy(() -> Roles.parse("ingest,wroker"))
                .hasMessage("llmbatch.roles: unknown role 'wroker' (known roles: ingest, worker, collector)");
    }
}
