//! Plan normalizations before the rewrite: equivalent shapes of a query turned into the one
//! the rewrite answers. `SELECT DISTINCT a, b ...` is `SELECT a, b ... GROUP BY a, b` (what
//! BI tools send for filter-value lists), so a `Distinct::All` becomes an `Aggregate` grouping
//! all its input columns with no aggregates (DataFusion's optimizer does the same later).

use std::sync::Arc;

use datafusion::common::tree_node::Transformed;
use datafusion::logical_expr::{Aggregate, Distinct, Expr, LogicalPlan};

use crate::error::Result;
use crate::query::from_datafusion;

/// `plan` with every `SELECT DISTINCT` as a `GROUP BY` of its columns.
pub(super) fn normalize(plan: LogicalPlan) -> Result<LogicalPlan> {
    Ok(plan
        .transform_up_with_subqueries(|node| match node {
            LogicalPlan::Distinct(Distinct::All(input)) => {
                let group = input.schema().columns().into_iter().map(Expr::Column);
                let agg = Aggregate::try_new(Arc::clone(&input), group.collect(), vec![])?;
                Ok(Transformed::yes(LogicalPlan::Aggregate(agg)))
            }
            other => Ok(Transformed::no(other)),
        })
        .map_err(from_datafusion)?
        .data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::{col, table_scan};

    #[test]
    fn distinct_becomes_a_group_by_of_all_columns_with_the_same_schema() {
        let schema = Schema::new(vec![
            Field::new("a", DataType::Int32, false),
            Field::new("b", DataType::Utf8, true),
        ]);
        let plan = table_scan(Some("t"), &schema, None)
            .unwrap()
            .project(vec![col("a"), col("b").alias("c")])
            .unwrap()
            .distinct()
            .unwrap()
            .build()
            .unwrap();
        let out = normalize(plan.clone()).unwrap();
        let LogicalPlan::Aggregate(agg) = &out else {
            panic!("not an aggregate: {out}")
        };
        assert_eq!(agg.group_expr.len(), 2);
        assert!(agg.aggr_expr.is_empty());
        let fields = |p: &LogicalPlan| -> Vec<(Option<String>, Field)> {
            p.schema()
                .iter()
                .map(|(q, f)| (q.map(|q| q.to_string()), f.as_ref().clone()))
                .collect()
        };
        assert_eq!(fields(&out), fields(&plan));
    }
}
