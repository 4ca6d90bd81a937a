//! FHIRPath date, dateTime and time comparison (FHIRPath N1 §6.1, §6.2):
//! by value, not by text. Offsets are normalised to UTC before comparing
//! (`01:30-04:00` is after `01:15-05:00`); seconds and their fraction are
//! one precision (`10:30:00` equals `10:30:00.0`); where one value stops
//! at a coarser precision than the other and they agree up to it, the
//! answer is unknown (empty), never guessed.

use std::cmp::Ordering;

/// A temporal value as parsed: components present up to its precision.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parsed {
    /// Date components (year, month, day) present; empty for a time.
    date: Vec<i64>,
    /// Time components (hour, minute, nanoseconds of the minute) present.
    time: Vec<i64>,
    /// Offset from UTC in minutes, when written.
    offset: Option<i64>,
    is_time: bool,
}

fn number(s: &str) -> Option<i64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

fn parse_time(s: &str) -> Option<(Vec<i64>, Option<i64>)> {
    let (clock, offset) = match s.find(['Z', '+', '-']) {
        Some(i) => {
            let tz = &s[i..];
            let offset = if tz == "Z" {
                0
            } else {
                let (h, m) = tz[1..].split_once(':')?;
                let minutes = number(h)? * 60 + number(m)?;
                if tz.starts_with('-') {
                    -minutes
                } else {
                    minutes
                }
            };
            (&s[..i], Some(offset))
        }
        None => (s, None),
    };
    let mut parts = clock.split(':');
    let mut time = vec![];
    if let Some(h) = parts.next().filter(|h| !h.is_empty()) {
        time.push(number(h)?);
    }
    if let Some(m) = parts.next() {
        time.push(number(m)?);
    }
    if let Some(sec) = parts.next() {
        let (whole, fraction) = sec.split_once('.').unwrap_or((sec, ""));
        let digits = fraction.get(..fraction.len().min(9))?;
        let nanos = if digits.is_empty() { 0 } else { number(digits)? * 10i64.pow(9 - digits.len() as u32) };
        time.push(number(whole)? * 1_000_000_000 + nanos);
    }
    if parts.next().is_some() {
        return None;
    }
    Some((time, offset))
}

fn parse(text: &str) -> Option<Parsed> {
    // A FHIRPath time literal is `@T10:30`; a FHIR `time` value `10:30:00`.
    let bare_time = !text.contains('T') && text.contains(':');
    if let Some(t) = text.strip_prefix('T').or(bare_time.then_some(text)) {
        let (time, offset) = parse_time(t)?;
        return Some(Parsed { date: vec![], time, offset, is_time: true });
    }
    let (d, t) = text.split_once('T').unwrap_or((text, ""));
    let date = d.split('-').map(number).collect::<Option<Vec<i64>>>()?;
    if date.is_empty() || date.len() > 3 {
        return None;
    }
    let (time, offset) = if t.is_empty() {
        // A dateTime may end in a bare `T` (FHIRPath `@2015T`).
        (vec![], None)
    } else {
        parse_time(t)?
    };
    Some(Parsed { date, time, offset, is_time: false })
}

/// Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl Parsed {
    /// Every component present, as UTC when an offset is written and the
    /// value reaches minutes (an offset cannot move a coarser value).
    fn components(&self) -> Vec<i64> {
        let mut all: Vec<i64> = self.date.iter().chain(&self.time).copied().collect();
        let Some(offset) = self.offset.filter(|o| *o != 0) else { return all };
        if self.is_time {
            if self.time.len() >= 2 {
                let minutes = (self.time[0] * 60 + self.time[1] - offset).rem_euclid(24 * 60);
                all[0] = minutes / 60;
                all[1] = minutes % 60;
            }
            return all;
        }
        if self.date.len() == 3 && self.time.len() >= 2 {
            let (y, m, d) = (self.date[0], self.date[1], self.date[2]);
            let minutes = days_from_civil(y, m, d) * 1440 + self.time[0] * 60 + self.time[1] - offset;
            let (y, m, d) = civil_from_days(minutes.div_euclid(1440));
            let of_day = minutes.rem_euclid(1440);
            all[..5].copy_from_slice(&[y, m, d, of_day / 60, of_day % 60]);
        }
        all
    }
}

/// The order of two temporal values: `None` when it cannot be known (they
/// agree up to the coarser one's precision) or they are of different kinds
/// (a time against a date).
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (x, y) = (parse(a)?, parse(b)?);
    if x.is_time != y.is_time {
        return None;
    }
    // One offset written, the other not: no common clock.
    if x.offset.is_some() != y.offset.is_some() && x.time.len() >= 2 && y.time.len() >= 2 {
        return None;
    }
    let (p, q) = (x.components(), y.components());
    for (u, v) in p.iter().zip(&q) {
        if u != v {
            return Some(u.cmp(v));
        }
    }
    (p.len() == q.len()).then_some(Ordering::Equal)
}

/// FHIRPath `=` on temporal values: `None` (empty) where precision leaves
/// it unknown; a time never equals a date.
pub fn equal(a: &str, b: &str) -> Option<bool> {
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) if x.is_time != y.is_time => Some(false),
        (Some(_), Some(_)) => compare(a, b).map(|o| o == Ordering::Equal),
        _ => Some(a == b),
    }
}

/// FHIRPath `~`: different precisions are simply not equivalent.
pub fn equivalent(a: &str, b: &str) -> bool {
    compare(a, b) == Some(Ordering::Equal)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    days_from_civil(if m == 12 { y + 1 } else { y }, if m == 12 { 1 } else { m + 1 }, 1) - days_from_civil(y, m, 1)
}

/// A temporal value as written, for functions that write one back at the
/// precision it had: date components, clock components (hours, minutes,
/// whole seconds), the fraction's digits and the offset as text.
struct Written<'t> {
    date: Vec<i64>,
    clock: Vec<i64>,
    fraction: &'t str,
    offset: Option<&'t str>,
    /// A `T` is written (a time, or a dateTime, even `@2015T`).
    has_t: bool,
}

impl<'t> Written<'t> {
    fn split(text: &'t str) -> Option<Written<'t>> {
        let (date, rest) = match text.split_once('T') {
            Some((d, r)) => (d, Some(r)),
            None => (text, None),
        };
        let offset_at = rest.and_then(|r| r.find(['Z', '+', '-']));
        let (clock, offset) = match (rest, offset_at) {
            (Some(r), Some(i)) => (&r[..i], Some(&r[i..])),
            (Some(r), None) => (r, None),
            (None, _) => ("", None),
        };
        let parts = |s: &str, sep| -> Option<Vec<i64>> {
            if s.is_empty() {
                Some(vec![])
            } else {
                s.split(sep).map(number).collect()
            }
        };
        let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
        Some(Written { date: parts(date, '-')?, clock: parts(hms, ':')?, fraction, offset, has_t: rest.is_some() })
    }
}

/// The text of a date, clock, fraction digits and offset; the `T` when
/// there is a clock or `force_t`.
fn write(date: &[i64], clock: &[i64], fraction: Option<&str>, offset: Option<&str>, force_t: bool) -> String {
    let mut out = String::new();
    if let Some((year, rest)) = date.split_first() {
        out.push_str(&format!("{year:04}"));
        for v in rest {
            out.push_str(&format!("-{v:02}"));
        }
    }
    if !clock.is_empty() || force_t {
        out.push('T');
        out.push_str(&clock.iter().map(|v| format!("{v:02}")).collect::<Vec<_>>().join(":"));
        if let Some(f) = fraction {
            out.push('.');
            out.push_str(f);
        }
        out.push_str(offset.unwrap_or_default());
    }
    out
}

/// `text` plus `amount` of `unit` (FHIRPath N1 §6.6.1), written at the
/// precision and offset it had; `None` where the spec gives no answer
/// medrec can be sure of (a unit finer than the value, a UCUM `mo` or
/// `a`, which are not calendar months and years).
pub fn add(text: &str, amount: i64, unit: &str) -> Option<String> {
    let Written { date: mut d, clock: mut c, fraction, offset, has_t } = Written::split(text)?;
    if d.is_empty() {
        return None;
    }
    let places = fraction.len() as u32;
    let mut frac = if fraction.is_empty() { 0 } else { number(fraction)? };
    // Milliseconds as the fraction holds them (three places, or none).
    let precision = match unit {
        "year" => 1,
        "month" => 2,
        "week" | "wk" | "day" | "d" => 3,
        "hour" | "h" => 4,
        "minute" | "min" => 5,
        "second" | "s" => 6,
        "millisecond" | "ms" if places == 3 => 7,
        _ => return None,
    };
    if d.len() + c.len() + usize::from(places > 0) < precision {
        return None;
    }
    match unit {
        "year" => d[0] = d[0].checked_add(amount)?,
        "month" => {
            let months = d[0].checked_mul(12)?.checked_add(d[1] - 1)?.checked_add(amount)?;
            d[0] = months.div_euclid(12);
            d[1] = months.rem_euclid(12) + 1;
        }
        _ => {
            let per_day: i64 = 86_400_000;
            let ms = amount.checked_mul(match unit {
                "week" | "wk" => 7 * per_day,
                "day" | "d" => per_day,
                "hour" | "h" => 3_600_000,
                "minute" | "min" => 60_000,
                "second" | "s" => 1000,
                _ => 1,
            })?;
            let of_day = c.first().copied().unwrap_or(0) * 3_600_000
                + c.get(1).copied().unwrap_or(0) * 60_000
                + c.get(2).copied().unwrap_or(0) * 1000
                + if places == 3 { frac } else { 0 };
            let total = days_from_civil(d[0], d[1], d[2]).checked_mul(per_day)?.checked_add(of_day)?.checked_add(ms)?;
            let (y, m, day) = civil_from_days(total.div_euclid(per_day));
            let rem = total.rem_euclid(per_day);
            d = vec![y, m, day];
            let parts = [rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60];
            for (slot, value) in c.iter_mut().zip(parts) {
                *slot = value;
            }
            if places == 3 {
                frac = rem % 1000;
            }
        }
    }
    // FHIR writes four-digit years: beyond them there is no answer.
    if !(1..=9999).contains(&d[0]) {
        return None;
    }
    if d.len() == 3 {
        d[2] = d[2].min(days_in_month(d[0], d[1]));
    }
    let fraction = (places > 0).then(|| format!("{frac:0width$}", width = places as usize));
    Some(write(&d, &c, fraction.as_deref(), offset, has_t))
}

/// The earliest (`high` false) or latest moment a date, dateTime or time
/// may stand for, to `digits` digits of precision (FHIRPath 2.0: 4, 6, 8
/// for a date; 10 to 17 for a dateTime; 2 to 9 for a time). An hour alone
/// is read with its minutes, as FHIR writes it; a dateTime without an
/// offset spans every offset (+14:00 earliest, -12:00 latest).
pub fn boundary(text: &str, high: bool, digits: Option<u32>) -> Option<String> {
    let is_time = text.starts_with('T');
    let Written { date: mut d, clock: mut c, fraction, offset, has_t } = Written::split(text)?;
    if c.len() == 1 {
        c.push(0);
    }
    let wanted = match (is_time, digits) {
        (true, None | Some(9)) => 4,
        (true, Some(p @ (2 | 4 | 6))) => p as usize / 2,
        (false, None) if !has_t => 3,
        (false, None | Some(17)) => 7,
        (false, Some(p @ (4 | 6 | 8 | 10 | 12 | 14))) => (p as usize - 2) / 2,
        _ => return None,
    };
    let date_wanted = if is_time { 0 } else { wanted.min(3) };
    let clock_wanted = if is_time { wanted } else { wanted.saturating_sub(3) };
    d.truncate(date_wanted);
    while d.len() < date_wanted {
        let next = match (d.len(), high) {
            (1, false) | (2, false) => 1,
            (1, true) => 12,
            (2, true) => days_in_month(d[0], d[1]),
            _ => return None,
        };
        d.push(next);
    }
    // Hours, minutes and seconds of the clock; milliseconds apart.
    let mut millis = match fraction {
        "" => None,
        f => Some(number(&format!("{f:0<3}")[..3])?),
    };
    c.truncate(clock_wanted.min(3));
    while c.len() < clock_wanted.min(3) {
        c.push(match (c.len(), high) {
            (_, false) => 0,
            (0, true) => 23,
            _ => 59,
        });
    }
    if clock_wanted == 4 {
        millis = Some(millis.unwrap_or(if high { 999 } else { 0 }));
    } else {
        millis = None;
    }
    let offset = (!is_time).then(|| offset.unwrap_or(if high { "-12:00" } else { "+14:00" }));
    Some(write(&d, &c, millis.map(|ms| format!("{ms:03}")).as_deref(), offset, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn offsets_are_compared_as_instants() {
        assert_eq!(compare("2017-11-05T01:30:00.0-04:00", "2017-11-05T01:15:00.0-05:00"), Some(Less));
        assert_eq!(equal("2017-11-05T01:30:00.0-04:00", "2017-11-05T00:30:00.0-05:00"), Some(true));
        assert_eq!(equal("2012-04-15T15:00:00+02:00", "2012-04-15T16:00:00+03:00"), Some(true));
        assert_eq!(compare("2020-01-01T00:30:00+01:00", "2019-12-31T23:45:00Z"), Some(Less), "across a year");
    }

    #[test]
    fn seconds_and_their_fraction_are_one_precision() {
        assert_eq!(equal("2012-04-15T15:30:31", "2012-04-15T15:30:31.0"), Some(true));
        assert_eq!(equal("2012-04-15T15:30:31", "2012-04-15T15:30:31.1"), Some(false));
        assert_eq!(compare("T10:30:00", "T10:30:00.0"), Some(Equal));
        assert_eq!(compare("T10:30:00.123", "T10:30:00.1229"), Some(Greater));
    }

    #[test]
    fn coarser_precision_is_unknown_unless_decided_before_it() {
        assert_eq!(compare("2012-04", "2012-04-15"), None);
        assert_eq!(compare("2012-03", "2012-04-15"), Some(Less));
        assert_eq!(compare("2012-04-15", "2012-04-15T10:00:00Z"), None);
        assert!(!equivalent("2012-04", "2012-04-15"));
    }

    #[test]
    fn a_time_is_not_a_date() {
        assert_eq!(equal("1974-12-25", "T12:14:15"), Some(false));
        assert_eq!(compare("1974-12-25", "T12:14:15"), None);
    }

    #[test]
    fn arithmetic_keeps_precision_and_offset() {
        assert_eq!(add("1973-12-25", 7, "day").as_deref(), Some("1974-01-01"));
        assert_eq!(add("1973-12-25", 1, "month").as_deref(), Some("1974-01-25"));
        assert_eq!(add("2024-01-31", 1, "month").as_deref(), Some("2024-02-29"), "clamped to the month");
        assert_eq!(add("1974-12-25", -1, "month").as_deref(), Some("1974-11-25"));
        assert_eq!(add("1973-12-25T00:00:00.000+10:00", 10, "ms").as_deref(), Some("1973-12-25T00:00:00.010+10:00"));
        assert_eq!(add("1973-12-25T23:00:00+10:00", 2, "hour").as_deref(), Some("1973-12-26T01:00:00+10:00"));
        assert_eq!(add("1973-12-25", 1, "a"), None, "a UCUM year is no calendar year");
        assert_eq!(add("1973-12", 1, "day"), None, "finer than the value");
        assert_eq!(add("1973-12-25", i64::MAX, "week"), None, "beyond any date");
        assert_eq!(add("9999-12-31", 1, "day"), None, "past year 9999");
    }

    #[test]
    fn boundaries_fill_the_missing_precision() {
        let low = |s, p| boundary(s, false, p);
        let high = |s, p| boundary(s, true, p);
        assert_eq!(low("2014", Some(6)).as_deref(), Some("2014-01"));
        assert_eq!(high("2014", Some(6)).as_deref(), Some("2014-12"));
        assert_eq!(high("2024-02", Some(8)).as_deref(), Some("2024-02-29"));
        assert_eq!(low("2014-01-01T08", Some(17)).as_deref(), Some("2014-01-01T08:00:00.000+14:00"));
        assert_eq!(high("2014-01-01T08", Some(17)).as_deref(), Some("2014-01-01T08:00:59.999-12:00"));
        assert_eq!(high("2014-01-01T08:05-05:00", Some(17)).as_deref(), Some("2014-01-01T08:05:59.999-05:00"));
        assert_eq!(low("2014-01-01T08", Some(8)).as_deref(), Some("2014-01-01"));
        assert_eq!(high("T10:30", Some(9)).as_deref(), Some("T10:30:59.999"));
        assert_eq!(low("2014", Some(5)), None);
    }

    #[test]
    fn civil_days_round_trip() {
        for days in [-800_000, -1, 0, 59, 365 * 30 + 7, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }
}
