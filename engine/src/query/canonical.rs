//! Canonical text of an expression over model columns, used to match a query's aggregate
//! arguments with the inputs of measures (a computed column `v_revenue = lo_extendedprice *
//! lo_discount` matches `sum(lo_extendedprice * lo_discount)`).

use datafusion::common::Column;
use datafusion::logical_expr::{BinaryExpr, Expr};

/// `resolve` maps a column to its model (table, column). `None` for expressions outside the
/// small grammar measures use.
pub(crate) fn canonical(
    expr: &Expr,
    resolve: &dyn Fn(&Column) -> Option<(String, String)>,
) -> Option<String> {
    Some(match expr {
        Expr::Column(c) => {
            let (t, c) = resolve(c)?;
            format!("{}.{}", t.to_ascii_lowercase(), c.to_ascii_lowercase())
        }
        Expr::Literal(v, _) => v.to_string(),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => format!(
            "({} {op} {})",
            canonical(left, resolve)?,
            canonical(right, resolve)?
        ),
        // Casts differ between a query and a model's declared types; the values do not.
        Expr::Cast(c) => canonical(&c.expr, resolve)?,
        Expr::TryCast(c) => canonical(&c.expr, resolve)?,
        Expr::Negative(e) => format!("(-{})", canonical(e, resolve)?),
        Expr::Alias(a) => canonical(&a.expr, resolve)?,
        _ => return None,
    })
}
