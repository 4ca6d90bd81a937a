//! Retention policies as data: how long a class of records is kept after
//! its last activity, and the rule it comes from. The defaults are the
//! strictest common US floor; deployments under longer state laws (or
//! minors' records, kept past the age of majority) configure more.

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
        now - Duration::days(365 * i64::from(self.years) + i64::from(self.years / 4))
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
    }
}
