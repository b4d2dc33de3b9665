//! `dataplane-fuzz`: a coverage-free mutation fuzzer for stable Rust, aimed
//! at the parsers that read bytes from the network: replication frames,
//! storage records in batch payloads, HTTP request heads and bodies, and
//! SigV4. See `fuzz/README.md`.
//!
//! * `targets`: one function per target, its seeds and its dictionary;
//! * `mutate`: the byte-level mutations;
//! * `driver`: the corpus/mutate/run loop, crash files, outcome classes.

pub mod driver;
pub mod mutate;
pub mod rng;
pub mod targets;

use std::path::Path;

/// Writes every target's seeds into `root/<target>/`, replacing the files
/// the generator wrote before (names starting with `seed-`); inputs grown by
/// the fuzzer or added by hand are left alone. Returns (target, files).
pub fn write_corpus(root: &Path) -> std::io::Result<Vec<(&'static str, usize)>> {
    let mut out = Vec::new();
    for t in targets::all() {
        let dir = root.join(t.name);
        std::fs::create_dir_all(&dir)?;
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with("seed-") {
                std::fs::remove_file(e.path())?;
            }
        }
        let seeds = (t.seeds)();
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
        }
        out.push((t.name, seeds.len()));
    }
    Ok(out)
}
