//! The fuzzing loop: load the corpus, run every entry, then mutate entries
//! until the time is up. A panic (a parser bug or a broken invariant) stops
//! the run and leaves the input in the crash directory.
//!
//! There is no coverage instrumentation on stable Rust; instead each target
//! names the *outcome class* of an input (which error variant, which message
//! kind, which body framing). An input that produces a class not seen before
//! joins the in-memory pool (and, with `grow`, the corpus directory), so
//! that mutations build on inputs that got somewhere new.

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::mutate::Mutator;
use crate::rng::{hash64, Rng};

/// One fuzz target.
pub struct Target {
    pub name: &'static str,
    /// Runs the parsers on one input. Panics on a bug: a parser panic or a
    /// broken invariant. Returns the outcome class.
    pub run: fn(&[u8]) -> String,
    /// The seed inputs (file name, bytes), built with the real encoders.
    pub seeds: fn() -> Vec<(String, Vec<u8>)>,
    pub mutator: Mutator,
    /// Structure-aware repair applied to half of the mutants (recompute
    /// checksums, re-sign), so that they get past the first integrity check.
    pub fixup: Option<fn(&mut Vec<u8>)>,
}

pub struct Options {
    pub seconds: f64,
    pub seed: u64,
    pub corpus_dir: PathBuf,
    pub crash_dir: PathBuf,
    /// Write inputs with new outcome classes into `corpus_dir`.
    pub grow: bool,
    /// Print progress lines every few seconds.
    pub verbose: bool,
}

#[derive(Debug)]
pub struct Report {
    pub execs: u64,
    pub elapsed: Duration,
    pub corpus: usize,
    pub classes: usize,
    /// Inputs written to the corpus directory (`grow`).
    pub grown: usize,
    pub class_counts: Vec<(String, u64)>,
}

impl Report {
    pub fn execs_per_sec(&self) -> f64 {
        self.execs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Debug)]
pub struct Crash {
    pub target: &'static str,
    pub message: String,
    pub input: Vec<u8>,
    /// Where the input was written.
    pub path: Option<PathBuf>,
    /// A smaller input that panics the same way, if one was found.
    pub min_path: Option<PathBuf>,
    pub seed: u64,
}

impl std::fmt::Display for Crash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "fuzz target `{}` failed (FUZZ_SEED={}): {}", self.target, self.seed, self.message)?;
        match &self.path {
            Some(p) => {
                write!(
                    f,
                    "input ({} bytes) saved to {}\nreplay with: cargo run -p dataplane-fuzz -- replay {} {}",
                    self.input.len(),
                    p.display(),
                    self.target,
                    p.display()
                )?;
                if let Some(m) = &self.min_path {
                    write!(f, "\nminimized: {}", m.display())?;
                }
                Ok(())
            }
            None => write!(f, "input ({} bytes, could not be saved): {:?}", self.input.len(), self.input),
        }
    }
}

/// Corpus directory of a target inside this crate.
pub fn default_corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target)
}

pub fn default_crash_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crashes")
}

/// Every file of a corpus directory, sorted by name.
pub fn load_corpus(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<(String, Vec<u8>)> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            std::fs::read(e.path()).ok().map(|b| (name, b))
        })
        .collect();
    v.sort();
    v
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// Runs one input; `Err` carries the panic message.
pub fn run_one(target: &Target, data: &[u8]) -> Result<String, String> {
    panic::catch_unwind(AssertUnwindSafe(|| (target.run)(data))).map_err(|p| panic_message(&*p))
}

/// Coarse class: digits collapsed, echoed input (anything from a double
/// quote to the end of a ` | `-separated part) dropped, length bounded, so
/// that offsets, sizes and quoted input in error messages do not make every
/// input "new".
pub fn normalize_class(s: &str) -> String {
    let mut out = String::with_capacity(64);
    for (i, part) in s.split(" | ").enumerate() {
        if i > 0 {
            out.push_str(" | ");
        }
        let part = part.split('"').next().unwrap_or("");
        let mut in_digits = false;
        for c in part.chars().take(60) {
            if c.is_ascii_digit() {
                if !in_digits {
                    out.push('#');
                }
                in_digits = true;
            } else {
                in_digits = false;
                out.push(c);
            }
        }
    }
    out
}

fn save(dir: &Path, name: &str, data: &[u8]) -> Option<PathBuf> {
    std::fs::create_dir_all(dir).ok()?;
    let p = dir.join(name);
    std::fs::write(&p, data).ok()?;
    Some(p)
}

/// Shrinks a crashing input by deleting ranges while the target still
/// panics with the same message (bounded in time; panic output silenced
/// meanwhile).
pub fn minimize(target: &Target, input: &[u8], message: &str, budget: Duration) -> Vec<u8> {
    let key: String = message.chars().take(40).collect();
    let start = Instant::now();
    let prev = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let same = |d: &[u8]| matches!(run_one(target, d), Err(m) if m.chars().take(40).collect::<String>() == key);
    let mut cur = input.to_vec();
    let mut chunk = (cur.len() / 2).max(1);
    'outer: loop {
        let mut i = 0;
        let mut shrunk = false;
        while i + chunk <= cur.len() {
            if start.elapsed() > budget {
                break 'outer;
            }
            let mut cand = cur.clone();
            cand.drain(i..i + chunk);
            if same(&cand) {
                cur = cand;
                shrunk = true;
            } else {
                i += chunk;
            }
        }
        if !shrunk {
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
    }
    panic::set_hook(prev);
    cur
}

/// Writes the crashing input (and a minimized copy); the panic message of
/// the test mentions where.
fn crash(target: &Target, opts: &Options, message: String, input: Vec<u8>) -> Crash {
    let name = format!("{}-{:016x}", target.name, hash64(&input));
    let path = save(&opts.crash_dir, &name, &input);
    let min = minimize(target, &input, &message, Duration::from_secs(10));
    let min_path = if min.len() < input.len() { save(&opts.crash_dir, &format!("{name}.min"), &min) } else { None };
    Crash { target: target.name, message, input, path, min_path, seed: opts.seed }
}

/// Runs the corpus, then mutants until `opts.seconds` have passed.
pub fn fuzz(target: &Target, opts: &Options) -> Result<Report, Crash> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(opts.seconds.max(0.0));
    let mut rng = Rng::new(opts.seed);
    let mut pool: Vec<Vec<u8>> = load_corpus(&opts.corpus_dir).into_iter().map(|(_, b)| b).collect();
    if pool.is_empty() {
        eprintln!(
            "fuzz {}: no corpus in {}, using the built-in seeds (create it with `cargo run -p dataplane-fuzz -- gen-corpus`)",
            target.name,
            opts.corpus_dir.display()
        );
        pool = (target.seeds)().into_iter().map(|(_, b)| b).collect();
    }
    let corpus_len = pool.len();
    let mut classes: HashMap<String, u64> = HashMap::new();
    let mut execs = 0u64;
    let mut grown = 0usize;

    for input in pool.clone() {
        let class = run_one(target, &input).map_err(|m| crash(target, opts, m, input.clone()))?;
        execs += 1;
        *classes.entry(normalize_class(&class)).or_default() += 1;
    }

    let mut last_report = Instant::now();
    loop {
        if execs % 32 == 0 && Instant::now() >= deadline {
            break;
        }
        let a = rng.below(pool.len());
        let b = rng.below(pool.len());
        let mut input = target.mutator.mutate(&mut rng, &pool[a], &pool[b]);
        if let Some(fix) = target.fixup {
            if rng.chance(1, 2) {
                // A fixup that panics is a bug in the harness, not the
                // parser; report it the same way.
                panic::catch_unwind(AssertUnwindSafe(|| fix(&mut input)))
                    .map_err(|p| crash(target, opts, format!("fixup: {}", panic_message(&*p)), input.clone()))?;
            }
        }
        let class = run_one(target, &input).map_err(|m| crash(target, opts, m, input.clone()))?;
        execs += 1;
        let class = normalize_class(&class);
        let seen = classes.entry(class).or_default();
        *seen += 1;
        if *seen == 1 {
            if opts.grow {
                let name = format!("grown-{:016x}", hash64(&input));
                if save(&opts.corpus_dir, &name, &input).is_some() {
                    grown += 1;
                }
            }
            pool.push(input);
        }
        if opts.verbose && last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            let el = start.elapsed().as_secs_f64();
            eprintln!(
                "fuzz {}: {:.0}s {} execs ({:.0}/s), {} classes, pool {}",
                target.name,
                el,
                execs,
                execs as f64 / el,
                classes.len(),
                pool.len()
            );
        }
    }
    let mut class_counts: Vec<(String, u64)> = classes.into_iter().collect();
    class_counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(Report { execs, elapsed: start.elapsed(), corpus: corpus_len, classes: class_counts.len(), grown, class_counts })
}

/// The `#[test]` driver: `FUZZ_SECONDS` (default 5) and `FUZZ_SEED`
/// (default from the clock, printed). Panics with the replay command.
pub fn test_target(target: &Target) {
    let seconds = std::env::var("FUZZ_SECONDS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(5.0);
    let seed = match std::env::var("FUZZ_SEED") {
        Ok(s) => s.parse::<u64>().unwrap_or_else(|_| panic!("FUZZ_SEED must be a u64, got {s:?}")),
        Err(_) => crate::rng::seed_from_time(),
    };
    eprintln!("fuzz {}: FUZZ_SEED={seed} FUZZ_SECONDS={seconds}", target.name);
    let opts = Options {
        seconds,
        seed,
        corpus_dir: default_corpus_dir(target.name),
        crash_dir: default_crash_dir(),
        grow: false,
        verbose: false,
    };
    match fuzz(target, &opts) {
        Ok(r) => eprintln!(
            "fuzz {}: {} execs in {:.1}s ({:.0}/s), corpus {}, {} outcome classes",
            target.name,
            r.execs,
            r.elapsed.as_secs_f64(),
            r.execs_per_sec(),
            r.corpus,
            r.classes
        ),
        Err(c) => panic!("{c}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(d: &[u8]) -> String {
        if d.windows(3).any(|w| w == b"BUG") {
            panic!("found BUG");
        }
        format!("len {}", d.len().min(4))
    }

    fn seeds() -> Vec<(String, Vec<u8>)> {
        vec![("a".into(), b"xxxxBUxxxxxxxx".to_vec())]
    }

    static SELFTEST: Target = Target {
        name: "selftest",
        run,
        seeds,
        mutator: Mutator { dict: &[b"G"], limits: &[], max_len: 64, printable: true },
        fixup: None,
    };

    #[test]
    fn finds_saves_and_minimizes_a_crash() {
        let dir = std::env::temp_dir().join(format!("dataplane-fuzz-selftest-{}", std::process::id()));
        let opts = Options { seconds: 20.0, seed: 5, corpus_dir: dir.join("corpus"), crash_dir: dir.join("crashes"), grow: true, verbose: false };
        let c = fuzz(&SELFTEST, &opts).expect_err("the planted bug is found");
        assert_eq!(c.message, "found BUG");
        assert_eq!(std::fs::read(c.path.as_ref().unwrap()).unwrap(), c.input);
        assert_eq!(std::fs::read(c.min_path.as_ref().unwrap()).unwrap(), b"BUG");
        assert!(c.to_string().contains("replay selftest"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Five outcome classes, named without digits (class names have their
    /// numbers normalized away).
    fn first_byte(d: &[u8]) -> String {
        match d.first() {
            None => "empty".into(),
            Some(b) => ["zero", "one", "two", "three"][(b % 4) as usize].into(),
        }
    }

    static GROWS: Target = Target {
        name: "grows",
        run: first_byte,
        seeds,
        mutator: Mutator { dict: &[], limits: &[], max_len: 16, printable: false },
        fixup: None,
    };

    #[test]
    fn grow_writes_inputs_with_new_classes() {
        let dir = std::env::temp_dir().join(format!("dataplane-fuzz-grow-{}", std::process::id()));
        let opts = Options { seconds: 0.3, seed: 1, corpus_dir: dir.clone(), crash_dir: dir.join("crashes"), grow: true, verbose: false };
        let r = fuzz(&GROWS, &opts).unwrap();
        assert_eq!(r.classes, 5, "{:?}", r.class_counts);
        assert_eq!(r.grown, 4);
        assert_eq!(load_corpus(&dir).len(), 4);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn classes_ignore_numbers_and_echoed_input() {
        assert_eq!(normalize_class("short record: 12 of 64 bytes"), "short record: # of # bytes");
        assert_eq!(normalize_class("bad \"x1\" tail | next 7"), "bad  | next #");
    }
}
