//! The BI corpus (`tests/bi_corpus.sql`): SQL written the way Superset, Tableau, Metabase,
//! Power BI, Grafana and DBeaver write it, each statement tagged with where its answer must
//! come from. This module parses the file (as `tests/python/bi_corpus.py` does), builds the
//! oracle the results are compared with, compares one result (ordered, unordered, or as any
//! `LIMIT n` rows of the full result), and reads the `realization` rows of an EXPLAIN.

use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::prelude::{SessionConfig, SessionContext};
use qilin_engine::sample::ssb;

use crate::compare::{compare, compare_limited, oracle_query, Expect, HLL_REL};

/// Where a statement's answer must come from: the EXPLAIN row `realization` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Realization {
    /// `cube <name>`: an aggregate over the star, from a cuboid.
    Cube,
    /// `snapshot of <project>.<table> (segment <name>)`: lookup tables only.
    Snapshot,
    /// `table index of cube <name>`: detail rows of the fact table.
    TableIndex,
    /// `none needed: ...`: the statement reads no table.
    None,
}

impl Realization {
    fn parse(tag: &str) -> Option<Realization> {
        match tag {
            "cube" => Some(Realization::Cube),
            "snapshot" => Some(Realization::Snapshot),
            "table_index" => Some(Realization::TableIndex),
            "none" => Some(Realization::None),
            _ => None,
        }
    }

    /// The corpus tag.
    pub fn tag(self) -> &'static str {
        match self {
            Realization::Cube => "cube",
            Realization::Snapshot => "snapshot",
            Realization::TableIndex => "table_index",
            Realization::None => "none",
        }
    }

    /// What the plan text of a `realization` row says (`None` for pushdown, a refusal or an
    /// unknown wording).
    pub fn of_explain_row(plan: &str) -> Option<Realization> {
        if plan.starts_with("table index of cube ") {
            Some(Realization::TableIndex)
        } else if plan.starts_with("cube ") {
            Some(Realization::Cube)
        } else if plan.starts_with("snapshot of ") {
            Some(Realization::Snapshot)
        } else if plan.starts_with("none needed") {
            Some(Realization::None)
        } else {
            None
        }
    }
}

/// How a result is compared with the oracle's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareMode {
    /// Every cell (in order with a top-level ORDER BY; see [`Statement::ordered`]).
    Cells,
    /// Only the number of rows and columns (`SELECT version()`: the oracle is another server).
    Shape,
}

/// One statement of the corpus.
#[derive(Debug, Clone)]
pub struct Statement {
    pub name: String,
    pub tool: String,
    pub expect: Realization,
    /// Where the tool's SQL shape comes from.
    pub source: String,
    /// 0-based columns compared with the HyperLogLog tolerance.
    pub approx: Vec<usize>,
    pub compare: CompareMode,
    pub sql: String,
}

impl Statement {
    /// Whether the statement orders its result (a top-level ORDER BY).
    pub fn ordered(&self) -> bool {
        top_level_keyword(&self.sql, "order by").is_some()
    }

    /// `(n, sql without the LIMIT)` when the statement ends with a top-level `LIMIT n` and has
    /// no top-level ORDER BY: then any n rows of the full result are a right answer.
    pub fn unordered_limit(&self) -> Option<(usize, String)> {
        if self.ordered() {
            return None;
        }
        let at = top_level_keyword(&self.sql, "limit")?;
        let n = self.sql[at + "limit".len()..].trim().parse().ok()?;
        Some((n, self.sql[..at].trim_end().to_string()))
    }
}

/// The statements of `tests/bi_corpus.sql`.
pub fn statements() -> Vec<Statement> {
    parse(include_str!("../bi_corpus.sql")).unwrap_or_else(|e| panic!("tests/bi_corpus.sql: {e}"))
}

/// Parses the corpus format (described at the top of `tests/bi_corpus.sql`): `-- key: value`
/// lines (exactly one space after `--`), then the statement up to a line ending with `;`.
pub fn parse(text: &str) -> Result<Vec<Statement>, String> {
    const KEYS: [&str; 6] = ["name", "tool", "expect", "source", "approx", "compare"];
    let mut out: Vec<Statement> = Vec::new();
    let mut keys: Vec<(String, String)> = Vec::new();
    let mut sql: Vec<&str> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if sql.is_empty() {
            if let Some((key, value)) = trimmed
                .strip_prefix("-- ")
                .and_then(|rest| rest.split_once(':'))
                .filter(|(key, _)| KEYS.contains(key))
            {
                keys.push((key.to_string(), value.trim().to_string()));
                continue;
            }
            // A blank line ends a block of keys that no statement followed.
            if trimmed.is_empty() {
                keys.clear();
            }
            if trimmed.is_empty() || trimmed.starts_with("--") {
                continue;
            }
        }
        sql.push(line.trim_end());
        if trimmed.ends_with(';') {
            let text = sql.join("\n");
            let st = statement(&keys, text.trim().trim_end_matches(';').trim())
                .map_err(|e| format!("statement ending at line {}: {e}", number + 1))?;
            if out.iter().any(|o| o.name == st.name) {
                return Err(format!("statement name {:?} used twice", st.name));
            }
            out.push(st);
            keys.clear();
            sql.clear();
        }
    }
    if !sql.is_empty() {
        return Err("the last statement does not end with ';'".into());
    }
    Ok(out)
}

fn statement(keys: &[(String, String)], sql: &str) -> Result<Statement, String> {
    let get = |k: &str| {
        keys.iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let required = |k: &str| {
        get(k)
            .filter(|v| !v.is_empty())
            .ok_or(format!("no '-- {k}:' line"))
    };
    let name = required("name")?;
    let expect = required("expect")?;
    let expect = Realization::parse(&expect).ok_or(format!("{name}: unknown expect {expect:?}"))?;
    let approx = match get("approx") {
        None => vec![],
        Some(v) => v
            .split(',')
            .map(|c| c.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{name}: approx {v:?}: {e}"))?,
    };
    let compare = match get("compare").as_deref() {
        None => CompareMode::Cells,
        Some("shape") => CompareMode::Shape,
        Some(other) => return Err(format!("{name}: unknown compare {other:?}")),
    };
    Ok(Statement {
        tool: required("tool")?,
        source: required("source")?,
        name,
        expect,
        approx,
        compare,
        sql: sql.to_string(),
    })
}

/// Byte offset of the last occurrence of `keyword` (lower case, words separated by single
/// spaces) outside parentheses, quotes and comments, as whole words.
pub fn top_level_keyword(sql: &str, keyword: &str) -> Option<usize> {
    // Lower-cased, with everything nested or quoted blanked out, then searched for the words.
    let mut flat = String::with_capacity(sql.len());
    let (mut depth, mut quote) = (0usize, None::<char>);
    for c in sql.chars() {
        let visible = match (quote, c) {
            (Some(q), _) if c == q => {
                quote = None;
                false
            }
            (Some(_), _) => false,
            (None, '\'' | '"') => {
                quote = Some(c);
                false
            }
            (None, '(') => {
                depth += 1;
                false
            }
            (None, ')') => {
                depth = depth.saturating_sub(1);
                false
            }
            _ => depth == 0,
        };
        // Keep byte offsets equal to the input's: blank out with as many bytes as `c` has.
        if visible {
            flat.push(c.to_ascii_lowercase());
        } else {
            flat.extend(std::iter::repeat_n(' ', c.len_utf8()));
        }
    }
    let words: Vec<&str> = keyword.split(' ').collect();
    let mut found = None;
    let tokens: Vec<(usize, &str)> = flat
        .split_whitespace()
        .map(|t| (t.as_ptr() as usize - flat.as_ptr() as usize, t))
        .collect();
    for i in 0..tokens.len() {
        if tokens.len() - i >= words.len()
            && words.iter().enumerate().all(|(j, w)| tokens[i + j].1 == *w)
        {
            found = Some(tokens[i].0);
        }
    }
    found
}

/// The oracle for the corpus: the raw SSB tables by their bare names and as schema `ssb`
/// (how BI tools qualify them), with `information_schema`.
pub async fn oracle(source: &Path) -> SessionContext {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_information_schema(true));
    let raw = crate::oracle(source).await;
    let schema = Arc::new(MemorySchemaProvider::new());
    for t in ssb::TABLES {
        let provider = raw.table_provider(t).await.expect("raw table");
        ctx.register_table(t, provider.clone())
            .expect("register table");
        schema
            .register_table(t.to_string(), provider)
            .expect("register table in schema ssb");
    }
    ctx.catalog("datafusion")
        .expect("default catalog")
        .register_schema(ssb::PROJECT, schema)
        .expect("register schema ssb");
    ctx
}

/// Compares `got` with the oracle's answer to `st`; `Err` says how they differ.
pub async fn check_result(
    oracle: &SessionContext,
    st: &Statement,
    got: &[RecordBatch],
) -> Result<(), String> {
    let expect = Expect {
        ordered: st.ordered(),
        approx: st.approx.iter().map(|&c| (c, HLL_REL)).collect(),
    };
    if st.compare == CompareMode::Shape {
        let want = oracle_query(oracle, &st.sql).await;
        let shape = |b: &[RecordBatch]| {
            let rows: usize = b.iter().map(|b| b.num_rows()).sum();
            (rows, b.first().map_or(0, |b| b.num_columns()))
        };
        let (g, w) = (shape(got), shape(&want));
        return if g == w {
            Ok(())
        } else {
            Err(format!("(rows, columns) {g:?}, expected {w:?}"))
        };
    }
    match st.unordered_limit() {
        Some((limit, unlimited)) => {
            let full = oracle_query(oracle, &unlimited).await;
            compare_limited(got, &full, limit, &expect)
        }
        None => compare(got, &oracle_query(oracle, &st.sql).await, &expect),
    }
}

/// The plan texts of the `realization` rows of an EXPLAIN result (`plan_type`, `plan`).
pub fn realization_rows(explain: &[RecordBatch]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for b in explain {
        let names: Vec<&str> = b
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        if names != ["plan_type", "plan"] {
            return Err(format!(
                "EXPLAIN columns {names:?}, expected [plan_type, plan]"
            ));
        }
        for r in 0..b.num_rows() {
            if crate::cell(b.column(0).as_ref(), r) == "realization" {
                out.push(crate::cell(b.column(1).as_ref(), r));
            }
        }
    }
    Ok(out)
}

/// Checks the `realization` rows of `st`'s EXPLAIN against its tag: the expected kind is
/// there, nothing is pushed down or refused, and nothing reads more than the tag allows
/// (lookup-only statements read no cube, statements without tables read nothing).
pub fn check_realization(st: &Statement, rows: &[String]) -> Result<(), String> {
    let kinds: Vec<Option<Realization>> = rows
        .iter()
        .map(|r| Realization::of_explain_row(r))
        .collect();
    let seen = || format!("realization rows {rows:?}");
    if let Some(i) = kinds.iter().position(Option::is_none) {
        return Err(format!("not answered from a realization: {:?}", rows[i]));
    }
    let has = |k: Realization| kinds.contains(&Some(k));
    let ok = match st.expect {
        Realization::Cube => has(Realization::Cube) && !has(Realization::TableIndex),
        Realization::TableIndex => has(Realization::TableIndex) && !has(Realization::Cube),
        Realization::Snapshot => {
            has(Realization::Snapshot) && !has(Realization::Cube) && !has(Realization::TableIndex)
        }
        Realization::None => kinds.iter().all(|k| *k == Some(Realization::None)),
    };
    if !ok {
        return Err(format!("expected {}, {}", st.expect.tag(), seen()));
    }
    let names_cube = |r: &String| r.contains(ssb::CUBE);
    match st.expect {
        Realization::Cube | Realization::TableIndex if !rows.iter().any(names_cube) => {
            Err(format!("no realization names {}: {}", ssb::CUBE, seen()))
        }
        Realization::Snapshot
            if !rows
                .iter()
                .any(|r| r.contains(&format!("{}.", ssb::PROJECT))) =>
        {
            Err(format!(
                "the snapshot row names no {}.<table>: {}",
                ssb::PROJECT,
                seen()
            ))
        }
        _ => Ok(()),
    }
}
