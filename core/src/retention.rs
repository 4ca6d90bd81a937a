//! Retention policies as data: how long a class of records is kept after
//! its last activity, and the rule it comes from. The defaults are the
//! strictest common US floor; deployments under longer state laws (or
//! minors' records, kept past the age of majority) configure more.

use std::collections::BTreeMap;
use time::{Duration, OffsetDateTime};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub class: &'static str,
    pub years: u32,
    pub source: &'static str,
}

/// Clinical records (Patient compartment, documents included): 10 years
/// after the last activity, the longest of the common state floors for
/// adult records (e.g. 10 years in several states), above HIPAA's 6.
pub const CLINICAL: RetentionPolicy = RetentionPolicy {
    class: "clinical-record",
    years: 10,
    source: "state medical-record retention laws (commonly 7 to 10 years after the last encounter for adults)",
};

/// Audit records: 6 years, HIPAA's documentation retention.
pub const AUDIT: RetentionPolicy = RetentionPolicy {
    class: "audit",
    years: 6,
    source: "45 CFR 164.316(b)(2)(i): six years from creation or last effective date",
};

impl RetentionPolicy {
    /// Records last active before this instant are out of retention.
    pub fn cutoff(&self, now: OffsetDateTime) -> OffsetDateTime {
        now - self.period()
    }

    pub fn period(&self) -> Duration {
        Duration::days(365 * i64::from(self.years) + i64::from(self.years / 4))
    }

    /// The clinical policy with a configured number of years; never below
    /// HIPAA's six.
    pub fn clinical(years: Option<u32>) -> Result<Self, String> {
        match years {
            None => Ok(CLINICAL),
            Some(y) if y >= AUDIT.years => Ok(RetentionPolicy { years: y, source: "configured", ..CLINICAL }),
            Some(_) => Err(format!("clinical retention below {} years is not allowed", AUDIT.years)),
        }
    }
}

/// What the purge applies: the clinical policy, and the legal floor below
/// which not even an erasure request (GDPR Art. 17) removes records:
/// Art. 17(3)(b) and (c) exempt records a law obliges the provider to keep.
/// By default the floor is the policy itself (retention laws win); a
/// deployment whose legal review allows less configures it, never below six.
/// Resource types may keep longer than the clinical default (immunization
/// histories, for instance, which registries and schools ask for for
/// decades): a patient is shredded only once every type they hold is past
/// its own period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub clinical: RetentionPolicy,
    pub erasure_floor: RetentionPolicy,
    pub by_type: BTreeMap<String, RetentionPolicy>,
}

impl Retention {
    /// The policy of a resource type.
    pub fn for_type(&self, resource_type: &str) -> &RetentionPolicy {
        self.by_type.get(resource_type).unwrap_or(&self.clinical)
    }

    /// Adds per-type periods from `Type=years,Type=years` (none shorter than
    /// the clinical default: it is the floor every type was reviewed for).
    pub fn with_types(mut self, spec: &str) -> Result<Self, String> {
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (ty, years) = part.split_once('=').ok_or(format!("{part}: expected Type=years"))?;
            let years: u32 = years.trim().parse().map_err(|_| format!("{part}: years must be a number"))?;
            if !ty.starts_with(|c: char| c.is_ascii_uppercase()) || !ty.chars().all(|c| c.is_ascii_alphabetic()) {
                return Err(format!("{part}: not a resource type"));
            }
            if years < self.clinical.years {
                return Err(format!("{ty}: {years} years is shorter than the clinical retention"));
            }
            let policy = RetentionPolicy { class: "resource-type", years, source: "configured per resource type" };
            self.by_type.insert(ty.trim().to_owned(), policy);
        }
        Ok(self)
    }

    pub fn new(clinical_years: Option<u32>, floor_years: Option<u32>) -> Result<Self, String> {
        let clinical = RetentionPolicy::clinical(clinical_years)?;
        let erasure_floor = match floor_years {
            None => RetentionPolicy { class: "erasure-floor", ..clinical.clone() },
            Some(y) if y < AUDIT.years => {
                return Err(format!("the erasure floor below {} years is not allowed", AUDIT.years))
            }
            Some(y) if y > clinical.years => {
                return Err("the erasure floor cannot exceed the clinical retention".into())
            }
            Some(y) => RetentionPolicy { class: "erasure-floor", years: y, source: "configured legal minimum" },
        };
        Ok(Retention { clinical, erasure_floor, by_type: BTreeMap::new() })
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention::new(None, None).expect("defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_and_floors() {
        let now = OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap();
        let cut = CLINICAL.cutoff(now);
        assert!((now - cut).whole_days() >= 3652);
        assert!(RetentionPolicy::clinical(Some(5)).is_err());
        assert_eq!(RetentionPolicy::clinical(Some(25)).unwrap().years, 25);
        assert_eq!(Retention::default().erasure_floor.years, CLINICAL.years, "retention laws win by default");
        assert_eq!(Retention::new(Some(10), Some(6)).unwrap().erasure_floor.years, 6);
        assert!(Retention::new(Some(10), Some(5)).is_err());
        assert!(Retention::new(Some(8), Some(9)).is_err());
        let typed = Retention::default().with_types("Immunization=25, DocumentReference=12").unwrap();
        assert_eq!((typed.for_type("Immunization").years, typed.for_type("Observation").years), (25, 10));
        assert!(Retention::default().with_types("Immunization=5").is_err());
        assert!(Retention::default().with_types("immunization=20").is_err());
        assert!(Retention::default().with_types("Immunization").is_err());
    }
}
