//! `cargo run --release -p bench -- SCENARIO [--quick] [--out FILE]`
//!
//! Every figure is reported with the anchor it is compared with, measured
//! in the same run. See docs/benchmarks.md.

mod anchors;
mod report;
mod scenarios;

use std::path::PathBuf;

pub struct Opts {
    pub quick: bool,
    pub work_dir: PathBuf,
    pub out: Option<PathBuf>,
}

const SCENARIOS: &[&str] = &["storage-append"];

fn main() {
    storage::tune_malloc();
    let mut args = std::env::args().skip(1);
    let mut scenario = None;
    let mut o = Opts { quick: false, work_dir: PathBuf::from("/var/tmp/dataplane-bench"), out: None };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--out" => o.out = args.next().map(PathBuf::from),
            "--work-dir" => o.work_dir = args.next().map(PathBuf::from).expect("--work-dir DIR"),
            "-h" | "--help" => {
                println!("usage: bench SCENARIO|all [--quick] [--out FILE] [--work-dir DIR]\nscenarios: {}", SCENARIOS.join(", "));
                return;
            }
            s if scenario.is_none() => scenario = Some(s.to_string()),
            s => panic!("unexpected argument {s}"),
        }
    }
    let scenario = scenario.unwrap_or_else(|| {
        eprintln!("usage: bench SCENARIO|all [--quick] [--out FILE]\nscenarios: {}", SCENARIOS.join(", "));
        std::process::exit(2)
    });
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
    for s in list {
        let figs = match s {
            "storage-append" => scenarios::storage_append::run(&o),
            other => {
                eprintln!("unknown scenario {other}; known: {}", SCENARIOS.join(", "));
                std::process::exit(2)
            }
        };
        report::print(&figs, o.out.as_deref());
    }
}
