package io.llmbatch.mongo;

import java.util.concurrent.TimeUnit;

import com.mongodb.ConnectionString;
import com.mongodb.WriteConcern;
import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** llmbatch.mongodb.write-concern: its format, its default, and the MongoDB URI winning when it sets one. */
class WriteConcernsTest {

    @Test
    void the_default_waits_for_a_majority_and_the_journal_with_a_bound() {
        WriteConcern wc = WriteConcerns.parse("w=majority,j=true,wtimeout=30000");
        assertThat(wc.getWString()).isEqualTo("majority");
        assertThat(wc.getJournal()).isTrue();
        assertThat(wc.getWTimeout(TimeUnit.MILLISECONDS)).isEqualTo(30000);
    }

    @Test
    void a_bare_w_is_accepted_and_implies_the_journal() {
        assertThat(WriteConcerns.parse("majority")).isEqualTo(WriteConcern.MAJORITY.withJournal(true));
        assertThat(WriteConcerns.parse("1")).isEqualTo(WriteConcern.W1.withJournal(true));
        assertThat(WriteConcerns.parse("w=2, j=false")).isEqualTo(WriteConcern.W2.withJournal(false));
        assertThat(WriteConcerns.parse("w=0")).isEqualTo(WriteConcern.UNACKNOWLEDGED.withJournal(false));
        assertThat(WriteConcerns.parse("w=dc2,journal=true,wtimeoutMS=500").getWString()).isEqualTo("dc2");
    }

    @Test
    void a_setting_that_makes_no_sense_stops_the_start_saying_why() {
        assertThatThrownBy(() -> WriteConcerns.parse("w=majority,j=maybe")).hasMessageContaining("j must be true or false");
        assertThatThrownBy(() -> WriteConcerns.parse("w=majority,wtimeout=soon")).hasMessageContaining("wtimeout");
        assertThatThrownBy(() -> WriteConcerns.parse("w=0,j=true")).hasMessageContaining("w=0");
        assertThatThrownBy(() -> WriteConcerns.parse("j=true")).hasMessageContaining("w is missing");
        assertThatThrownBy(() -> WriteConcerns.parse("w=1,fsync=true")).hasMessageContaining("unknown item 'fsync=true'");
    }

    @Test
    void the_uri_wins_when_it_sets_a_write_concern() {
        String setting = "w=majority,j=true,wtimeout=30000";
        WriteConcerns.Chosen plain = WriteConcerns.choose(setting, new ConnectionString("mongodb://db.example.com/"));
        assertThat(plain.writeConcern()).isEqualTo(WriteConcerns.parse(setting));
        assertThat(plain.source()).isEqualTo("llmbatch.mongodb.write-concern");

        WriteConcerns.Chosen fromUri = WriteConcerns.choose(setting, new ConnectionString("mongodb://db.example.com/?w=1&journal=false"));
        assertThat(fromUri.writeConcern()).isEqualTo(WriteConcern.W1.withJournal(false));
        assertThat(fromUri.source()).isEqualTo("from the MongoDB URI");
        assertThat(WriteConcerns.choose(setting, new ConnectionString("mongodb://h/?wtimeoutMS=100")).source()).isEqualTo("from the MongoDB URI");
    }
}
