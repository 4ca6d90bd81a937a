//! The UCUM units medrec reasons about: the vital-sign and common lab
//! units, each with its dimension and its factor (and offset, for
//! temperatures) to the dimension's base unit. Enough to reject a body
//! weight in centimetres and to compare 160 [lb_av] with 70 kg; not a full
//! UCUM parser (unknown units are not guessed at).

pub const SYSTEM: &str = "http://unitsofmeasure.org";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Mass,
    Length,
    Temperature,
    /// Events per time (heart and respiratory rate).
    Frequency,
    Pressure,
    /// Mass per area (BMI).
    MassPerArea,
    Fraction,
    Volume,
    MassConcentration,
    SubstanceConcentration,
    /// Definite durations (FHIRPath compares `7 days` with `1 'wk'`).
    Duration,
}

struct Unit {
    code: &'static str,
    dim: Dimension,
    /// value_in_base = value * factor + offset
    factor: f64,
    offset: f64,
}

const fn u(code: &'static str, dim: Dimension, factor: f64) -> Unit {
    Unit { code, dim, factor, offset: 0.0 }
}

use Dimension::*;

const UNITS: &[Unit] = &[
    u("g", Mass, 1.0),
    u("kg", Mass, 1000.0),
    u("mg", Mass, 0.001),
    u("[lb_av]", Mass, 453.592_37),
    u("[oz_av]", Mass, 28.349_523_125),
    u("m", Length, 1.0),
    u("cm", Length, 0.01),
    u("mm", Length, 0.001),
    u("[in_i]", Length, 0.0254),
    u("[ft_i]", Length, 0.3048),
    u("K", Temperature, 1.0),
    Unit { code: "Cel", dim: Temperature, factor: 1.0, offset: 273.15 },
    Unit { code: "[degF]", dim: Temperature, factor: 5.0 / 9.0, offset: 273.15 - 32.0 * 5.0 / 9.0 },
    u("/min", Frequency, 1.0),
    u("{beats}/min", Frequency, 1.0),
    u("{breaths}/min", Frequency, 1.0),
    u("/s", Frequency, 60.0),
    u("/h", Frequency, 1.0 / 60.0),
    u("mm[Hg]", Pressure, 133.322_387_415),
    u("kPa", Pressure, 1000.0),
    u("Pa", Pressure, 1.0),
    u("kg/m2", MassPerArea, 1.0),
    u("%", Fraction, 0.01),
    u("1", Fraction, 1.0),
    u("L", Volume, 1.0),
    u("dL", Volume, 0.1),
    u("mL", Volume, 0.001),
    u("g/L", MassConcentration, 1.0),
    u("g/dL", MassConcentration, 10.0),
    u("mg/dL", MassConcentration, 0.01),
    u("mg/L", MassConcentration, 0.001),
    u("mol/L", SubstanceConcentration, 1.0),
    u("mmol/L", SubstanceConcentration, 0.001),
    u("umol/L", SubstanceConcentration, 0.000_001),
    u("ms", Duration, 0.001),
    u("s", Duration, 1.0),
    u("min", Duration, 60.0),
    u("h", Duration, 3600.0),
    u("d", Duration, 86_400.0),
    u("wk", Duration, 604_800.0),
];

fn unit(code: &str) -> Option<&'static Unit> {
    UNITS.iter().find(|u| u.code == code)
}

pub fn dimension(code: &str) -> Option<Dimension> {
    unit(code).map(|u| u.dim)
}

/// `value` in unit `from` expressed in unit `to`, if both are known and of
/// one dimension.
pub fn convert(value: f64, from: &str, to: &str) -> Option<f64> {
    let (f, t) = (unit(from)?, unit(to)?);
    if f.dim != t.dim {
        return None;
    }
    Some((value * f.factor + f.offset - t.offset) / t.factor)
}

/// The dimension a vital sign's value must have, by LOINC code.
pub fn vital_sign_dimension(loinc: &str) -> Option<Dimension> {
    Some(match loinc {
        "29463-3" => Mass,                // body weight
        "8302-2" | "9843-4" => Length,    // body height, head circumference
        "8310-5" => Temperature,          // body temperature
        "8867-4" | "9279-1" => Frequency, // heart rate, respiratory rate
        "8480-6" | "8462-4" => Pressure,  // systolic, diastolic
        "39156-5" => MassPerArea,         // BMI
        "2708-6" | "59408-5" => Fraction, // oxygen saturation
        _ => return None,
    })
}

/// Accepted unit codes of a dimension, for error messages.
pub fn units_of(dim: Dimension) -> Vec<&'static str> {
    UNITS.iter().filter(|u| u.dim == dim).map(|u| u.code).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9 * b.abs().max(1.0))
    }

    #[test]
    fn conversions_within_a_dimension() {
        assert!(close(convert(160.0, "[lb_av]", "kg"), 72.574_779_2));
        assert!(close(convert(1.8, "m", "cm"), 180.0));
        assert!(close(convert(98.6, "[degF]", "Cel"), 37.0));
        assert!(close(convert(37.0, "Cel", "[degF]"), 98.6));
        assert!(close(convert(120.0, "mm[Hg]", "kPa"), 15.998_686_49));
        assert!(close(convert(97.0, "%", "1"), 0.97));
        assert!(close(convert(5.4, "mmol/L", "umol/L"), 5400.0));
        assert_eq!(convert(70.0, "kg", "cm"), None, "no conversion across dimensions");
        assert_eq!(convert(70.0, "stone", "kg"), None, "unknown units are not guessed");
    }

    #[test]
    fn vital_signs_have_dimensions() {
        assert_eq!(vital_sign_dimension("29463-3"), Some(Mass));
        assert_eq!(vital_sign_dimension("8480-6"), Some(Pressure));
        assert_eq!(vital_sign_dimension("2339-0"), None);
        assert!(units_of(Mass).contains(&"[lb_av]"));
    }
}
