//! Primary and foreign keys as BI tools ask for them (Flight SQL GetPrimaryKeys,
//! GetImportedKeys, GetExportedKeys, GetCrossReference), read off the models' joins: each
//! lookup's `primary_key` is a key of its table, and the columns joined to it (a fact column, or
//! a column of an earlier lookup in a snowflake) are a foreign key referencing it. Aliases
//! name joins, not tables: keys report the real table names, once however many joins or models
//! declare them.

use crate::model::ModelDesc;

/// A foreign key: `fk_columns` of `fk_table` reference `pk_columns` of `pk_table`, position by
/// position, both tables in `project`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ForeignKey {
    pub project: String,
    pub pk_table: String,
    pub pk_columns: Vec<String>,
    pub fk_table: String,
    pub fk_columns: Vec<String>,
}

impl ForeignKey {
    /// The name of the referenced key (`<table>_pk`).
    pub fn pk_name(&self) -> String {
        primary_key_name(&self.pk_table)
    }

    /// The name of this foreign key (`<fk table>_<fk columns>_fk`).
    pub fn fk_name(&self) -> String {
        format!("{}_{}_fk", self.fk_table, self.fk_columns.join("_"))
    }
}

/// A table's primary key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PrimaryKey {
    pub project: String,
    pub table: String,
    pub columns: Vec<String>,
}

impl PrimaryKey {
    pub fn name(&self) -> String {
        primary_key_name(&self.table)
    }
}

fn primary_key_name(table: &str) -> String {
    format!("{table}_pk")
}

/// Every foreign key the models declare, sorted and without duplicates. `table_name` maps a
/// model's spelling of a table to the catalog's (they may differ in case).
pub fn foreign_keys(
    models: &[ModelDesc],
    table_name: impl Fn(&str, &str) -> String,
) -> Vec<ForeignKey> {
    let mut out = Vec::new();
    for m in models {
        // The table behind a join name: the fact table, or the lookup so named (alias or table).
        let table_of = |join: &str| -> Option<&str> {
            if join.eq_ignore_ascii_case(&m.fact_table) {
                return Some(&m.fact_table);
            }
            m.lookups
                .iter()
                .find(|l| l.name().eq_ignore_ascii_case(join))
                .map(|l| l.table.as_str())
        };
        for l in &m.lookups {
            let mut fk_table: Option<&str> = None;
            let mut fk_columns = Vec::new();
            for fk in &l.foreign_key {
                let (table, column) = match fk.split_once('.') {
                    Some((join, column)) => (table_of(join), column),
                    None => (Some(m.fact_table.as_str()), fk.as_str()),
                };
                match (fk_table, table) {
                    (_, None) => fk_table = None,
                    (None, Some(t)) if fk_columns.is_empty() => fk_table = Some(t),
                    (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => {}
                    // A key spread over columns of several tables is no foreign key of one.
                    _ => fk_table = None,
                }
                if fk_table.is_none() {
                    break;
                }
                fk_columns.push(column.to_string());
            }
            let Some(fk_table) = fk_table else {
                continue;
            };
            if fk_columns.len() != l.primary_key.len() {
                continue;
            }
            out.push(ForeignKey {
                project: m.project.clone(),
                pk_table: table_name(&m.project, &l.table),
                pk_columns: l.primary_key.clone(),
                fk_table: table_name(&m.project, fk_table),
                fk_columns,
            });
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The primary keys the foreign keys reference, sorted and without duplicates.
pub fn primary_keys(foreign: &[ForeignKey]) -> Vec<PrimaryKey> {
    let mut out: Vec<PrimaryKey> = foreign
        .iter()
        .map(|f| PrimaryKey {
            project: f.project.clone(),
            table: f.pk_table.clone(),
            columns: f.pk_columns.clone(),
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn keys(model_json: &str) -> Vec<(String, String, String, String)> {
        let model: ModelDesc = serde_json::from_str(model_json).unwrap();
        foreign_keys(&[model.clone(), model], |_, t| t.to_string())
            .into_iter()
            .map(|f| {
                (
                    f.fk_table,
                    f.fk_columns.join(","),
                    f.pk_table,
                    f.pk_columns.join(","),
                )
            })
            .collect()
    }

    fn row(fk: &str, fc: &str, pk: &str, pc: &str) -> (String, String, String, String) {
        (fk.into(), fc.into(), pk.into(), pc.into())
    }

    #[test]
    fn snowflake_joins_through_aliases_report_real_tables_once() {
        let got: BTreeSet<_> = keys(include_str!("../../../conf/examples/tpch/model.json"))
            .into_iter()
            .collect();
        let want: BTreeSet<_> = [
            row("customer", "c_nationkey", "nation", "n_nationkey"),
            row("lineitem", "l_orderkey", "orders", "o_orderkey"),
            row("lineitem", "l_partkey", "part", "p_partkey"),
            row("lineitem", "l_suppkey", "supplier", "s_suppkey"),
            row("nation", "n_regionkey", "region", "r_regionkey"),
            row("orders", "o_custkey", "customer", "c_custkey"),
            row("supplier", "s_nationkey", "nation", "n_nationkey"),
        ]
        .into_iter()
        .collect();
        assert_eq!(got, want);
        // Deduplicated: two models declaring the same joins give each key once.
        assert_eq!(
            keys(include_str!("../../../conf/examples/tpch/model.json")).len(),
            want.len()
        );
        let model: ModelDesc =
            serde_json::from_str(include_str!("../../../conf/examples/tpch/model.json")).unwrap();
        let pks = primary_keys(&foreign_keys(&[model], |_, t| t.to_string()));
        let tables: Vec<&str> = pks.iter().map(|p| p.table.as_str()).collect();
        assert_eq!(
            tables,
            ["customer", "nation", "orders", "part", "region", "supplier"]
        );
    }
}
