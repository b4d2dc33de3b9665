//! `dataplane repl ...`: the replication commands, sent to the admin API.

use clap::Subcommand;
use serde_json::Value;

#[derive(Subcommand, Debug)]
pub enum ReplCmd {
    /// Show or set this cluster's name.
    Clustername { name: Option<String> },
}

pub fn run(admin: &str, token: &str, cmd: ReplCmd) -> i32 {
    let _ = (admin, token, cmd);
    eprintln!("dataplane: replication is not available in this build");
    1
}

pub fn print_repl_status(_v: &Value) {}
