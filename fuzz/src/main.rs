//! Command line for long fuzzing runs, corpus generation and replay.
//!
//! ```text
//! dataplane-fuzz <target|all> [--seconds N] [--seed S] [--grow] [--corpus DIR]
//! dataplane-fuzz replay <target> <file>...
//! dataplane-fuzz gen-corpus [--dir DIR]
//! dataplane-fuzz list
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use dataplane_fuzz::driver::{self, Options};
use dataplane_fuzz::rng::seed_from_time;
use dataplane_fuzz::targets;

const USAGE: &str = "usage:
  dataplane-fuzz <target|all> [--seconds N] [--seed S] [--grow] [--corpus DIR]
      fuzz for N seconds (default 60; per target with `all`); --grow adds
      inputs with new outcome classes to the corpus directory
  dataplane-fuzz replay <target> <file>...
      run the target on the given inputs (a crash file, a corpus file)
  dataplane-fuzz gen-corpus [--dir DIR]
      (re)write the seed-* files of every target's corpus (default fuzz/corpus)
  dataplane-fuzz list
      the targets";

fn names() -> String {
    targets::all().iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("{msg}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn value<'a>(args: &'a [String], i: &mut usize, flag: &str) -> Result<&'a str, String> {
    *i += 1;
    args.get(*i).map(String::as_str).ok_or_else(|| format!("{flag} needs a value"))
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let Some(cmd) = args.first() else { return Err("no command".into()) };
    match cmd.as_str() {
        "list" => {
            println!("{}", names().replace(", ", "\n"));
            Ok(ExitCode::SUCCESS)
        }
        "gen-corpus" => {
            let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
            let mut i = 1;
            while i < args.len() {
                match args[i].as_str() {
                    "--dir" => dir = PathBuf::from(value(args, &mut i, "--dir")?),
                    other => return Err(format!("unknown argument {other:?}")),
                }
                i += 1;
            }
            let written = dataplane_fuzz::write_corpus(&dir).map_err(|e| format!("writing {}: {e}", dir.display()))?;
            for (t, n) in written {
                println!("{t}: {n} seeds in {}", dir.join(t).display());
            }
            Ok(ExitCode::SUCCESS)
        }
        "replay" => {
            let name = args.get(1).ok_or("replay needs a target")?;
            let t = targets::by_name(name).ok_or_else(|| format!("unknown target {name:?} (targets: {})", names()))?;
            if args.len() < 3 {
                return Err("replay needs at least one file".into());
            }
            let mut failed = false;
            for f in &args[2..] {
                let data = std::fs::read(f).map_err(|e| format!("{f}: {e}"))?;
                match driver::run_one(t, &data) {
                    Ok(class) => println!("{f}: ok ({class})"),
                    Err(msg) => {
                        println!("{f}: PANIC: {msg}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        target => {
            let chosen: Vec<_> = if target == "all" {
                targets::all().to_vec()
            } else {
                vec![targets::by_name(target).ok_or_else(|| format!("unknown target {target:?} (targets: {})", names()))?]
            };
            let (mut seconds, mut seed, mut grow, mut corpus) = (60.0f64, None, false, None);
            let mut i = 1;
            while i < args.len() {
                match args[i].as_str() {
                    "--seconds" => seconds = value(args, &mut i, "--seconds")?.parse().map_err(|_| "--seconds needs a number")?,
                    "--seed" => seed = Some(value(args, &mut i, "--seed")?.parse::<u64>().map_err(|_| "--seed needs a u64")?),
                    "--grow" => grow = true,
                    "--corpus" => corpus = Some(PathBuf::from(value(args, &mut i, "--corpus")?)),
                    other => return Err(format!("unknown argument {other:?}")),
                }
                i += 1;
            }
            let seed = seed.unwrap_or_else(seed_from_time);
            let mut code = ExitCode::SUCCESS;
            for t in chosen {
                let corpus_dir = match &corpus {
                    Some(c) if target == "all" => c.join(t.name),
                    Some(c) => c.clone(),
                    None => driver::default_corpus_dir(t.name),
                };
                println!("fuzz {}: seed {seed}, {seconds}s, corpus {}{}", t.name, corpus_dir.display(), if grow { " (growing)" } else { "" });
                let opts = Options { seconds, seed, corpus_dir, crash_dir: driver::default_crash_dir(), grow, verbose: true };
                match driver::fuzz(t, &opts) {
                    Ok(r) => {
                        println!(
                            "fuzz {}: {} execs in {:.1}s = {:.0} execs/s; corpus {}, {} outcome classes, {} inputs added",
                            t.name,
                            r.execs,
                            r.elapsed.as_secs_f64(),
                            r.execs_per_sec(),
                            r.corpus,
                            r.classes,
                            r.grown
                        );
                        let shown = std::env::var("FUZZ_SHOW_CLASSES").ok().and_then(|s| s.parse().ok()).unwrap_or(25usize);
                        for (c, n) in r.class_counts.iter().take(shown) {
                            println!("  {n:>10}  {c}");
                        }
                        if r.class_counts.len() > shown {
                            println!("  ... {} more classes", r.class_counts.len() - shown);
                        }
                    }
                    Err(c) => {
                        println!("{c}");
                        code = ExitCode::FAILURE;
                    }
                }
            }
            Ok(code)
        }
    }
}
