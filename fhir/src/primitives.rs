//! FHIR R4 primitive formats (http://hl7.org/fhir/R4/datatypes.html), checked
//! by hand-written matchers equivalent to the spec's regular expressions so
//! that no regex engine is linked into every Lambda.

/// `id`: `[A-Za-z0-9\-\.]{1,64}`
pub fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => 29,
        2 => 28,
        _ => 31,
    }
}

/// `date`: YYYY, YYYY-MM or YYYY-MM-DD, and a real calendar date.
pub fn is_date(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let Some(year) = parts.first().and_then(|y| digits(y, 4)) else { return false };
    if year == 0 {
        return false;
    }
    match parts.len() {
        1 => true,
        2 => matches!(digits(parts[1], 2), Some(1..=12)),
        3 => match (digits(parts[1], 2), digits(parts[2], 2)) {
            (Some(m @ 1..=12), Some(d)) => d >= 1 && d <= days_in_month(year, m),
            _ => false,
        },
        _ => false,
    }
}

/// `dateTime`: a date, or a full date with time and zone.
pub fn is_date_time(s: &str) -> bool {
    match s.split_once('T') {
        None => is_date(s),
        Some((date, rest)) => date.len() == 10 && is_date(date) && is_time_with_zone(rest),
    }
}

/// `instant`: full date, time and zone.
pub fn is_instant(s: &str) -> bool {
    matches!(s.split_once('T'), Some((date, rest)) if date.len() == 10 && is_date(date) && is_time_with_zone(rest))
}

fn is_time_with_zone(s: &str) -> bool {
    let (time, zone) = if let Some(t) = s.strip_suffix('Z') {
        (t, "Z")
    } else if s.len() > 6 && (s.as_bytes()[s.len() - 6] == b'+' || s.as_bytes()[s.len() - 6] == b'-') {
        s.split_at(s.len() - 6)
    } else {
        return false;
    };
    if zone != "Z" {
        let (h, m) = (digits(&zone[1..3], 2), digits(&zone[4..6], 2));
        if &zone[3..4] != ":" || !matches!((h, m), (Some(0..=13), Some(0..=59)) | (Some(14), Some(0))) {
            return false;
        }
    }
    is_time(time)
}

/// `time`: hh:mm:ss(.fraction)?
pub fn is_time(s: &str) -> bool {
    let (hms, frac) = match s.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (s, None),
    };
    if let Some(f) = frac {
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    let p: Vec<&str> = hms.split(':').collect();
    p.len() == 3
        && matches!(digits(p[0], 2), Some(0..=23))
        && matches!(digits(p[1], 2), Some(0..=59))
        && matches!(digits(p[2], 2), Some(0..=60))
}

/// Whitespace as FHIR's regular expressions mean it (XML Schema `\s`):
/// space, tab, CR and LF only; a no-break space is not whitespace there.
fn is_xsd_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// `code`: `[^\s]+(\s[^\s]+)*`: no leading, trailing or doubled whitespace.
pub fn is_code(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(is_xsd_space)
        && !s.ends_with(is_xsd_space)
        && !s.chars().zip(s.chars().skip(1)).any(|(a, b)| is_xsd_space(a) && is_xsd_space(b))
}

/// `uri`: `\S*`, and non-empty (ele-1); a `urn:uuid:` one holds a UUID.
pub fn is_uri(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(is_xsd_space) && (!s.starts_with("urn:uuid:") || is_uuid(s))
}

/// Text as HTML text or an attribute value: the five characters HTML gives
/// meaning to, as entities. One escaper for every page medrec writes and
/// for FHIRPath's `escape('html')`.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `oid`: `urn:oid:[0-2](\.(0|[1-9][0-9]*))+`: a first arc of 0, 1 or 2,
/// then one or more arcs without leading zeros.
pub fn is_oid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("urn:oid:") else { return false };
    let mut arcs = rest.split('.');
    matches!(arcs.next(), Some("0" | "1" | "2"))
        && rest.contains('.')
        && arcs.all(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) && (a == "0" || !a.starts_with('0')))
}

/// `uuid`: `urn:uuid:` and a UUID (8-4-4-4-12 hex digits). RFC 4122 §3
/// writes them in lowercase but reads either case, and so does medrec: HL7's
/// own examples carry uppercase ones.
pub fn is_uuid(s: &str) -> bool {
    s.strip_prefix("urn:uuid:").is_some_and(|u| {
        u.len() == 36
            && u.bytes().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => b == b'-',
                _ => b.is_ascii_hexdigit(),
            })
    })
}

/// `string`: `[ \r\n\t\S]+`: any non-empty text.
/// The bytes a base64Binary value holds (R4 allows whitespace in it);
/// `None` when it is not base64.
pub fn base64_bytes(s: &str) -> Option<usize> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s.split_whitespace().collect::<String>()).ok().map(|b| b.len())
}

/// R4 datatypes.html: a string SHALL NOT exceed 1 MB.
pub fn is_string(s: &str) -> bool {
    !s.is_empty() && s.len() <= 1024 * 1024
}

/// Narrative is rendered by clients, so active content in it is an XSS vector
/// (FHIR txt-1/txt-2 forbid scripts, forms and event attributes).
pub fn is_safe_xhtml(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let t = lower.trim_start();
    (t.starts_with("<div") && lower.trim_end().ends_with("</div>"))
        && !["<script", "<iframe", "<object", "<embed", "<form", "<style", "javascript:", "data:text/html"]
            .iter()
            .any(|bad| lower.contains(bad))
        && !has_event_attribute(&lower)
}

/// True when a tag carries an `on...=` event-handler attribute. Only text
/// inside `<...>` is examined: words such as "only" in the narrative are not
/// attributes.
fn has_event_attribute(lower: &str) -> bool {
    lower.split('<').skip(1).filter_map(|t| t.split('>').next()).any(|tag| {
        let b = tag.as_bytes();
        (1..b.len()).any(|i| {
            // ASCII checks first: after them `i` and the name end are char boundaries.
            if !(b[i - 1].is_ascii_whitespace() || b[i - 1] == b'/') || !b[i..].starts_with(b"on") {
                return false;
            }
            let name_len = b[i..].iter().take_while(|c| c.is_ascii_alphabetic()).count();
            name_len > 2 && tag[i + name_len..].trim_start().starts_with('=')
        })
    })
}

/// The first and last instant a FHIR date or dateTime designates (a date
/// of year, month or day precision covers all of it, in UTC). None when
/// it is not one.
pub fn datetime_bounds(s: &str) -> Option<(time::OffsetDateTime, time::OffsetDateTime)> {
    if s.len() > 10 {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
        return Some((t, t));
    }
    let mut parts = s.split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: Option<u8> = parts.next().map(str::parse).transpose().ok()?;
    let day: Option<u8> = parts.next().map(str::parse).transpose().ok()?;
    let first =
        time::Date::from_calendar_date(year, time::Month::try_from(month.unwrap_or(1)).ok()?, day.unwrap_or(1)).ok()?;
    let last = match (month, day) {
        (_, Some(_)) => first,
        (Some(m), None) => {
            let m = time::Month::try_from(m).ok()?;
            time::Date::from_calendar_date(year, m, m.length(year)).ok()?
        }
        (None, _) => time::Date::from_calendar_date(year, time::Month::December, 31).ok()?,
    };
    Some((first.midnight().assume_utc(), last.with_hms(23, 59, 59).ok()?.assume_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_follow_r4s_pattern() {
        for ok in ["urn:oid:2.16.840.1.113883.6.1", "urn:oid:1.0", "urn:oid:0.9.2342"] {
            assert!(is_oid(ok), "{ok}");
        }
        for bad in [
            "urn:oid:",
            "urn:oid:1",
            "urn:oid:3.1",
            "urn:oid:1..2",
            "urn:oid:1.02",
            "urn:oid:1.2.",
            "2.16.840",
            "urn:oid:1.2a",
        ] {
            assert!(!is_oid(bad), "{bad}");
        }
    }

    #[test]
    fn dates() {
        for ok in ["1980", "1980-02", "1980-02-29", "2000-02-29", "1999-12-31"] {
            assert!(is_date(ok), "{ok}");
        }
        for bad in [
            "",
            "80",
            "1981-02-29",
            "1900-02-29",
            "1980-13",
            "1980-00",
            "1980-1-1",
            "1980-01-32",
            "0000",
            "1980-01-01T",
        ] {
            assert!(!is_date(bad), "{bad}");
        }
    }

    #[test]
    fn date_times_and_instants() {
        assert!(is_date_time("2020-01-01T10:00:00Z"));
        assert!(is_date_time("2020-01-01T10:00:00.123+05:30"));
        assert!(is_date_time("2020-01"));
        assert!(!is_date_time("2020-01-01T10:00Z"));
        assert!(!is_date_time("2020-01-01T25:00:00Z"));
        assert!(!is_date_time("2020-01-01T10:00:00+15:00"));
        assert!(is_instant("2020-01-01T10:00:00Z"));
        assert!(!is_instant("2020-01-01"));
    }

    #[test]
    fn ids_codes() {
        assert!(is_id("a-B.9"));
        assert!(!is_id(""));
        assert!(!is_id(&"a".repeat(65)));
        assert!(!is_id("a/b"));
        assert!(!is_id("../x"));
        assert!(is_code("male"));
        assert!(!is_code(" male"));
        assert!(!is_code("a  b"));
        assert!(!is_code("a\tb c "));
        assert!(is_code("CHEST\u{a0}"), "a no-break space is not XML Schema whitespace");
        assert!(is_uri("urn:x"));
        assert!(!is_uri("a b"));
        assert!(is_string(" "));
        assert!(!is_string(""));
    }
}
