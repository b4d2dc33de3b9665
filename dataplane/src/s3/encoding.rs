//! Percent-encoding and hex helpers shared by the other modules.
//!
//! [`uri_encode`] is the `UriEncode()` function of the SigV4 specification:
//! every byte except the RFC 3986 unreserved set `A-Z a-z 0-9 - . _ ~` is
//! written as `%XX` with upper-case hex digits, optionally keeping `/`.

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";
const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

#[inline]
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// SigV4 `UriEncode`: percent-encodes everything but unreserved characters
/// (and `/` when `keep_slash`).
pub fn uri_encode_into(out: &mut String, input: &[u8], keep_slash: bool) {
    for &b in input {
        if is_unreserved(b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX_UPPER[(b >> 4) as usize] as char);
            out.push(HEX_UPPER[(b & 15) as usize] as char);
        }
    }
}

/// See [`uri_encode_into`].
pub fn uri_encode(input: &[u8], keep_slash: bool) -> String {
    let mut s = String::with_capacity(input.len() + input.len() / 2);
    uri_encode_into(&mut s, input, keep_slash);
    s
}

#[inline]
fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Strict percent-decoding to bytes: a `%` must be followed by two hex
/// digits. `+` is kept literally when `plus_as_space` is false.
pub fn percent_decode_strict(input: &[u8], plus_as_space: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'%' => {
                let hi = hex_val(*input.get(i + 1)?)?;
                let lo = hex_val(*input.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Lenient percent-decoding: malformed `%` sequences are kept literally.
pub fn percent_decode_lenient(input: &[u8], plus_as_space: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'%' {
            if let (Some(hi), Some(lo)) = (
                input.get(i + 1).and_then(|&c| hex_val(c)),
                input.get(i + 2).and_then(|&c| hex_val(c)),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(if b == b'+' && plus_as_space { b' ' } else { b });
        i += 1;
    }
    out
}

/// Lower-case hex encoding.
pub fn hex_lower(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(HEX_LOWER[(b >> 4) as usize] as char);
        s.push(HEX_LOWER[(b & 15) as usize] as char);
    }
    s
}

/// Decodes exactly `N` bytes of hex (either case). `None` on any error.
pub fn hex_decode_array<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = hex_val(pair[0])? << 4 | hex_val(pair[1])?;
    }
    Some(out)
}

/// Constant-time equality for secrets of equal public length.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_encode_matches_sigv4_rules() {
        assert_eq!(uri_encode(b"test$file.text", false), "test%24file.text");
        assert_eq!(uri_encode(b"a b/c~d_e-f.g", true), "a%20b/c~d_e-f.g");
        assert_eq!(uri_encode(b"a b/c", false), "a%20b%2Fc");
        assert_eq!(uri_encode("ü+*".as_bytes(), false), "%C3%BC%2B%2A");
        assert_eq!(uri_encode(b"", false), "");
        assert_eq!(uri_encode(&[0, 0x7f, 0xff], false), "%00%7F%FF");
    }

    #[test]
    fn strict_decoding() {
        assert_eq!(percent_decode_strict(b"a%2Fb+c", false).unwrap(), b"a/b+c");
        assert_eq!(percent_decode_strict(b"a%2fb+c", true).unwrap(), b"a/b c");
        assert_eq!(
            percent_decode_strict(b"%C3%BC", false).unwrap(),
            "ü".as_bytes()
        );
        assert_eq!(percent_decode_strict(b"%zz", false), None);
        assert_eq!(percent_decode_strict(b"abc%", false), None);
        assert_eq!(percent_decode_strict(b"abc%4", false), None);
    }

    #[test]
    fn lenient_decoding_keeps_garbage() {
        assert_eq!(percent_decode_lenient(b"100%", false), b"100%");
        assert_eq!(percent_decode_lenient(b"%zz%41+", true), b"%zzA ");
    }

    #[test]
    fn hex_helpers() {
        assert_eq!(hex_lower(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(hex_decode_array::<3>(b"00ABff"), Some([0, 0xab, 0xff]));
        assert_eq!(hex_decode_array::<3>(b"00ABf"), None);
        assert_eq!(hex_decode_array::<2>(b"0g00"), None);
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
