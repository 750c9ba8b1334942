//! Block pruning: whether a block can hold rows matching a predicate, judged from the block's
//! per-dimension min/max. Anything not understood keeps the block (pruning is only a saving).

use std::cmp::Ordering;
use std::collections::HashMap;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{expr::InList, Between, BinaryExpr, Expr, Operator};
use serde_json::Value;

use crate::storage::BlockMeta;

/// A comparable value: integers (also dates, as days) and strings.
#[derive(Debug, PartialEq, PartialOrd)]
enum Val {
    Int(i64),
    Str(String),
}

fn of_scalar(v: &ScalarValue) -> Option<Val> {
    Some(match v {
        ScalarValue::Int8(Some(x)) => Val::Int(*x as i64),
        ScalarValue::Int16(Some(x)) => Val::Int(*x as i64),
        ScalarValue::Int32(Some(x)) => Val::Int(*x as i64),
        ScalarValue::Int64(Some(x)) => Val::Int(*x),
        ScalarValue::UInt8(Some(x)) => Val::Int(*x as i64),
        ScalarValue::UInt16(Some(x)) => Val::Int(*x as i64),
        ScalarValue::UInt32(Some(x)) => Val::Int(*x as i64),
        ScalarValue::UInt64(Some(x)) => Val::Int(i64::try_from(*x).ok()?),
        ScalarValue::Date32(Some(x)) => Val::Int(*x as i64),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Val::Str(s.clone()),
        _ => return None,
    })
}

fn of_json(v: &Value) -> Option<Val> {
    match v {
        Value::Number(n) => n.as_i64().map(Val::Int),
        Value::String(s) => Some(Val::Str(s.clone())),
        _ => None,
    }
}

/// Compares a literal with a stat; `None` when the two are not comparable (e.g. a string
/// literal against an integer column), which keeps the block.
fn cmp(lit: &Val, stat: &Val) -> Option<Ordering> {
    match (lit, stat) {
        (Val::Int(_), Val::Int(_)) | (Val::Str(_), Val::Str(_)) => lit.partial_cmp(stat),
        _ => None,
    }
}

struct Range {
    min: Val,
    max: Val,
}

impl Range {
    /// Can some value v in [min, max] satisfy `v op lit`?
    fn may(&self, op: Operator, lit: &Val) -> bool {
        let (Some(lo), Some(hi)) = (cmp(lit, &self.min), cmp(lit, &self.max)) else {
            return true;
        };
        match op {
            Operator::Eq => lo != Ordering::Less && hi != Ordering::Greater,
            Operator::Lt => lo == Ordering::Greater, // min < lit
            Operator::LtEq => lo != Ordering::Less,  // min <= lit
            Operator::Gt => hi == Ordering::Less,    // max > lit
            Operator::GtEq => hi != Ordering::Greater, // max >= lit
            _ => true,
        }
    }
}

fn flip(op: Operator) -> Operator {
    match op {
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        o => o,
    }
}

/// Whether the block described by `meta` may hold rows satisfying `pred`. Columns qualified
/// with `alias` whose name is in `dims` (name → position in the block stats) are judged.
pub fn block_may_match(
    pred: &Expr,
    alias: &str,
    dims: &HashMap<String, usize>,
    meta: &BlockMeta,
) -> bool {
    let range = |e: &Expr| -> Option<Range> {
        let Expr::Column(c) = e else { return None };
        if c.relation.as_ref().map(|r| r.table()) != Some(alias) {
            return None;
        }
        let i = *dims.get(&c.name)?;
        Some(Range {
            min: of_json(meta.min.get(i)?)?,
            max: of_json(meta.max.get(i)?)?,
        })
    };
    let literal = |e: &Expr| match e {
        Expr::Literal(v, _) => of_scalar(v),
        _ => None,
    };
    match pred {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And => {
                block_may_match(left, alias, dims, meta)
                    && block_may_match(right, alias, dims, meta)
            }
            Operator::Or => {
                block_may_match(left, alias, dims, meta)
                    || block_may_match(right, alias, dims, meta)
            }
            _ => {
                if let (Some(r), Some(v)) = (range(left), literal(right)) {
                    r.may(*op, &v)
                } else if let (Some(v), Some(r)) = (literal(left), range(right)) {
                    r.may(flip(*op), &v)
                } else {
                    true
                }
            }
        },
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => match (range(expr), literal(low), literal(high)) {
            (Some(r), Some(lo), Some(hi)) => {
                r.may(Operator::GtEq, &lo) && r.may(Operator::LtEq, &hi)
            }
            _ => true,
        },
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) => match range(expr) {
            Some(r) => list
                .iter()
                .any(|item| literal(item).is_none_or(|v| r.may(Operator::Eq, &v))),
            None => true,
        },
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::common::Column;
    use datafusion::logical_expr::{col, lit};

    fn meta(min: Value, max: Value) -> BlockMeta {
        BlockMeta {
            rows: 10,
            bytes: 1,
            crc32: 0,
            min: vec![min],
            max: vec![max],
        }
    }

    fn c() -> Expr {
        Expr::Column(Column::new(Some("t"), "d"))
    }

    fn may(p: Expr, m: &BlockMeta) -> bool {
        let dims = HashMap::from([("d".to_string(), 0usize)]);
        block_may_match(&p, "t", &dims, m)
    }

    #[test]
    fn integer_ranges_prune() {
        let m = meta(Value::from(1993), Value::from(1995));
        assert!(may(c().eq(lit(1994)), &m));
        assert!(!may(c().eq(lit(1992)), &m));
        assert!(!may(c().lt(lit(1993)), &m));
        assert!(may(c().lt_eq(lit(1993)), &m));
        assert!(!may(c().gt(lit(1995)), &m));
        assert!(may(lit(1995).gt_eq(c()), &m));
        assert!(!may(lit(1992).gt_eq(c()), &m));
        assert!(!may(c().between(lit(1996), lit(1999)), &m));
        assert!(may(c().between(lit(1990), lit(1993)), &m));
        assert!(!may(c().in_list(vec![lit(1990), lit(1999)], false), &m));
        assert!(may(c().in_list(vec![lit(1990), lit(1995)], false), &m));
        assert!(may(c().eq(lit(1990)).or(c().eq(lit(1994))), &m));
        assert!(!may(c().eq(lit(1990)).or(c().eq(lit(1999))), &m));
        assert!(!may(c().eq(lit(1994)).and(c().eq(lit(1999))), &m));
    }

    #[test]
    fn strings_compare_bytewise_and_mismatches_keep_the_block() {
        let m = meta(Value::from("ASIA"), Value::from("EUROPE"));
        assert!(may(c().eq(lit("BRAZIL")), &m));
        assert!(!may(c().eq(lit("AMERICA")), &m));
        assert!(!may(c().eq(lit("MIDDLE EAST")), &m));
        // A number against string stats, an unknown column, NOT IN: cannot tell → keep.
        assert!(may(c().eq(lit(5)), &m));
        assert!(may(col("other").eq(lit("x")), &m));
        assert!(may(c().in_list(vec![lit("AMERICA")], true), &m));
        // No stats (all-null block) → keep.
        assert!(may(c().eq(lit("AMERICA")), &meta(Value::Null, Value::Null)));
    }
}
