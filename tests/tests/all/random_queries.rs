//! The seeded random aggregate queries of the corpus ([`qilin_tests::random_queries`]; seed
//! printed, `QILIN_TEST_SEED` replays another) sent to a local `qilin-server` through the Rust
//! Flight SQL client: each equals the oracle or is refused with InvalidArgument naming what no
//! cuboid covers; refused ones equal the oracle on a server with pushdown on. The same corpus
//! runs in-process (`query_engine`), on HBase (`hbase_ssb`) and on a cluster (`cluster`).

use qilin_tests::corpus::{check_random_queries, RANDOM_QUERIES};
use qilin_tests::server::SsbServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_aggregate_queries_match_the_oracle() {
    // Without a table index, so that what no cuboid covers is refused, not answered from it.
    let ssb = SsbServer::start_without_table_index("").await;
    let pushdown =
        SsbServer::start_without_table_index("kylin.query.pushdown.enabled=true\n").await;
    let ctx = qilin_tests::oracle(&ssb.source).await;
    check_random_queries(
        "local server",
        &mut ssb.client().await,
        &mut pushdown.client().await,
        &ctx,
        RANDOM_QUERIES,
    )
    .await;
}
