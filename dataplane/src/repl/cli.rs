//! `dataplane repl ...`: the replication commands, sent to the admin API.

use std::time::Duration;

use clap::Subcommand;
use serde_json::{json, Value};

use crate::client::admin_request;

#[derive(Subcommand, Debug)]
pub enum ReplCmd {
    /// Show this cluster's name, or set it.
    Clustername { name: Option<String> },
    /// Add a sink: run on the source, naming the sink's cluster manager address.
    Connect { addr: String },
    /// Remove a sink (drops its realtime queue).
    Disconnect { sink: String },
    /// Sinks this cluster replicates to and sources replicating to it.
    Connections {
        #[arg(long)]
        json: bool,
    },
    /// Per-sink replication status.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Realtime replication to a sink.
    Realtime {
        #[command(subcommand)]
        cmd: OnOff4,
    },
    /// Let a sink fetch missing blocks from this cluster on GET.
    ProxyGet {
        #[command(subcommand)]
        cmd: OnOff2,
    },
    /// Fullsync to a sink.
    Fullsync {
        #[command(subcommand)]
        cmd: FsCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum OnOff4 {
    /// Create the sink's queue (cursors at the current head).
    Enable { sink: String },
    /// Drop the sink's queue.
    Disable { sink: String },
    /// Stream the queue to the sink.
    Start { sink: String },
    /// Keep queueing without sending.
    Stop { sink: String },
}

#[derive(Subcommand, Debug)]
pub enum OnOff2 {
    Enable { sink: String },
    Disable { sink: String },
}

#[derive(Subcommand, Debug)]
pub enum FsCmd {
    /// Allow scheduled fullsyncs to the sink.
    Enable { sink: String },
    /// No scheduled fullsyncs to the sink.
    Disable { sink: String },
    /// Start a fullsync now.
    Start {
        sink: String,
        /// Show progress until it ends.
        #[arg(long)]
        wait: bool,
    },
    /// Stop a running fullsync (`start` resumes it where it stopped).
    Stop { sink: String },
    /// Fullsync status per sink and partition.
    Status {
        #[arg(long)]
        json: bool,
        /// Only this sink.
        sink: Option<String>,
    },
}

fn call(admin: &str, token: &str, method: &str, path: &str, body: Value) -> Result<Value, String> {
    let b = if body.is_null() { String::new() } else { body.to_string() };
    let r = admin_request(admin, method, path, &b, token).map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    if r.status != 200 {
        return Err(v["error"].as_str().map(|s| s.to_string()).unwrap_or_else(|| format!("admin API answered {}: {}", r.status, r.text())));
    }
    Ok(v)
}

pub fn run(admin: &str, token: &str, cmd: ReplCmd) -> i32 {
    let res = match cmd {
        ReplCmd::Clustername { name: None } => call(admin, token, "GET", "/repl/clustername", Value::Null).map(|v| {
            println!("{}", v["name"].as_str().unwrap_or(""));
        }),
        ReplCmd::Clustername { name: Some(n) } => call(admin, token, "POST", "/repl/clustername", json!({"name": n})).map(|v| println!("cluster name set to {}", v["name"])),
        ReplCmd::Connect { addr } => call(admin, token, "POST", "/repl/connect", json!({"addr": addr})).map(|v| {
            println!("connected to sink {} ({}) at {}", v["sink"].as_str().unwrap_or("?"), v["cluster_id"].as_str().unwrap_or("?"), addr)
        }),
        ReplCmd::Disconnect { sink } => call(admin, token, "POST", "/repl/disconnect", json!({"sink": sink})).map(|_| println!("disconnected from {sink}")),
        ReplCmd::Connections { json } => call(admin, token, "GET", "/repl/connections", Value::Null).map(|v| {
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap());
                return;
            }
            println!("{:<20} {:<18} {:<24} {:<10} {:<10} {}", "sink", "cluster id", "address", "connected", "mode", "last error");
            for s in v["sinks"].as_array().cloned().unwrap_or_default() {
                println!(
                    "{:<20} {:<18} {:<24} {:<10} {:<10} {}",
                    s["sink"].as_str().unwrap_or(""),
                    s["cluster_id"].as_str().unwrap_or(""),
                    s["addr"].as_str().unwrap_or(""),
                    s["connected"],
                    s["mode"].as_str().unwrap_or(""),
                    s["last_error"].as_str().unwrap_or("")
                );
            }
            for s in v["sources"].as_array().cloned().unwrap_or_default() {
                println!("source {:<13} {:<18} connected {} ({})", s["source"].as_str().unwrap_or(""), s["cluster_id"].as_str().unwrap_or(""), s["connected"], s["mode"].as_str().unwrap_or(""));
            }
        }),
        ReplCmd::Status { json } => call(admin, token, "GET", "/repl/status", Value::Null).map(|v| {
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap());
            } else {
                print_repl_status(&v);
            }
        }),
        ReplCmd::Realtime { cmd } => {
            let (verb, sink) = match cmd {
                OnOff4::Enable { sink } => ("enable", sink),
                OnOff4::Disable { sink } => ("disable", sink),
                OnOff4::Start { sink } => ("start", sink),
                OnOff4::Stop { sink } => ("stop", sink),
            };
            call(admin, token, "POST", &format!("/repl/realtime/{verb}"), json!({"sink": sink})).map(|v| println!("realtime to {sink}: {}", v["realtime"].as_str().unwrap_or("?")))
        }
        ReplCmd::ProxyGet { cmd } => {
            let (verb, sink) = match cmd {
                OnOff2::Enable { sink } => ("enable", sink),
                OnOff2::Disable { sink } => ("disable", sink),
            };
            call(admin, token, "POST", &format!("/repl/proxy-get/{verb}"), json!({"sink": sink})).map(|v| println!("proxy_get for {sink}: {}", v["proxy_get"]))
        }
        ReplCmd::Fullsync { cmd } => fullsync_cmd(admin, token, cmd),
    };
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("dataplane: {e}");
            1
        }
    }
}

fn fullsync_cmd(admin: &str, token: &str, cmd: FsCmd) -> Result<(), String> {
    match cmd {
        FsCmd::Enable { sink } => call(admin, token, "POST", "/repl/fullsync/enable", json!({"sink": sink})).map(|_| println!("fullsync to {sink} enabled")),
        FsCmd::Disable { sink } => call(admin, token, "POST", "/repl/fullsync/disable", json!({"sink": sink})).map(|_| println!("fullsync to {sink} disabled")),
        FsCmd::Stop { sink } => call(admin, token, "POST", "/repl/fullsync/stop", json!({"sink": sink})).map(|_| println!("fullsync to {sink} stopped")),
        FsCmd::Start { sink, wait } => {
            let v = call(admin, token, "POST", "/repl/fullsync/start", json!({"sink": sink}))?;
            println!("fullsync to {sink}: {}", v["fullsync"].as_str().unwrap_or("started"));
            if wait {
                wait_fullsync(admin, token, &sink, v["completed_runs"].as_u64().unwrap_or(0))?;
            }
            Ok(())
        }
        FsCmd::Status { json, sink } => call(admin, token, "GET", "/repl/fullsync/status", Value::Null).map(|v| {
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap());
            } else {
                print_fullsync(&v, sink.as_deref());
            }
        }),
    }
}

/// Shows a progress bar until the sink's fullsync ends (a run completes
/// after `before` completed runs, or the run stops with an error).
fn wait_fullsync(admin: &str, token: &str, sink: &str, before: u64) -> Result<(), String> {
    use std::io::Write;
    let mut seen_running = false;
    loop {
        let v = call(admin, token, "GET", "/repl/fullsync/status", Value::Null)?;
        let s = v["sinks"].as_array().and_then(|a| a.iter().find(|s| s["sink"] == sink).cloned()).ok_or_else(|| format!("no sink {sink}"))?;
        let total = s["partitions_total"].as_u64().unwrap_or(0).max(1);
        let done = s["partitions_done"].as_u64().unwrap_or(0);
        let running = s["state"].as_str() == Some("running");
        seen_running |= running;
        let width = 40;
        let filled = (done * width / total) as usize;
        print!(
            "\r[{}{}] {done}/{total} partitions  {} segments differ  {} objects  {} bytes sent  ",
            "#".repeat(filled),
            ".".repeat(width as usize - filled),
            s["segments_differing"],
            s["objects_sent"],
            s["bytes_sent"]
        );
        let _ = std::io::stdout().flush();
        let completed = s["completed_runs"].as_u64().unwrap_or(0) > before;
        if !running && (completed || (seen_running && !s["last_error"].as_str().unwrap_or("").is_empty())) {
            println!();
            if completed {
                println!("fullsync to {sink} finished in {} ms", s["last_duration_ms"]);
                return Ok(());
            }
            return Err(format!("fullsync to {sink} ended: {}", s["last_error"].as_str().unwrap_or("")));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn print_fullsync(v: &Value, only: Option<&str>) {
    for s in v["sinks"].as_array().cloned().unwrap_or_default() {
        if only.map(|o| s["sink"] != o).unwrap_or(false) {
            continue;
        }
        println!(
            "sink {}: {}  {}/{} partitions  {} segments differ  {} keys compared  {} objects / {} bytes sent  last completed {}  next {}  {}",
            s["sink"].as_str().unwrap_or("?"),
            s["state"].as_str().unwrap_or("?"),
            s["partitions_done"],
            s["partitions_total"],
            s["segments_differing"],
            s["keys_compared"],
            s["objects_sent"],
            s["bytes_sent"],
            s["last_completed_ms"],
            s["next_run_ms"],
            s["last_error"].as_str().unwrap_or("")
        );
        for p in s["partitions"].as_array().cloned().unwrap_or_default() {
            println!(
                "  partition {:>5}: {:<8} {} segments differ, {} keys compared, {} objects, {} bytes, {} ms, {} tries {}",
                p["partition"], p["state"].as_str().unwrap_or(""), p["segments_differing"], p["keys_compared"], p["objects_sent"], p["bytes_sent"], p["duration_ms"], p["attempts"], p["error"].as_str().unwrap_or("")
            );
        }
    }
}

pub fn print_repl_status(v: &Value) {
    let sinks = v["sinks"].as_array().cloned().unwrap_or_default();
    let sources = v["sources"].as_array().cloned().unwrap_or_default();
    if sinks.is_empty() && sources.is_empty() {
        println!("repl         no sinks, no sources");
        return;
    }
    for s in sinks {
        println!(
            "sink {:<12} {} {}  realtime {}  conns {}  queued {} records / {} bytes  oldest unacked {} ms  sent {}/{} acked {}/{}  rate {:.0} B/s  reconnects {}{}{}",
            s["sink"].as_str().unwrap_or("?"),
            if s["connected"].as_bool() == Some(true) { "connected" } else { "DISCONNECTED" },
            s["tls_mode"].as_str().unwrap_or(""),
            s["realtime"].as_str().unwrap_or("?"),
            s["data_connections"],
            s["queued_records"],
            s["queued_bytes"],
            s["oldest_unacked_age_ms"],
            s["records_sent"],
            s["bytes_sent"],
            s["records_acked"],
            s["bytes_acked"],
            s["send_rate_bytes_per_s"].as_f64().unwrap_or(0.0),
            s["reconnects"],
            if s["dirty"].as_bool() == Some(true) { "  DIRTY (fullsync due)" } else { "" },
            if s["last_error"].as_str().map(|e| !e.is_empty()).unwrap_or(false) { format!("  last error: {}", s["last_error"].as_str().unwrap()) } else { String::new() }
        );
    }
    for s in sources {
        println!(
            "source {:<10} {} {}  applied {} records / {} bytes",
            s["source"].as_str().unwrap_or("?"),
            if s["connected"].as_bool() == Some(true) { "connected" } else { "disconnected" },
            s["tls_mode"].as_str().unwrap_or(""),
            s["records_applied"],
            s["bytes_applied"]
        );
    }
}
