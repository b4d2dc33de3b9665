//! `cargo run --release -p bench -- SCENARIO [--quick] [--out FILE]`
//!
//! Every figure is reported with the anchor it is compared with, measured
//! in the same run. See docs/benchmarks.md.
//!
//! The scenarios that run clusters start real `dataplane serve` processes
//! from target/release/dataplane (build it with
//! `cargo build --release -p bench -p dataplane`).

mod anchors;
mod flamegraph;
mod garage;
mod proxy;
mod redis;
mod report;
mod scenarios;
mod util;

use std::path::PathBuf;

pub struct Opts {
    pub quick: bool,
    pub work_dir: PathBuf,
    pub out: Option<PathBuf>,
    /// Round-trip time of the `wan` scenario's proxy.
    pub rtt_ms: u64,
    /// Key count of the `fullsync` scenario (default 1,000,000; quick 20,000).
    pub keys: Option<usize>,
}

const SCENARIOS: &[&str] = &["storage-append", "s3-put-get", "realtime-bulk", "realtime-small", "realtime-tls", "lag", "wan", "fullsync", "scale"];

const USAGE: &str = "usage: bench SCENARIO|all [--quick] [--out FILE] [--work-dir DIR] [--rtt-ms MS] [--keys N]
       bench flamegraph PERF_SCRIPT_OUTPUT OUT.svg [TITLE]";

fn run_one(s: &str, o: &Opts) -> Result<Vec<report::Figure>, String> {
    match s {
        "storage-append" => Ok(scenarios::storage_append::run(o)),
        "s3-put-get" => scenarios::s3_put_get::run(o),
        "realtime-bulk" => scenarios::realtime::bulk(o),
        "realtime-small" => scenarios::realtime::small(o),
        "realtime-tls" => scenarios::realtime::tls(o),
        "lag" => scenarios::lag::run(o),
        "wan" => scenarios::realtime::wan(o),
        "fullsync" => scenarios::fullsync::run(o),
        "scale" => scenarios::scale::run(o),
        other => Err(format!("unknown scenario {other}; known: {}", SCENARIOS.join(", "))),
    }
}

fn main() {
    storage::tune_malloc();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(|s| s.as_str()) == Some("flamegraph") {
        if argv.len() < 3 {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
        let title = argv.get(3).cloned().unwrap_or_else(|| "dataplane bench".into());
        if let Err(e) = flamegraph::run(argv[1].as_ref(), argv[2].as_ref(), &title) {
            eprintln!("flamegraph: {e}");
            std::process::exit(1);
        }
        return;
    }
    let mut args = argv.into_iter();
    let mut scenario = None;
    let mut o = Opts { quick: false, work_dir: PathBuf::from("/var/tmp/dataplane-bench"), out: None, rtt_ms: 50, keys: None };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--out" => o.out = args.next().map(PathBuf::from),
            "--work-dir" => o.work_dir = args.next().map(PathBuf::from).expect("--work-dir DIR"),
            "--rtt-ms" => o.rtt_ms = args.next().and_then(|v| v.parse().ok()).expect("--rtt-ms MILLISECONDS"),
            "--keys" => o.keys = Some(args.next().and_then(|v| v.parse().ok()).expect("--keys N")),
            "-h" | "--help" => {
                println!("{USAGE}\nscenarios: {}", SCENARIOS.join(", "));
                return;
            }
            s if scenario.is_none() => scenario = Some(s.to_string()),
            s => panic!("unexpected argument {s}"),
        }
    }
    let scenario = scenario.unwrap_or_else(|| {
        eprintln!("{USAGE}\nscenarios: {}", SCENARIOS.join(", "));
        std::process::exit(2)
    });
    if scenario != "all" && !SCENARIOS.contains(&scenario.as_str()) {
        eprintln!("unknown scenario {scenario}; known: {}", SCENARIOS.join(", "));
        std::process::exit(2);
    }
    std::fs::create_dir_all(&o.work_dir).expect("create work dir");
    let list: Vec<&str> = if scenario == "all" { SCENARIOS.to_vec() } else { vec![scenario.as_str()] };
    if scenario == "all" && o.out.is_none() {
        o.out = Some(PathBuf::from("bench-results/all.jsonl"));
    }
    if let Some(out) = &o.out {
        if let Some(d) = out.parent() {
            std::fs::create_dir_all(d).ok();
        }
    }
    let mut failed = Vec::new();
    for s in list {
        println!("=== {s}{} ===", if o.quick { " (quick)" } else { "" });
        let t = std::time::Instant::now();
        // A failing scenario does not stop `all`: it is reported and the
        // run goes on.
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_one(s, &o)));
        match res {
            Ok(Ok(figs)) => report::print(&figs, o.out.as_deref()),
            Ok(Err(e)) => {
                eprintln!("scenario {s} failed: {e}");
                failed.push(s);
            }
            Err(_) => {
                eprintln!("scenario {s} panicked");
                failed.push(s);
            }
        }
        println!("({s}: {:.1} s)\n", t.elapsed().as_secs_f64());
    }
    if !failed.is_empty() {
        eprintln!("failed scenarios: {}", failed.join(", "));
        std::process::exit(1);
    }
}
