//! Each target for a bounded time: every corpus file, then mutants.
//! `FUZZ_SECONDS` (default 5) per target, `FUZZ_SEED` to replay a run. A
//! failure leaves the input in `fuzz/crashes/` and prints the replay command.

use dataplane_fuzz::driver::test_target;
use dataplane_fuzz::targets;

#[test]
fn frame() {
    test_target(&targets::frame::TARGET);
}

#[test]
fn record() {
    test_target(&targets::record::TARGET);
}

#[test]
fn http() {
    test_target(&targets::http::TARGET);
}

#[test]
fn sigv4() {
    test_target(&targets::sigv4::TARGET);
}
