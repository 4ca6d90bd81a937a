//! FHIR decimals as the text that was sent. JSON numbers are kept as their
//! text (serde_json's `arbitrary_precision`), so `1.50` is stored and
//! returned as `1.50` (R4 datatypes.html#decimal: precision is part of the
//! value; only an exponent's `E` comes back as `e`); where two values are compared as JSON (a JSON Patch `test`),
//! numbers are equal when their decimal values are, whatever their text.

use serde_json::{Number, Value};

/// A number's exact value: sign, significant digits (no leading or
/// trailing zeros) and the power of ten of the last digit. Zero is
/// `(false, "", 0)`.
fn exact(n: &Number) -> Option<(bool, String, i64)> {
    let text = n.to_string();
    let (negative, text) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text.as_str()),
    };
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().ok()?),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{int}{frac}");
    let significant = digits.trim_start_matches('0');
    let trimmed = significant.trim_end_matches('0');
    if trimmed.is_empty() {
        return Some((false, String::new(), 0));
    }
    let power = exponent - i64::try_from(frac.len()).ok()? + i64::try_from(significant.len() - trimmed.len()).ok()?;
    Some((negative, trimmed.to_owned(), power))
}

/// JSON equality with numbers compared by decimal value (`1.5` = `1.50` =
/// `15e-1`), as RFC 6902 asks of a `test`.
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || (exact(x).is_some() && exact(x) == exact(y)),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::same_value;
    use serde_json::Value;

    fn v(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn numbers_keep_their_text() {
        for text in ["1.50", "3.6835042460380323", "100.000", "1.0e-7", "-0.0", "12345678901234567890.12345"] {
            assert_eq!(v(text).to_string(), text);
        }
        // The exponent's letter is the one thing not kept (same value, same precision).
        assert_eq!(v("1.0E-7").to_string(), "1.0e-7");
        assert_eq!(v(r#"{"value":1.50}"#).to_string(), r#"{"value":1.50}"#);
    }

    #[test]
    fn equal_by_decimal_value() {
        for (a, b) in [("1.5", "1.50"), ("15e-1", "1.5"), ("100", "1E2"), ("0", "-0.000"), ("0.00100", "1e-3")] {
            assert!(same_value(&v(a), &v(b)), "{a} = {b}");
        }
        for (a, b) in [("1.5", "1.51"), ("-1.5", "1.5"), ("10", "1"), ("3.6835042460380323", "3.683504246038032")] {
            assert!(!same_value(&v(a), &v(b)), "{a} != {b}");
        }
        assert!(same_value(&v(r#"{"a":[1.0,{"b":2}]}"#), &v(r#"{"a":[1,{"b":2.00}]}"#)));
        assert!(!same_value(&v(r#"{"a":1}"#), &v(r#"{"a":1,"b":1}"#)));
        assert!(!same_value(&v("1"), &v(r#""1""#)));
    }
}
