//! Source tables: add (schema inferred from the files), reload, list, show, drop.
