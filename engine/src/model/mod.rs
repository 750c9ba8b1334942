//! The cube model: descriptors (what users write), their validation and resolution into a
//! layout (what building and querying use), cuboid ids, and cube instances with segments.

pub mod auto_merge;
pub mod cuboid;
pub mod desc;
pub mod instance;
pub mod jdbc;
pub mod layout;

pub use cuboid::CuboidId;
pub use desc::*;
pub use instance::*;
pub use layout::*;
