//! Qilin's integration tests, in one test binary (each former test file is a module, so test
//! names read `cluster::...`, `query_paths::...`). Run one module with
//! `cargo test -p qilin-tests --test all cluster::`.
//!
//! The binaries the tests start (`qilin-server`, `qilin-jobs`, `qilin-bench`, `qilin-ballista`,
//! `hbase-thrift-emulator`) are found next to this executable (see
//! `qilin_tests::workspace_exe`); `scripts/test` builds them first.

mod access_flight;
mod access_query;
mod auto_merge;
mod ballista;
mod bench_duckdb_baseline;
mod bench_smoke;
mod bi_corpus;
mod bi_metadata;
mod bi_shapes;
mod catalog_documents;
mod cluster;
mod console;
mod cuboids_match_oracle;
mod hbase_emulator;
mod hbase_outage;
mod hbase_ssb;
mod hostile_input;
mod jobs_cli;
mod kylin_clients;
mod kylin_import;
mod measure_extended;
mod measure_global_dict;
mod measure_percentile;
mod measure_top_n;
mod metadata_backup;
mod models;
mod nginx_harness;
mod perf_bench;
mod perf_build;
mod perf_history;
mod perf_planner;
mod perf_scan;
mod perf_warm;
mod protocol;
mod query_engine;
mod query_paths;
mod random_queries;
mod rest;
mod rest_access;
mod rest_jobs;
mod security_cli;
mod segments;
mod snapshots_table_index;
mod sqlalchemy_paths;
mod ssb_adbc;
mod store_contract;
mod tables_cli;
mod tls;
mod tpch;
