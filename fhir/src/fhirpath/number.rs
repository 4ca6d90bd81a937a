//! FHIRPath decimals, exact (FHIRPath N1 §2.1.13.1.1): a binary float
//! makes `1.8 - 1.2 = 0.6` false and `1.0.toString()` `1`; an invariant
//! comparing amounts would then reject good data. A decimal is an integer
//! mantissa and a count of decimal places, which is also its precision.

use std::cmp::Ordering;
use std::fmt;

/// Places kept by division (FHIRPath leaves it to the engine; HL7's suite
/// needs 8).
const DIVISION_PLACES: u32 = 8;
/// Places beyond which a product is rounded, far past any FHIR decimal
/// (18 significant digits; R4 allows implementations to limit them).
pub const MAX_PLACES: u32 = 28;

#[derive(Debug, Clone, Copy)]
pub struct Decimal {
    mantissa: i128,
    places: u32,
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

impl Decimal {
    /// The places it is written to (`1.58700` has 5): its precision.
    pub fn places(self) -> u32 {
        self.places
    }

    pub fn from_int(v: i64) -> Decimal {
        Decimal { mantissa: v.into(), places: 0 }
    }

    /// A decimal as written in FHIRPath or JSON (`1.50`, `-3`, `1e-2`).
    pub fn parse(text: &str) -> Option<Decimal> {
        let (number, exponent) = match text.split_once(['e', 'E']) {
            Some((n, e)) => (n, e.parse::<i32>().ok()?),
            None => (text, 0),
        };
        let (negative, digits) = match number.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, number.strip_prefix('+').unwrap_or(number)),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty() || !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut mantissa: i128 = format!("{whole}{fraction}").parse().ok()?;
        let mut places = fraction.len() as i64 - i64::from(exponent);
        if places < 0 {
            mantissa = mantissa.checked_mul(pow10(u32::try_from(-places).ok()?)?)?;
            places = 0;
        }
        let places = u32::try_from(places).ok().filter(|p| *p <= MAX_PLACES)?;
        Some(Decimal { mantissa: if negative { -mantissa } else { mantissa }, places })
    }

    /// Both at the same places (the larger), or `None` past i128.
    fn aligned(self, other: Decimal) -> Option<(i128, i128, u32)> {
        let places = self.places.max(other.places);
        let a = self.mantissa.checked_mul(pow10(places - self.places)?)?;
        let b = other.mantissa.checked_mul(pow10(places - other.places)?)?;
        Some((a, b, places))
    }

    pub fn checked_add(self, other: Decimal) -> Option<Decimal> {
        let (a, b, places) = self.aligned(other)?;
        Some(Decimal { mantissa: a.checked_add(b)?, places })
    }

    pub fn checked_sub(self, other: Decimal) -> Option<Decimal> {
        self.checked_add(other.negated())
    }

    pub fn negated(self) -> Decimal {
        Decimal { mantissa: -self.mantissa, places: self.places }
    }

    pub fn checked_mul(self, other: Decimal) -> Option<Decimal> {
        Decimal { mantissa: self.mantissa.checked_mul(other.mantissa)?, places: self.places + other.places }
            .rounded(MAX_PLACES)
    }

    /// `self / other` to eight places, rounded half away from zero; `None`
    /// for a zero divisor (FHIRPath: empty) or beyond range.
    pub fn checked_div(self, other: Decimal) -> Option<Decimal> {
        if other.mantissa == 0 {
            return None;
        }
        let (a, b, _) = self.aligned(other)?;
        // One more place than kept, for the rounding.
        let scaled = a.checked_mul(pow10(DIVISION_PLACES + 1)?)? / b;
        Decimal { mantissa: scaled, places: DIVISION_PLACES + 1 }.rounded(DIVISION_PLACES)
    }

    /// Truncated division (FHIRPath `div`).
    pub fn int_div(self, other: Decimal) -> Option<i128> {
        let (a, b, _) = self.aligned(other)?;
        (b != 0).then(|| a / b)
    }

    /// FHIRPath `mod`: the remainder of truncated division, sign of the dividend.
    pub fn checked_rem(self, other: Decimal) -> Option<Decimal> {
        let (a, b, places) = self.aligned(other)?;
        (b != 0).then_some(Decimal { mantissa: a % b, places })
    }

    /// Rounded to at most `places`, half away from zero.
    pub fn rounded(self, places: u32) -> Option<Decimal> {
        if self.places <= places {
            return Some(self);
        }
        let unit = pow10(self.places - places)?;
        let (q, r) = (self.mantissa / unit, self.mantissa % unit);
        let carry = if r.abs() * 2 >= unit { self.mantissa.signum() } else { 0 };
        Some(Decimal { mantissa: q + carry, places })
    }

    /// At exactly `places`: padded with zeros, or cut toward zero.
    fn truncated_to(self, places: u32) -> Option<Decimal> {
        if places >= self.places {
            let mantissa = self.mantissa.checked_mul(pow10(places - self.places)?)?;
            return Some(Decimal { mantissa, places });
        }
        Some(Decimal { mantissa: self.mantissa / pow10(self.places - places)?, places })
    }

    /// At exactly `places`: padded, or rounded half away from zero.
    fn rounded_to(self, places: u32) -> Option<Decimal> {
        self.rounded(places)?.truncated_to(places)
    }

    /// The least (`high` false) or greatest value this decimal may stand
    /// for at its precision, written to `places` (FHIRPath 2.0
    /// `lowBoundary`/`highBoundary`, as HL7's suite computes them: on the
    /// magnitude, the sign after). `None` beyond range, or where HL7
    /// answers a negative zero, which a decimal does not hold.
    pub fn boundary(self, high: bool, places: u32) -> Option<Decimal> {
        if places > MAX_PLACES {
            return None;
        }
        let negative = self.mantissa < 0;
        let magnitude = Decimal { mantissa: self.mantissa.abs(), places: self.places };
        let half = Decimal { mantissa: 5, places: self.places + 1 };
        let outward = high != negative;
        let bound = if outward {
            magnitude.checked_add(half)?.rounded_to(places)?
        } else {
            magnitude.checked_sub(half)?.truncated_to(places)?
        };
        match negative {
            true if bound.mantissa == 0 => None,
            true => Some(bound.negated()),
            false => Some(bound),
        }
    }

    /// Toward zero, to a whole number.
    pub fn truncated(self) -> Decimal {
        match pow10(self.places) {
            Some(unit) => Decimal { mantissa: self.mantissa / unit, places: 0 },
            None => Decimal { mantissa: 0, places: 0 },
        }
    }

    /// Toward negative infinity, to a whole number.
    pub fn floored(self) -> Decimal {
        let t = self.truncated();
        if self.mantissa < 0 && !self.is_whole() {
            Decimal { mantissa: t.mantissa - 1, places: 0 }
        } else {
            t
        }
    }

    pub fn is_whole(self) -> bool {
        pow10(self.places).is_some_and(|unit| self.mantissa % unit == 0)
    }

    pub fn to_f64(self) -> f64 {
        self.to_string().parse().unwrap_or(f64::NAN)
    }

    /// The value without trailing zeros: equal decimals hash alike.
    pub fn normalized(self) -> (i128, u32) {
        let (mut m, mut p) = (self.mantissa, self.places);
        while p > 0 && m % 10 == 0 {
            m /= 10;
            p -= 1;
        }
        (m, p)
    }

    /// FHIRPath `~`: equal once both are rounded to the fewer places.
    pub fn equivalent(self, other: Decimal) -> bool {
        let places = self.places.min(other.places);
        match (self.rounded(places), other.rounded(places)) {
            (Some(a), Some(b)) => a.cmp(&b) == Ordering::Equal,
            _ => false,
        }
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Decimal) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Decimal) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Decimal) -> Ordering {
        match self.aligned(*other) {
            Some((a, b, _)) => a.cmp(&b),
            // Beyond i128 once aligned: the float order is right at that size.
            None => self.to_f64().total_cmp(&other.to_f64()),
        }
    }
}

/// Written with its places: `1.0` stays `1.0`.
impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.mantissa.unsigned_abs().to_string();
        let sign = if self.mantissa < 0 { "-" } else { "" };
        let places = self.places as usize;
        if places == 0 {
            return write!(f, "{sign}{digits}");
        }
        let padded = format!("{digits:0>width$}", width = places + 1);
        let (whole, fraction) = padded.split_at(padded.len() - places);
        write!(f, "{sign}{whole}.{fraction}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn arithmetic_is_exact() {
        assert_eq!(d("1.8").checked_sub(d("1.2")).unwrap(), d("0.6"));
        assert_eq!(d("2.2").checked_rem(d("1.8")).unwrap(), d("0.4"));
        assert_eq!(d("0.1").checked_add(d("0.2")).unwrap().to_string(), "0.3");
        assert_eq!(d("1.5").checked_mul(d("2")).unwrap().to_string(), "3.0");
        assert_eq!(d("1.2").checked_div(d("1.8")).unwrap().to_string(), "0.66666667");
        assert_eq!(d("-7").int_div(d("2")), Some(-3));
        assert_eq!(d("1").checked_div(d("0")), None);
    }

    #[test]
    fn places_are_kept_and_compared_by_value() {
        assert_eq!(d("1.0").to_string(), "1.0");
        assert_eq!(d("0.0").to_string(), "0.0");
        assert_eq!(d("-0.05").to_string(), "-0.05");
        assert_eq!(d("1e-2").to_string(), "0.01");
        assert_eq!(d("1.50"), d("1.5"));
        assert!(d("1.51") > d("1.5"));
    }

    #[test]
    fn equivalence_rounds_to_the_fewer_places() {
        assert!(d("1.2").checked_div(d("1.8")).unwrap().equivalent(d("0.67")));
        assert!(!d("0.666").equivalent(d("0.68")));
    }

    #[test]
    fn boundaries_follow_hl7s_suite() {
        let low = |s: &str, p| d(s).boundary(false, p).map(|b| b.to_string());
        let high = |s: &str, p| d(s).boundary(true, p).map(|b| b.to_string());
        assert_eq!(low("1.587", 8).as_deref(), Some("1.58650000"));
        assert_eq!(low("1.587", 2).as_deref(), Some("1.58"));
        assert_eq!(low("-1.587", 2).as_deref(), Some("-1.59"));
        assert_eq!(low("-1.587", 0).as_deref(), Some("-2"));
        assert_eq!(low("120", 2).as_deref(), Some("119.50"));
        assert_eq!(low("12.500", 4).as_deref(), Some("12.4995"));
        assert_eq!(high("1.587", 2).as_deref(), Some("1.59"));
        assert_eq!(high("-1.587", 6).as_deref(), Some("-1.586500"));
        assert_eq!(high("0.0034", 1).as_deref(), Some("0.0"));
        assert_eq!(high("1", 0).as_deref(), Some("2"));
        assert_eq!(low("-0.0034", 1), None, "HL7's -0.0");
    }

    #[test]
    fn what_is_not_a_decimal_is_refused() {
        for bad in ["", ".5", "1.2.3", "abc", "1e999"] {
            assert!(Decimal::parse(bad).is_none(), "{bad}");
        }
    }
}
