//! Hybrid logical clock: `ms << 16 | counter`, shared by all cores of a node.
//! Stamps are strictly increasing and never behind a stamp seen from a peer,
//! so a write that follows a replicated one always wins.

use std::sync::atomic::{AtomicU64, Ordering};

/// Logical ticks available per millisecond before the clock runs ahead.
const COUNTER_BITS: u32 = 16;
/// A remote stamp this far ahead of our wall clock is a clock error: it is
/// still honoured (to keep LWW convergent) but logged.
pub const MAX_FORWARD_SKEW_MS: u64 = 60_000;

pub struct Hlc {
    last: AtomicU64,
}

impl Default for Hlc {
    fn default() -> Self {
        Hlc { last: AtomicU64::new(0) }
    }
}

impl Hlc {
    pub fn now(&self) -> u64 {
        let wall = storage::now_ms() << COUNTER_BITS;
        let mut cur = self.last.load(Ordering::Relaxed);
        loop {
            let next = if wall > cur { wall } else { cur + 1 };
            match self.last.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return next,
                Err(x) => cur = x,
            }
        }
    }

    /// Moves the clock past a stamp received from elsewhere.
    pub fn observe(&self, remote: u64) {
        let ahead = (remote >> COUNTER_BITS).saturating_sub(storage::now_ms());
        if ahead > MAX_FORWARD_SKEW_MS {
            log::warn!("hybrid clock: a peer's stamp is {ahead} ms ahead of this node's wall clock; check NTP");
        }
        self.last.fetch_max(remote, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn strictly_increasing_and_observes_remote() {
        let h = Hlc::default();
        let mut prev = 0;
        for _ in 0..100_000 {
            let t = h.now();
            assert!(t > prev);
            prev = t;
        }
        let far = prev + (5 << COUNTER_BITS);
        h.observe(far);
        assert!(h.now() > far);
    }
}
