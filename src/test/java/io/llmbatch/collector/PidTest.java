package io.llmbatch.collector;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

class PidTest {

    /** Vectors computed independently: Python hashlib.md5((company + model_name).encode("utf-8")).hexdigest(). */
    @Test
    void pid_is_the_seeds_md5_of_company_and_model_name() {
        assertThat(Collector.pid("北京测试科技有限公司", "chatglm2_6b_int4")).isEqualTo("be853d9ee95094af6c2e706d2bff3c9c");
        assertThat(Collector.pid("上海示例贸易有限公司 (分公司)", "chatglm2_6b_int4")).isEqualTo("267893089a13d53aeae3587a378d8d64");
        assertThat(Collector.pid("Acme Ltd", "chatglm2_6b_int4")).isEqualTo("9e468e9cacb0238a5ec85eee83ee436d");
        assertThat(Collector.pid("Acme Ltd", "qwen2.5-7b")).isEqualTo("eb05ac0a6f100d61ca5fa31ce8306905");
    }
}
