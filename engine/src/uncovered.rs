//! Why a query (or one aggregate of it) is not answered from a cube: one typed reason per step
//! of the cube rewrite (plan shape, tables, joins, dimensions, measures, cuboid choice). EXPLAIN
//! and [`crate::Error::NoRealization`] both render it; nothing else matches on its text.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uncovered {
    /// The plan between the aggregate and the tables has a shape cubes do not answer (an
    /// outer join, a subquery in FROM, GROUPING SETS, ...).
    Shape(String),
    /// A table the aggregate reads is not the model's (or is read twice, or the model's fact
    /// table is missing, or it reads tables of two projects).
    Table(String),
    /// A lookup is not joined on the model's foreign key = primary key, or with another join kind.
    Join(String),
    /// A group-by or filter column that no cuboid stores.
    Column {
        column: String,
        cube: Option<String>,
    },
    /// An aggregate that no measure state answers.
    Measure { expr: String, detail: String },
    /// The needed dimensions are in no single cuboid.
    Cuboid {
        cube: String,
        dimensions: Vec<String>,
    },
    /// The cube has no READY segment (or a stored foreign key is missing from it).
    Segments { cube: String, detail: String },
    /// The project has no cube at all.
    NoCube { project: String },
    /// A table read outside any aggregate (cubes answer aggregates over the model's joins).
    Outside { table: String },
    /// Detail rows of a cube's fact table, and the cube stores no table index.
    NoDetail { table: String, cube: String },
    /// Every cube was tried and each failed for its own reason.
    Each(Vec<Uncovered>),
}

impl Uncovered {
    /// The same reasons, flattened: `Each` of one reason is that reason.
    pub fn each(mut reasons: Vec<Uncovered>) -> Uncovered {
        if reasons.len() == 1 {
            reasons.remove(0)
        } else {
            Uncovered::Each(reasons)
        }
    }
}

impl fmt::Display for Uncovered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uncovered::Shape(s) | Uncovered::Table(s) | Uncovered::Join(s) => f.write_str(s),
            Uncovered::Column { column, cube: None } => {
                write!(f, "column {column} cannot be resolved to a model table")
            }
            Uncovered::Column {
                column,
                cube: Some(cube),
            } => write!(f, "column {column} is not a dimension of cube {cube}"),
            Uncovered::Measure { expr, detail } => write!(f, "{expr}: {detail}"),
            Uncovered::Cuboid { cube, dimensions } => write!(
                f,
                "no cuboid of cube {cube} holds dimensions {} together (they are in different aggregation groups)",
                dimensions.join(", ")
            ),
            Uncovered::Segments { cube, detail } => write!(f, "cube {cube}: {detail}"),
            Uncovered::NoCube { project } => write!(f, "project {project} has no cube"),
            Uncovered::Outside { table } => write!(
                f,
                "table {table} is read outside an aggregate query (cubes answer aggregates over the model's joins)"
            ),
            Uncovered::NoDetail { table, cube } => write!(
                f,
                "detail rows of {table} are not stored by any cube: add a table_index to cube \
                 {cube} or enable kylin.query.pushdown.enabled"
            ),
            Uncovered::Each(all) => {
                for (i, r) in all.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{r}")?;
                }
                Ok(())
            }
        }
    }
}
