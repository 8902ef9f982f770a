//! Expiration times: RFC 3339 timestamps and JSON epoch seconds to Unix
//! milliseconds, refusing what no calendar has and anything after year 9999.

use serde_json::Value;

/// The last millisecond of year 9999 (`9999-12-31T23:59:59.999Z`): no expiry is later.
const MAX_EXPIRY_MS: u64 = 253_402_300_799_999;

/// RFC 3339 timestamp -> Unix milliseconds: `2021-09-18T03:31:56Z`, with
/// fractional seconds (`…56.359Z`, truncated to the millisecond), with an
/// offset `+02:00` / `-05:30` (converted to UTC), lower-case `t` / `z`
/// accepted; year 1970..=9999; month, day (leap years included), hour, minute
/// and second ranges checked (no leap second 60). `None` if invalid, before
/// 1970 or after 9999 in UTC.
pub fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let mut c = Cursor(s.as_bytes());
    let year = c.digits(4)?;
    c.byte(b'-')?;
    let month = c.digits(2)?;
    c.byte(b'-')?;
    let day = c.digits(2)?;
    c.byte_of(b"Tt")?;
    let hour = c.digits(2)?;
    c.byte(b':')?;
    let minute = c.digits(2)?;
    c.byte(b':')?;
    let second = c.digits(2)?;
    let mut millis = 0;
    if c.byte(b'.').is_some() {
        // At least one digit; the first three are milliseconds, the rest are dropped.
        let mut n = 0;
        while let Some(d) = c.digit() {
            if n < 3 {
                millis = millis * 10 + d;
            }
            n += 1;
        }
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_minutes: i64 = match c.next()? {
        b'Z' | b'z' => 0,
        sign @ (b'+' | b'-') => {
            let h = c.digits(2)?;
            c.byte(b':')?;
            let m = c.digits(2)?;
            if h > 23 || m > 59 {
                return None;
            }
            let off = i64::from(h * 60 + m);
            if sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    if !c.0.is_empty()
        || !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(i64::from(year), i64::from(month), i64::from(day));
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_minutes * 60;
    let ms = secs.checked_mul(1000)?.checked_add(i64::from(millis))?;
    u64::try_from(ms).ok().filter(|&ms| ms <= MAX_EXPIRY_MS)
}

/// An `Expiration` value as JSON: a string (RFC 3339) or a number of epoch
/// SECONDS (integer or float, as STS JSON gives) -> Unix ms. Negative, NaN or
/// absurd (after year 9999) -> `None`.
pub fn parse_expiration(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => parse_rfc3339_ms(s),
        Value::Number(n) => {
            if let Some(secs) = n.as_u64() {
                secs.checked_mul(1000).filter(|&ms| ms <= MAX_EXPIRY_MS)
            } else {
                let ms = n.as_f64()? * 1000.0;
                // Rounded: 1631935916.359 * 1000 is 1631935916358.9998 in binary.
                // MAX_EXPIRY_MS is below 2^53, so the cast is exact and in range.
                (ms.is_finite() && (0.0..=MAX_EXPIRY_MS as f64).contains(&ms))
                    .then(|| ms.round() as u64)
            }
        }
        _ => None,
    }
}

/// A forward-only reader over ASCII bytes, without indexing.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn byte(&mut self, want: u8) -> Option<()> {
        self.byte_of(&[want])
    }

    fn byte_of(&mut self, set: &[u8]) -> Option<()> {
        match self.0.split_first() {
            Some((b, rest)) if set.contains(b) => {
                self.0 = rest;
                Some(())
            }
            _ => None,
        }
    }

    fn digit(&mut self) -> Option<u32> {
        match self.0.split_first() {
            Some((&b, rest)) if b.is_ascii_digit() => {
                self.0 = rest;
                Some(u32::from(b - b'0'))
            }
            _ => None,
        }
    }

    /// Exactly `n` ASCII digits (n <= 4, so no overflow).
    fn digits(&mut self, n: usize) -> Option<u32> {
        (0..n).try_fold(0, |acc, _| Some(acc * 10 + self.digit()?))
    }
}

fn is_leap(year: u32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
