//! Base-cuboid scans (issue 19): queries whose dimensions cross aggregation groups read the
//! base cuboid; their answers equal the oracle's, and a filter on a DERIVED column (a `dates`
//! column the cube derives through `lo_orderdate`) prunes the base cuboid's blocks through
//! the foreign key, as EXPLAIN's `blocks` row shows.

use qilin_tests::compare::{compare, explain_text, oracle_query, run_query, Expect};
use qilin_tests::server::SsbServer;

const JOINED: &str = "FROM lineorder JOIN dates ON lo_orderdate = d_datekey \
    JOIN customer ON lo_custkey = c_custkey";

/// `(read, total)` of the first `blocks` row of an EXPLAIN text ("read 3 of 60"; other rows,
/// such as `fallback`, may say "read" too).
fn blocks(explain: &str) -> (usize, usize) {
    explain
        .match_indices("read ")
        .find_map(|(at, _)| {
            let mut words = explain[at + 5..].split_whitespace();
            let read = words.next()?.parse().ok()?;
            (words.next()? == "of").then_some(())?;
            let total = words
                .next()?
                .trim_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()?;
            Some((read, total))
        })
        .unwrap_or_else(|| panic!("no blocks row in {explain}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_cuboid_scans_equal_the_oracle_and_prune_on_derived_filters() {
    let ssb = SsbServer::start("").await;
    let ctx = qilin_tests::oracle(&ssb.source).await;
    let mut client = ssb.client().await;
    let query = |filter: &str| {
        format!(
            "SELECT d_weeknuminyear, c_city, sum(lo_revenue), count(*) {JOINED} {filter} \
             GROUP BY d_weeknuminyear, c_city"
        )
    };
    let mut base_total = None;
    // (filter, whether it must prune)
    for (filter, prunes) in [
        ("", false),
        ("WHERE c_region = 'ASIA'", false),
        ("WHERE d_year = 1993", true),
        // Derived columns: only their foreign key is stored.
        ("WHERE d_monthnuminyear = 12", true),
        (
            "WHERE d_sellingseason = 'Christmas' AND c_region = 'AMERICA'",
            true,
        ),
        ("WHERE d_daynuminyear BETWEEN 100 AND 110", true),
        // Matches no date: no block can join.
        ("WHERE d_monthnuminyear = 13", true),
    ] {
        let sql = query(filter);
        let got = run_query(&mut client, &sql)
            .await
            .unwrap_or_else(|s| panic!("{sql}: {:?}: {}", s.code(), s.message()));
        let want = oracle_query(&ctx, &sql).await;
        compare(&got, &want, &Expect::default()).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let explain = explain_text(
            &run_query(&mut client, &format!("EXPLAIN {sql}"))
                .await
                .unwrap(),
        );
        let (read, total) = blocks(&explain);
        match base_total {
            None => {
                assert_eq!(read, total, "{sql}: {explain}");
                assert!(total >= 20, "{sql}: {explain}");
                base_total = Some(total);
            }
            Some(t) => assert_eq!(total, t, "{sql} reads another cuboid: {explain}"),
        }
        if prunes {
            assert!(read < total / 2, "{sql}: read {read} of {total}: {explain}");
        }
        if filter.contains("13") {
            assert_eq!(read, 0, "{explain}");
        }
    }
}
