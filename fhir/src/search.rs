//! FHIR search value matching over decrypted resources (token, date with
//! prefixes, quantity, string): used where a patient's compartment is
//! searched in memory after decryption, so PHI never needs a plaintext index.

use super::primitives::datetime_bounds;
use super::ucum;
use serde_json::Value;
use time::OffsetDateTime;

/// `system|code`, `|code` (no system), `code` (any system), against a
/// Coding, a CodeableConcept, a code, or an array of them.
pub fn token_matches(v: &Value, wanted: &str) -> bool {
    let (system, code) = match wanted.split_once('|') {
        Some((s, c)) => (Some(s), c),
        None => (None, wanted),
    };
    match v {
        Value::Array(items) => items.iter().any(|i| token_matches(i, wanted)),
        Value::String(s) => system.is_none_or(str::is_empty) && s == code,
        Value::Object(o) if o.contains_key("coding") => token_matches(&o["coding"], wanted),
        Value::Object(o) => {
            // `system|`: any code of that system.
            let any_code = code.is_empty() && system.is_some_and(|s| !s.is_empty());
            let code_ok = any_code || o.get("code").and_then(Value::as_str) == Some(code);
            let sys = o.get("system").and_then(Value::as_str);
            code_ok
                && match system {
                    None => true,
                    Some("") => sys.is_none(),
                    Some(s) => sys == Some(s),
                }
        }
        _ => false,
    }
}

/// The comparison prefixes of date and number parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
}

/// Splits `ge2020-01-01` into (Ge, "2020-01-01").
pub fn prefixed(value: &str) -> (Prefix, &str) {
    let p = match value.get(..2) {
        Some("eq") => Prefix::Eq,
        Some("ne") => Prefix::Ne,
        Some("gt") => Prefix::Gt,
        Some("lt") => Prefix::Lt,
        Some("ge") => Prefix::Ge,
        Some("le") => Prefix::Le,
        _ => return (Prefix::Eq, value),
    };
    (p, &value[2..])
}

/// The instants a resource's date element covers: a date or dateTime, a
/// Period (open ends unbounded), or an instant.
pub fn date_range(v: &Value) -> Option<(OffsetDateTime, OffsetDateTime)> {
    match v {
        Value::String(s) => datetime_bounds(s),
        Value::Object(p) => {
            let start = p.get("start").and_then(Value::as_str).and_then(datetime_bounds).map(|b| b.0);
            let end = p.get("end").and_then(Value::as_str).and_then(datetime_bounds).map(|b| b.1);
            if start.is_none() && end.is_none() {
                return None;
            }
            Some((start.unwrap_or(datetime_bounds("0001")?.0), end.unwrap_or(datetime_bounds("9999")?.1)))
        }
        _ => None,
    }
}

/// A date parameter (`ge2026-01-01`) against a resource's range, as the
/// FHIR spec reads prefixes on ranges. None when the value is not a date.
pub fn date_matches(range: (OffsetDateTime, OffsetDateTime), param: &str) -> Option<bool> {
    let (prefix, value) = prefixed(param);
    let (lo, hi) = datetime_bounds(value)?;
    let (first, last) = range;
    Some(match prefix {
        Prefix::Eq => lo <= first && last <= hi,
        Prefix::Ne => !(lo <= first && last <= hi),
        Prefix::Gt => last > hi,
        Prefix::Lt => first < lo,
        Prefix::Ge => last >= lo,
        Prefix::Le => first <= hi,
    })
}

/// FHIR `decimal` (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`): Rust's
/// float parser also takes `inf`, `NaN` and `+1`, which no FHIR value is.
fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (mantissa, exponent) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['+', '-']).unwrap_or(e))),
        None => (s, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    digits(int) && (int == "0" || !int.starts_with('0')) && frac.is_none_or(digits) && exponent.is_none_or(digits)
}

/// A `value-quantity` parameter (`[prefix]number|system|code`) against a
/// Quantity. None when the number is not a number.
pub fn quantity_matches(q: &Value, param: &str) -> Option<bool> {
    let mut parts = param.splitn(3, '|');
    let (prefix, number) = prefixed(parts.next()?);
    if !is_decimal(number) {
        return None;
    }
    let wanted: f64 = number.parse().ok()?;
    let system = parts.next().filter(|s| !s.is_empty());
    let code = parts.next().filter(|s| !s.is_empty());
    let Some(stored) = q.get("value").and_then(Value::as_f64) else { return Some(false) };
    let stored_code = q.get("code").and_then(Value::as_str);
    let same_unit = |c: &str| stored_code == Some(c) || q.get("unit").and_then(Value::as_str) == Some(c);
    let system_ok = system.is_none_or(|s| q.get("system").and_then(Value::as_str) == Some(s));
    // A UCUM search unit matches any stored unit of its dimension, compared
    // after conversion (gt70|http://unitsofmeasure.org|kg finds 160 [lb_av]).
    let (unit_ok, value) = match code {
        None => (true, stored),
        Some(c) if same_unit(c) => (true, stored),
        Some(c) if system == Some(ucum::SYSTEM) && q.get("system").and_then(Value::as_str) == Some(ucum::SYSTEM) => {
            match stored_code.and_then(|from| ucum::convert(stored, from, c)) {
                Some(v) => (true, v),
                None => (false, stored),
            }
        }
        Some(_) => (false, stored),
    };
    let unit_ok = system_ok && unit_ok;
    // Equality carries the precision of the parameter (72 matches 71.5..72.5).
    let decimals = number.split_once('.').map_or(0, |(_, d)| d.len()) as i32;
    let half = 0.5 * 10f64.powi(-decimals);
    let ok = match prefix {
        Prefix::Eq => (value - wanted).abs() <= half,
        Prefix::Ne => (value - wanted).abs() > half,
        Prefix::Gt => value > wanted,
        Prefix::Lt => value < wanted,
        Prefix::Ge => value >= wanted,
        Prefix::Le => value <= wanted,
    };
    Some(unit_ok && ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens() {
        let cc = json!({"coding": [{"system": "http://loinc.org", "code": "8867-4"}]});
        assert!(token_matches(&cc, "8867-4"));
        assert!(token_matches(&cc, "http://loinc.org|8867-4"));
        assert!(!token_matches(&cc, "http://snomed.info/sct|8867-4"));
        assert!(!token_matches(&cc, "|8867-4"), "|code means no system");
        assert!(token_matches(&json!([{"text": "x"}, cc]), "8867-4"));
        assert!(token_matches(&json!("completed"), "completed"));
        assert!(!token_matches(&json!("completed"), "x|completed"));
    }

    #[test]
    fn quantity_numbers_are_fhir_decimals() {
        for ok in ["72", "0", "-1.5", "72.0", "1e3", "2.5E-2", "gt70|http://unitsofmeasure.org|kg"] {
            assert!(quantity_matches(&Value::Null, ok).is_some(), "{ok}");
        }
        for bad in ["", "inf", "NaN", "+1", "01", "1.", ".5", "1e", "ge", "x|y|z"] {
            assert!(quantity_matches(&Value::Null, bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn dates_with_prefixes() {
        let day = date_range(&json!("2026-11-20T09:00:00Z")).unwrap();
        assert_eq!(date_matches(day, "2026-11-20"), Some(true));
        assert_eq!(date_matches(day, "2026-11"), Some(true));
        assert_eq!(date_matches(day, "ge2026-11-20"), Some(true));
        assert_eq!(date_matches(day, "gt2026-11-20"), Some(false));
        assert_eq!(date_matches(day, "lt2026-11-21"), Some(true));
        assert_eq!(date_matches(day, "le2026-11-19"), Some(false));
        assert_eq!(date_matches(day, "ne2026-11-20"), Some(false));
        assert_eq!(date_matches(day, "2026-11-21"), Some(false));
        assert_eq!(date_matches(day, "yesterday"), None);
        let period = date_range(&json!({"start": "2026-11-01"})).unwrap();
        assert_eq!(date_matches(period, "ge2030-01-01"), Some(true), "an open period runs on");
        let before_1970 = date_range(&json!({"end": "1960-05-01"})).unwrap();
        assert!(before_1970.0 < before_1970.1, "an open start reaches back before 1970");
        assert_eq!(date_matches(before_1970, "lt1950"), Some(true));
    }

    #[test]
    fn quantities() {
        let q = json!({"value": 72, "system": "http://unitsofmeasure.org", "code": "/min"});
        assert_eq!(quantity_matches(&q, "72"), Some(true));
        assert_eq!(quantity_matches(&q, "72.0"), Some(true));
        assert_eq!(quantity_matches(&q, "71.6"), Some(false));
        assert_eq!(quantity_matches(&q, "gt60|http://unitsofmeasure.org|/min"), Some(true));
        assert_eq!(quantity_matches(&q, "gt60||mm[Hg]"), Some(false));
        assert_eq!(quantity_matches(&q, "le71"), Some(false));
        assert_eq!(quantity_matches(&q, "lots"), None);
        let weight = json!({"value": 160, "system": "http://unitsofmeasure.org", "code": "[lb_av]"});
        assert_eq!(quantity_matches(&weight, "gt70|http://unitsofmeasure.org|kg"), Some(true));
        assert_eq!(quantity_matches(&weight, "gt75|http://unitsofmeasure.org|kg"), Some(false));
        assert_eq!(
            quantity_matches(&weight, "72.6|http://unitsofmeasure.org|kg"),
            Some(true),
            "equality after conversion"
        );
        assert_eq!(
            quantity_matches(&weight, "gt1|http://unitsofmeasure.org|cm"),
            Some(false),
            "no match across dimensions"
        );
    }
}
