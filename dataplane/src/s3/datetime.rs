//! Calendar arithmetic and the date formats S3 uses, without any time crate.
//!
//! * ISO 8601 with milliseconds for XML bodies: `2024-01-01T00:00:00.000Z`
//! * SigV4 basic format: `20240101T000000Z`
//! * HTTP dates (RFC 9110 IMF-fixdate; RFC 850 and asctime accepted on input)

use std::time::{SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400; // [0, 399]
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146097 + doe - 719468
}

/// Inverse of [`days_from_civil`]: (year, month 1..=12, day 1..=31).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Seconds since the epoch from calendar fields, validating each field.
pub fn unix_from_parts(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<i64> {
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 60
    {
        return None;
    }
    // A leap second (60) is folded onto the next second, as most systems do.
    Some(days_from_civil(y, mo, d) * 86400 + h as i64 * 3600 + mi as i64 * 60 + s as i64)
}

/// (year, month, day, hour, minute, second) of a unix timestamp.
pub fn parts_from_unix(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

/// Whole seconds since the epoch (negative times clamp to 0).
pub fn system_time_to_unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs().min(i64::MAX as u64) as i64,
        Err(_) => 0,
    }
}

/// Milliseconds since the epoch (negative times clamp to 0).
pub fn system_time_to_unix_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis().min(i64::MAX as u128) as i64,
        Err(_) => 0,
    }
}

/// `2024-01-01T00:00:00.000Z` from unix milliseconds (S3 XML timestamps).
pub fn iso8601_millis(unix_millis: i64) -> String {
    let secs = unix_millis.div_euclid(1000);
    let ms = unix_millis.rem_euclid(1000);
    let (y, mo, d, h, mi, s) = parts_from_unix(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

fn num(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u32, |a, &c| a * 10 + (c - b'0') as u32))
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff]Z` into unix milliseconds.
pub fn parse_iso8601_millis(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    if *b.last()? != b'Z' {
        return None;
    }
    let secs = unix_from_parts(
        num(&b[0..4])? as i64,
        num(&b[5..7])?,
        num(&b[8..10])?,
        num(&b[11..13])?,
        num(&b[14..16])?,
        num(&b[17..19])?,
    )?;
    let frac = &b[19..b.len() - 1];
    let ms = if frac.is_empty() {
        0
    } else {
        if frac[0] != b'.' || frac.len() < 2 || frac.len() > 10 {
            return None;
        }
        let digits = &frac[1..];
        num(digits)?;
        let mut ms = 0u32;
        for i in 0..3 {
            ms = ms * 10 + digits.get(i).map_or(0, |c| (c - b'0') as u32);
        }
        ms
    };
    Some(secs * 1000 + ms as i64)
}

/// SigV4 timestamp `YYYYMMDDTHHMMSSZ`.
pub fn amz_date(unix_secs: i64) -> String {
    let (y, mo, d, h, mi, s) = parts_from_unix(unix_secs);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// Parses a SigV4 timestamp `YYYYMMDDTHHMMSSZ` (exactly 16 bytes).
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    unix_from_parts(
        num(&b[0..4])? as i64,
        num(&b[4..6])?,
        num(&b[6..8])?,
        num(&b[9..11])?,
        num(&b[11..13])?,
        num(&b[13..15])?,
    )
}

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// IMF-fixdate, e.g. `Fri, 24 May 2013 00:00:00 GMT` (Last-Modified, Date).
pub fn http_date(unix_secs: i64) -> String {
    let (y, mo, d, h, mi, s) = parts_from_unix(unix_secs);
    let wd = WEEKDAYS[unix_secs.div_euclid(86400).rem_euclid(7) as usize];
    format!(
        "{wd}, {d:02} {} {y:04} {h:02}:{mi:02}:{s:02} GMT",
        MONTHS[mo as usize - 1]
    )
}

fn month_from_name(s: &str) -> Option<u32> {
    MONTHS.iter().position(|m| *m == s).map(|i| i as u32 + 1)
}

fn parse_hms(s: &str) -> Option<(u32, u32, u32)> {
    let b = s.as_bytes();
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    Some((num(&b[0..2])?, num(&b[3..5])?, num(&b[6..8])?))
}

/// Parses an HTTP date in any of the three RFC 9110 formats into unix seconds.
/// The weekday name is not checked against the date.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let parts: Vec<&str> = s.split_ascii_whitespace().collect();
    match parts.as_slice() {
        // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
        [wd, d, mo, y, t, "GMT"] if wd.ends_with(',') && wd.len() == 4 => {
            if d.len() != 2 || y.len() != 4 {
                return None;
            }
            let (h, mi, sec) = parse_hms(t)?;
            unix_from_parts(
                num(y.as_bytes())? as i64,
                month_from_name(mo)?,
                num(d.as_bytes())?,
                h,
                mi,
                sec,
            )
        }
        // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
        [wd, date, t, "GMT"] if wd.ends_with(',') => {
            let dp: Vec<&str> = date.split('-').collect();
            if dp.len() != 3 || dp[0].len() != 2 || dp[2].len() != 2 {
                return None;
            }
            let yy = num(dp[2].as_bytes())? as i64;
            // RFC 9110: interpret a two-digit year more than 50 years in the
            // future as the past century; 70..99 -> 19xx, 00..69 -> 20xx.
            let y = if yy >= 70 { 1900 + yy } else { 2000 + yy };
            let (h, mi, sec) = parse_hms(t)?;
            unix_from_parts(
                y,
                month_from_name(dp[1])?,
                num(dp[0].as_bytes())?,
                h,
                mi,
                sec,
            )
        }
        // asctime: Sun Nov  6 08:49:37 1994
        [_wd, mo, d, t, y] if y.len() == 4 => {
            let (h, mi, sec) = parse_hms(t)?;
            if d.is_empty() || d.len() > 2 {
                return None;
            }
            unix_from_parts(
                num(y.as_bytes())? as i64,
                month_from_name(mo)?,
                num(d.as_bytes())?,
                h,
                mi,
                sec,
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip_over_wide_range() {
        for days in (-800_000i64..800_000).step_by(37) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11017);
        assert_eq!(civil_from_days(19723), (2024, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn iso8601_formats() {
        assert_eq!(iso8601_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            iso8601_millis(1_704_067_200_000),
            "2024-01-01T00:00:00.000Z"
        );
        assert_eq!(
            iso8601_millis(1_709_208_000_123),
            "2024-02-29T12:00:00.123Z"
        );
        assert_eq!(
            iso8601_millis(253_402_300_799_999),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(iso8601_millis(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            parse_iso8601_millis("2024-02-29T12:00:00.123Z"),
            Some(1_709_208_000_123)
        );
        assert_eq!(
            parse_iso8601_millis("2024-02-29T12:00:00Z"),
            Some(1_709_208_000_000)
        );
        assert_eq!(
            parse_iso8601_millis("2024-02-29T12:00:00.1Z"),
            Some(1_709_208_000_100)
        );
        assert_eq!(parse_iso8601_millis("2023-02-29T12:00:00.000Z"), None);
        assert_eq!(parse_iso8601_millis("2024-02-29 12:00:00.000Z"), None);
    }

    #[test]
    fn amz_dates() {
        assert_eq!(amz_date(1_369_353_600), "20130524T000000Z");
        assert_eq!(parse_amz_date("20130524T000000Z"), Some(1_369_353_600));
        assert_eq!(parse_amz_date("20240102T030405Z"), Some(1_704_164_645));
        for bad in [
            "20130524T000000",
            "2013-05-24T00:00:00Z",
            "20131324T000000Z",
            "20130524T250000Z",
            "2013052AT000000Z",
            "20130524t000000Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn system_time_conversion() {
        use std::time::Duration;
        let t = UNIX_EPOCH + Duration::from_millis(1_704_164_645_123);
        assert_eq!(system_time_to_unix(t), 1_704_164_645);
        assert_eq!(system_time_to_unix_millis(t), 1_704_164_645_123);
        let before = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(system_time_to_unix(before), 0);
        assert_eq!(system_time_to_unix_millis(before), 0);
    }

    #[test]
    fn http_dates() {
        assert_eq!(http_date(1_369_353_600), "Fri, 24 May 2013 00:00:00 GMT");
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Sun Nov  6 08:49:37 1994"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Fri, 24 May 2013 00:00:00 GMT"),
            Some(1_369_353_600)
        );
        assert_eq!(parse_http_date("Fri, 24 Mey 2013 00:00:00 GMT"), None);
        assert_eq!(parse_http_date("Fri, 24 May 2013 00:00:00 UTC"), None);
        assert_eq!(parse_http_date("garbage"), None);
        for t in [0i64, 951_782_400, 1_704_164_645, 4_102_444_800] {
            assert_eq!(parse_http_date(&http_date(t)), Some(t));
        }
    }
}
