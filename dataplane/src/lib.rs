//! dataplane: a replicated object store node (library part; the binary is
//! `src/main.rs`). Integration tests and benchmarks use the clients and the
//! cluster launcher from here.

// The S3 protocol helpers are a complete toolbox; not every helper is used
// by the server yet.
#[allow(dead_code)]
pub mod s3;

pub mod admin;
pub mod client;
pub mod config;
pub mod demo;
pub mod hlc;
pub mod httpconn;
pub mod metrics;
pub mod model;
pub mod objects;
pub mod repl;
pub mod runtime;
pub mod s3api;
pub mod tls;

/// Per-core state of subsystems that live beside the partitions.
#[derive(Default)]
pub struct CoreExt {
    pub repl: repl::CoreRepl,
}
