//! What a user does to the catalog, shared by `qilin-jobs` and the Flight actions of
//! `qilin-server`: register tables, put and drop projects, models and cubes, import Kylin
//! metadata. Each operation validates everything before it writes anything.

pub mod documents;
pub mod kylin;
pub mod tables;
