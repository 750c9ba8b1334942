//! Cuboid ids and the cuboids an aggregation group allows.
//!
//! A cuboid id is a bit set over the rowkey columns, Kylin style: the first rowkey column is
//! the most significant of the `n` low bits, so the base cuboid (all dimensions) is `2^n - 1`.

use crate::error::{Error, Result};
use crate::model::desc::AggregationGroupDesc;

pub type CuboidId = u64;

/// Storage ids at or above this are not cuboids: a cube has at most 63 rowkey columns, so
/// every real cuboid id is below 2^63. Lookup snapshots and the table index are stored
/// under these reserved ids with the same block/manifest machinery (every column a
/// "dimension", so per-block min/max prunes them like cuboids).
pub const FIRST_RESERVED_ID: CuboidId = 1 << 63;

/// The storage id of a segment's table index.
pub const TABLE_INDEX_ID: CuboidId = u64::MAX;

/// The storage id of a segment's `i`-th lookup snapshot (2^63 + i).
pub fn snapshot_id(i: usize) -> CuboidId {
    FIRST_RESERVED_ID + i as u64
}

/// The base cuboid over `n` rowkey columns.
pub fn base(n: usize) -> CuboidId {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// The bit of rowkey column `i` among `n`.
pub fn bit(n: usize, i: usize) -> CuboidId {
    1u64 << (n - 1 - i)
}

/// Whether `parent` has every dimension of `child`.
pub fn covers(parent: CuboidId, child: CuboidId) -> bool {
    parent & child == child
}

/// Every cuboid allowed by one aggregation group, or an error naming the problem.
pub fn enumerate_group(
    what: &str,
    group: &AggregationGroupDesc,
    rowkey: &[String],
    max_cuboids: u64,
) -> Result<Vec<CuboidId>> {
    let n = rowkey.len();
    let mask_of = |name: &str| -> Result<CuboidId> {
        rowkey
            .iter()
            .position(|r| r.eq_ignore_ascii_case(name.trim()))
            .map(|i| bit(n, i))
            .ok_or_else(|| Error::invalid(what, format!("{name} is not a dimension of the cube")))
    };
    if group.includes.is_empty() {
        return Err(Error::invalid(what, "includes no dimension"));
    }
    let mut includes = 0u64;
    for d in &group.includes {
        let b = mask_of(d)?;
        if includes & b != 0 {
            return Err(Error::invalid(what, format!("{d} is included twice")));
        }
        includes |= b;
    }
    // Each included dimension plays at most one role: mandatory, hierarchy level or joint.
    let mut assigned = 0u64;
    let mut claim = |name: &str, role: &str| -> Result<CuboidId> {
        let b = mask_of(name)?;
        if includes & b == 0 {
            return Err(Error::invalid(
                what,
                format!("{role} dimension {name} is not in includes"),
            ));
        }
        if assigned & b != 0 {
            return Err(Error::invalid(
                what,
                format!("{name} is used twice among mandatory, hierarchy and joint dimensions"),
            ));
        }
        assigned |= b;
        Ok(b)
    };
    let mut mandatory = 0u64;
    for d in &group.mandatory {
        mandatory |= claim(d, "mandatory")?;
    }
    let mut hierarchies: Vec<Vec<CuboidId>> = Vec::new();
    for h in &group.hierarchies {
        if h.len() < 2 {
            return Err(Error::invalid(
                what,
                "a hierarchy needs at least two levels",
            ));
        }
        hierarchies.push(
            h.iter()
                .map(|d| claim(d, "hierarchy"))
                .collect::<Result<_>>()?,
        );
    }
    let mut joints: Vec<CuboidId> = Vec::new();
    for j in &group.joints {
        if j.len() < 2 {
            return Err(Error::invalid(
                what,
                "a joint needs at least two dimensions",
            ));
        }
        let mut m = 0;
        for d in j {
            m |= claim(d, "joint")?;
        }
        joints.push(m);
    }
    let normal: Vec<CuboidId> = (0..n)
        .map(|i| bit(n, i))
        .filter(|b| includes & b != 0 && assigned & b == 0)
        .collect();

    // Count before enumerating, so a huge group fails fast with the limit stated.
    let mut count: u128 = 1u128 << normal.len().min(100);
    for h in &hierarchies {
        count = count.saturating_mul(h.len() as u128 + 1);
    }
    count = count.saturating_mul(1u128 << joints.len().min(100));
    if count > max_cuboids as u128 {
        return Err(Error::invalid(
            what,
            format!(
                "yields {count} cuboids; the limit (kylin.cube.aggrgroup.max-combination) is {max_cuboids}: \
                 add hierarchies, joints or mandatory dimensions, or split the group"
            ),
        ));
    }

    let mut out = vec![mandatory];
    for b in normal {
        let with: Vec<CuboidId> = out.iter().map(|c| c | b).collect();
        out.extend(with);
    }
    for h in &hierarchies {
        let mut next = Vec::with_capacity(out.len() * (h.len() + 1));
        for c in &out {
            let mut prefix = 0;
            next.push(*c);
            for level in h {
                prefix |= level;
                next.push(c | prefix);
            }
        }
        out = next;
    }
    for j in &joints {
        let with: Vec<CuboidId> = out.iter().map(|c| c | j).collect();
        out.extend(with);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn group(
        inc: &[&str],
        man: &[&str],
        hier: &[&[&str]],
        joint: &[&[&str]],
    ) -> AggregationGroupDesc {
        AggregationGroupDesc {
            includes: names(inc),
            mandatory: names(man),
            hierarchies: hier.iter().map(|h| names(h)).collect(),
            joints: joint.iter().map(|j| names(j)).collect(),
        }
    }

    #[test]
    fn ids_follow_rowkey_order() {
        assert_eq!(base(3), 0b111);
        assert_eq!(bit(3, 0), 0b100);
        assert_eq!(bit(3, 2), 0b001);
        assert!(covers(0b110, 0b100));
        assert!(!covers(0b110, 0b001));
    }

    #[test]
    fn plain_group_is_the_power_set() {
        let rk = names(&["a", "b", "c"]);
        let g = enumerate_group("g", &group(&["a", "b", "c"], &[], &[], &[]), &rk, 100).unwrap();
        assert_eq!(g, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn mandatory_hierarchy_and_joint_prune() {
        let rk = names(&["m", "y", "mo", "d", "j1", "j2", "x"]);
        let g = group(
            &["m", "y", "mo", "d", "j1", "j2", "x"],
            &["m"],
            &[&["y", "mo", "d"]],
            &[&["j1", "j2"]],
        );
        let got = enumerate_group("g", &g, &rk, 1000).unwrap();
        // x free (2) × hierarchy prefixes (4) × joint (2) = 16, all with m.
        assert_eq!(got.len(), 16);
        let m = bit(7, 0);
        let (y, mo, d) = (bit(7, 1), bit(7, 2), bit(7, 3));
        let (j1, j2) = (bit(7, 4), bit(7, 5));
        for c in &got {
            assert!(c & m != 0);
            if c & mo != 0 {
                assert!(c & y != 0, "month without year");
            }
            if c & d != 0 {
                assert!(c & mo != 0, "day without month");
            }
            assert_eq!(c & j1 == 0, c & j2 == 0, "joint split");
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let rk = names(&["a", "b", "c"]);
        let cases = [
            (group(&["a", "zz"], &[], &[], &[]), "zz is not a dimension"),
            (group(&["a", "b"], &["c"], &[], &[]), "not in includes"),
            (
                group(&["a", "b"], &["a"], &[&["a", "b"]], &[]),
                "used twice",
            ),
            (group(&[], &[], &[], &[]), "includes no dimension"),
            (
                group(&["a", "b"], &[], &[&["a"]], &[]),
                "at least two levels",
            ),
        ];
        for (g, needle) in cases {
            let err = enumerate_group("group 1", &g, &rk, 100)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err}");
        }
        let many = names(
            &(0..20)
                .map(|i| format!("d{i}"))
                .collect::<Vec<_>>()
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>(),
        );
        let g = AggregationGroupDesc {
            includes: many.clone(),
            mandatory: vec![],
            hierarchies: vec![],
            joints: vec![],
        };
        let err = enumerate_group("group 1", &g, &many, 4096)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1048576 cuboids") && err.contains("4096"),
            "{err}"
        );
    }
}
