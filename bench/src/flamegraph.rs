//! `bench flamegraph PERF_SCRIPT_OUTPUT OUT.svg`: folds `perf script`
//! output into stacks and draws them with inferno (scripts/profile.sh).

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use inferno::collapse::perf::{Folder, Options as FoldOptions};
use inferno::collapse::Collapse;

pub fn run(input: &Path, out: &Path, title: &str) -> Result<(), String> {
    let reader = BufReader::with_capacity(1 << 20, File::open(input).map_err(|e| format!("{}: {e}", input.display()))?);
    let mut folded = Vec::new();
    let mut folder = Folder::from(FoldOptions::default());
    folder.collapse(reader, &mut folded).map_err(|e| format!("folding {}: {e}", input.display()))?;
    if folded.is_empty() {
        return Err(format!("{} has no stacks (was perf record run with -g?)", input.display()));
    }
    let folded_path = out.with_extension("folded");
    std::fs::write(&folded_path, &folded).map_err(|e| format!("{}: {e}", folded_path.display()))?;
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = title.to_string();
    opts.count_name = "samples".into();
    let w = BufWriter::new(File::create(out).map_err(|e| format!("{}: {e}", out.display()))?);
    inferno::flamegraph::from_reader(&mut opts, &folded[..], w).map_err(|e| format!("drawing {}: {e}", out.display()))?;
    Ok(())
}
