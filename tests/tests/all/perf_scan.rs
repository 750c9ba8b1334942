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

/// String group keys nothing else reads are grouped as ids of their values and turned back
/// into strings after the aggregate (EXPLAIN shows `qilin_string_of`), also when filtered by
/// a filter the scan applies to their strings; keys another filter, an aggregate or a HAVING
/// reads are not, and every answer equals the oracle's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_group_keys_grouped_by_id_equal_the_oracle() {
    let ssb = SsbServer::start("").await;
    let ctx = qilin_tests::oracle(&ssb.source).await;
    let mut client = ssb.client().await;
    let lineorder = "FROM lineorder JOIN dates ON lo_orderdate = d_datekey \
        JOIN supplier ON lo_suppkey = s_suppkey JOIN part ON lo_partkey = p_partkey \
        JOIN customer ON lo_custkey = c_custkey";
    let queries = [
        // The ad-hoc tail's shape: two string keys and a derived one, on the base cuboid.
        format!(
            "SELECT d_daynuminweek, s_city, p_category, sum(lo_quantity) {lineorder} \
             GROUP BY d_daynuminweek, s_city, p_category"
        ),
        // The grouped key is also filtered: grouped by id, the scan filters its strings.
        format!(
            "SELECT c_city, s_nation, count(*) {lineorder} WHERE c_city LIKE 'UNITED%' \
             GROUP BY c_city, s_nation"
        ),
        // The ad-hoc shape (A050): a filtered key among ids, a derived filter, two sums.
        format!(
            "SELECT s_nation, s_city, c_region, sum(lo_revenue), \
             sum(lo_extendedprice * lo_discount) {lineorder} \
             WHERE d_daynuminmonth >= 26 AND c_region IN ('AFRICA', 'ASIA', 'EUROPE') \
             AND c_region <> 'EUROPE' GROUP BY s_nation, s_city, c_region"
        ),
        // A filter reading another column too: the key stays a string.
        format!(
            "SELECT c_region, count(*) {lineorder} \
             WHERE c_region = 'ASIA' OR c_nation = 'CHINA' GROUP BY c_region"
        ),
        // HAVING on a grouped key, ORDER BY and LIMIT over the decoded strings.
        format!(
            "SELECT s_city, sum(lo_revenue) AS r {lineorder} GROUP BY s_city \
             HAVING s_city > 'P' ORDER BY s_city DESC LIMIT 7"
        ),
        // An aggregate and a CASE read the key too.
        format!(
            "SELECT s_region, min(s_region), max(p_brand), \
             sum(CASE WHEN s_region = 'ASIA' THEN lo_revenue ELSE 0 END) {lineorder} \
             GROUP BY s_region"
        ),
        format!(
            "SELECT c_nation, s_region, d_holidayfl, count(DISTINCT c_name) {lineorder} \
             GROUP BY c_nation, s_region, d_holidayfl"
        ),
        // The same key twice, and a key inside an expression.
        format!(
            "SELECT p_mfgr, p_mfgr AS again, lower(s_nation), count(*) {lineorder} \
             GROUP BY p_mfgr, lower(s_nation)"
        ),
    ];
    for sql in &queries {
        let got = run_query(&mut client, sql)
            .await
            .unwrap_or_else(|s| panic!("{sql}: {:?}: {}", s.code(), s.message()));
        let want = oracle_query(&ctx, sql).await;
        let expect = Expect {
            ordered: qilin_tests::compare::has_order_by(sql),
            ..Expect::default()
        };
        compare(&got, &want, &expect).unwrap_or_else(|e| panic!("{sql}: {e}"));
        // Run twice: the second run reuses the cached plan and the numbering.
        let again = run_query(&mut client, sql).await.unwrap();
        compare(&again, &want, &expect).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let explain = explain_text(
            &run_query(&mut client, &format!("EXPLAIN {sql}"))
                .await
                .unwrap(),
        );
        assert!(explain.contains("cube ssb_cube"), "{sql}: {explain}");
    }
    // (query, key, grouped by id)
    for (q, key, by_id) in [
        (0, "s_city", true),
        (1, "c_city", true),
        (2, "c_region", true),
        (2, "s_nation", true),
        (3, "c_region", false),
        (5, "s_region", false),
    ] {
        let explain = explain_text(
            &run_query(&mut client, &format!("EXPLAIN {}", queries[q]))
                .await
                .unwrap(),
        );
        // `CAST(qilin_string_of(__g1) AS Utf8) AS s_city` or `CAST(__g1 AS Utf8) AS s_city`.
        let end = explain
            .find(&format!(" AS Utf8) AS {key}"))
            .unwrap_or_else(|| panic!("{key} in {explain}"));
        let cast = &explain[explain[..end].rfind("CAST(").unwrap()..end];
        assert_eq!(cast.contains("qilin_string_of("), by_id, "{key}: {explain}");
    }
    // The filter on a key grouped by id shows where it is applied.
    let explain = explain_text(
        &run_query(&mut client, &format!("EXPLAIN {}", queries[1]))
            .await
            .unwrap(),
    );
    assert!(
        explain.contains("scan_filters") && explain.contains("c_city LIKE Utf8(\"UNITED%\")"),
        "{explain}"
    );
}
