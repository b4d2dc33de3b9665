//! Byte-level mutations. Each target supplies a dictionary of tokens and the
//! limits its parser enforces; the mutator mixes blind bit flips with
//! boundary values written as little-endian integers and as decimal or hex
//! text, so that both binary length fields and textual numbers
//! (`Content-Length`, chunk sizes, `X-Amz-Expires`) hit their edges.

use crate::rng::Rng;

/// What a target tells the mutator about its input format.
pub struct Mutator {
    /// Tokens worth inserting (header names, separators, keywords).
    pub dict: &'static [&'static [u8]],
    /// Limits the parser enforces (each is tried as `v - 1`, `v`, `v + 1`).
    pub limits: &'static [u64],
    /// Inputs never grow beyond this many bytes.
    pub max_len: usize,
    /// Text formats whose interesting part sits behind a syntax check
    /// (SigV4 behind the HTTP head): new bytes are printable ASCII, so that
    /// most mutants still parse as a head and reach the code behind it.
    pub printable: bool,
}

const PRINTABLE_INTERESTING: [u8; 16] = *b" %/=&;,.-_~09fZ?";

const INTERESTING_BYTES: [u8; 12] = [0, 1, 0x7f, 0x80, 0xff, 0x20, b'\r', b'\n', b'\t', b'0', b'9', b'%'];

fn width_max(w: usize) -> u64 {
    if w == 8 {
        u64::MAX
    } else {
        (1u64 << (w * 8)) - 1
    }
}

impl Mutator {
    fn random_byte(&self, rng: &mut Rng) -> u8 {
        if self.printable {
            b' ' + rng.below(95) as u8
        } else {
            rng.byte()
        }
    }

    fn interesting_byte(&self, rng: &mut Rng) -> u8 {
        if self.printable {
            *rng.pick(&PRINTABLE_INTERESTING)
        } else {
            *rng.pick(&INTERESTING_BYTES)
        }
    }

    /// A boundary value for an integer of `w` bytes.
    fn boundary(&self, rng: &mut Rng, w: usize) -> u64 {
        let max = width_max(w);
        let v = match rng.below(6) {
            0 => 0,
            1 => 1,
            2 => max,
            3 => max - 1,
            4 => max >> 1, // signed max
            _ => {
                if self.limits.is_empty() {
                    (max >> 1) + 1
                } else {
                    let l = *rng.pick(self.limits);
                    match rng.below(3) {
                        0 => l.wrapping_sub(1),
                        1 => l,
                        _ => l.wrapping_add(1),
                    }
                }
            }
        };
        v & max
    }

    /// A number as text: boundaries, limits, and values just past 2^32 and 2^64.
    fn number_text(&self, rng: &mut Rng) -> Vec<u8> {
        const TEXT: [&str; 10] = [
            "0",
            "1",
            "-1",
            "00000000000000000000001",
            "4294967295",
            "4294967296",
            "9223372036854775807",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999",
        ];
        let hex = rng.chance(1, 3);
        let v = match rng.below(3) {
            0 => return TEXT[rng.below(TEXT.len())].as_bytes().to_vec(),
            1 => self.boundary(rng, 8),
            _ => self.boundary(rng, 4),
        };
        if hex {
            format!("{v:x}").into_bytes()
        } else {
            v.to_string().into_bytes()
        }
    }

    /// One random edit of `b` in place. `other` is another corpus entry, for
    /// splicing.
    fn mutate_once(&self, rng: &mut Rng, b: &mut Vec<u8>, other: &[u8]) {
        let len = b.len();
        match rng.below(16) {
            // Flip 1..8 bits.
            0 | 1 if len > 0 => {
                for _ in 0..rng.range(1, 8) {
                    let i = rng.below(len);
                    b[i] = if self.printable { self.random_byte(rng) } else { b[i] ^ 1 << rng.below(8) };
                }
            }
            // Set a byte to an interesting value.
            2 if len > 0 => {
                let i = rng.below(len);
                b[i] = self.interesting_byte(rng);
            }
            // Set a byte to a random value / nudge it.
            3 if len > 0 => {
                let i = rng.below(len);
                b[i] = if rng.chance(1, 2) || self.printable { self.random_byte(rng) } else { b[i].wrapping_add(rng.range(1, 4) as u8).wrapping_sub(2) };
            }
            // Truncate.
            4 if len > 0 => {
                let n = rng.below(len);
                b.truncate(n);
            }
            // Extend with random bytes, a token, or a copy of the tail.
            5 => {
                let add: Vec<u8> = match rng.below(3) {
                    0 => (0..rng.range(1, 32)).map(|_| self.random_byte(rng)).collect(),
                    1 if !self.dict.is_empty() => rng.pick(self.dict).to_vec(),
                    _ => {
                        let s = rng.below(len + 1);
                        b[s..].to_vec()
                    }
                };
                b.extend_from_slice(&add);
            }
            // Duplicate a range (insert a copy right after or elsewhere).
            6 if len > 0 => {
                let s = rng.below(len);
                let e = rng.range(s + 1, len.min(s + 256));
                let piece = b[s..e].to_vec();
                let at = if rng.chance(1, 2) { e } else { rng.below(len + 1) };
                b.splice(at..at, piece);
            }
            // Remove a range.
            7 if len > 0 => {
                let s = rng.below(len);
                let e = rng.range(s + 1, len.min(s + 256));
                b.drain(s..e);
            }
            // Splice with another corpus entry.
            8 | 9 if !other.is_empty() => {
                if rng.chance(1, 2) {
                    // prefix of this one, suffix of the other
                    let a = rng.below(len + 1);
                    let o = rng.below(other.len());
                    b.truncate(a);
                    b.extend_from_slice(&other[o..]);
                } else {
                    // insert a piece of the other
                    let s = rng.below(other.len());
                    let e = rng.range(s + 1, other.len().min(s + 512));
                    let at = rng.below(len + 1);
                    b.splice(at..at, other[s..e].iter().copied());
                }
            }
            // Overwrite a u16/u32/u64 little-endian field with a boundary.
            10 | 11 if !self.printable => {
                let w = *rng.pick(&[2usize, 4, 4, 8]);
                if len >= w {
                    // Prefer aligned offsets: the binary formats align their fields.
                    let mut at = rng.below(len - w + 1);
                    if rng.chance(3, 4) {
                        at -= at % w;
                    }
                    let v = self.boundary(rng, w);
                    if rng.chance(7, 8) {
                        b[at..at + w].copy_from_slice(&v.to_le_bytes()[..w]);
                    } else {
                        // Big-endian (block keys carry big-endian indexes).
                        b[at..at + w].copy_from_slice(&v.to_be_bytes()[8 - w..]);
                    }
                }
            }
            // Insert or overwrite with a dictionary token.
            12 | 13 if !self.dict.is_empty() => {
                let t = *rng.pick(self.dict);
                let at = rng.below(len + 1);
                if rng.chance(1, 2) || at + t.len() > len {
                    b.splice(at..at, t.iter().copied());
                } else {
                    b[at..at + t.len()].copy_from_slice(t);
                }
            }
            // Replace a run of digits with a boundary number as text.
            14 if len > 0 => {
                let start = rng.below(len);
                let Some(s) = (start..len).chain(0..start).find(|&i| b[i].is_ascii_hexdigit()) else {
                    return;
                };
                let mut e = s;
                while e < len && b[e].is_ascii_hexdigit() {
                    e += 1;
                }
                let mut s = s;
                while s > 0 && b[s - 1].is_ascii_hexdigit() {
                    s -= 1;
                }
                let num = self.number_text(rng);
                b.splice(s..e, num);
            }
            // Swap two bytes.
            _ if len > 1 => {
                let (i, j) = (rng.below(len), rng.below(len));
                b.swap(i, j);
            }
            _ => b.push(self.random_byte(rng)),
        }
    }

    /// A mutant of `input`: 1 to 8 stacked edits (usually few).
    pub fn mutate(&self, rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
        let mut b = input.to_vec();
        let mut n = 1;
        while n < 8 && rng.chance(1, 2) {
            n += 1;
        }
        for _ in 0..n {
            self.mutate_once(rng, &mut b, other);
            if b.len() > self.max_len {
                b.truncate(self.max_len);
            }
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutants_differ_and_respect_max_len() {
        let m = Mutator { dict: &[b"\r\n", b"chunked"], limits: &[1 << 20], max_len: 64, printable: false };
        let mut rng = Rng::new(3);
        let input = b"PUT /a HTTP/1.1\r\ncontent-length: 12\r\n\r\n".to_vec();
        let mut changed = 0;
        for _ in 0..2000 {
            let out = m.mutate(&mut rng, &input, b"other entry 123");
            assert!(out.len() <= 64);
            changed += (out != input) as usize;
        }
        assert!(changed > 1800, "only {changed} of 2000 mutants differ");
    }
}
