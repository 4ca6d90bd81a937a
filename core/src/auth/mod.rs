//! Identity and access: who the caller is (a verified JWT), what their roles
//! and SMART scopes let them do, and the purpose of use they declare.

pub mod claims;
pub mod jwks;
pub mod jwt;
pub mod policy;

pub use jwt::{Principal, TokenPolicy};
pub use policy::{authorize, Action, Decision, Role};

/// Issuers starting with this are the local dev issuer, which a deployed
/// stack refuses at start-up.
pub const DEV_ISSUER_PREFIX: &str = "http://127.0.0.1";
/// Key ids of the local dev signing key; ignored in any JWKS outside local mode.
pub const DEV_KID_PREFIX: &str = "medrec-dev-";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("token rejected: {0}")]
    Rejected(&'static str),
    #[error("key set unavailable")]
    KeySetUnavailable,
}

impl AuthError {
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing bearer token",
            AuthError::Rejected(r) => r,
            AuthError::KeySetUnavailable => "key set unavailable",
        }
    }
}

/// HL7 v3 PurposeOfUse codes medrec accepts in `X-Purpose-Of-Use`.
pub const PURPOSES_OF_USE: &[&str] =
    &["TREAT", "ETREAT", "HPAYMT", "HOPERAT", "HRESCH", "PUBHLTH", "HSYSADMIN", "PATRQT", "COVERAGE", "HLEGAL"];

/// Break-glass reason codes when none are configured
/// (`MEDREC_BREAK_GLASS_REASON_CODES`).
pub const DEFAULT_BREAK_GLASS_CODES: &[&str] =
    &["emergency-treatment", "patient-unconscious", "patient-unable-to-consent", "imminent-threat"];

/// What a break-glass request must state: a reason code from a list the
/// deployment sets, and a free-text reason of some substance, so that the
/// review that follows has something to review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlassPolicy {
    pub codes: Vec<String>,
    /// Minimum characters of the free-text reason.
    pub min_reason: usize,
}

impl Default for BreakGlassPolicy {
    fn default() -> Self {
        BreakGlassPolicy { codes: DEFAULT_BREAK_GLASS_CODES.iter().map(|c| c.to_string()).collect(), min_reason: 20 }
    }
}

/// The upper bound on a break-glass reason (it is stored, encrypted).
pub const MAX_BREAK_GLASS_REASON: usize = 500;

/// A break-glass declaration: the code and the free text (which may hold
/// PHI: it is kept only encrypted under the patient's key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlass {
    pub code: String,
    pub reason: String,
}

/// Why the caller is accessing data. `ETREAT` is break-glass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purpose {
    pub code: &'static str,
    pub break_glass: Option<BreakGlass>,
}

/// The purpose headers of a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct PurposeHeaders<'a> {
    pub purpose: Option<&'a str>,
    pub reason_code: Option<&'a str>,
    pub reason: Option<&'a str>,
}

impl Purpose {
    pub fn treatment() -> Purpose {
        Purpose { code: "TREAT", break_glass: None }
    }

    pub fn is_break_glass(&self) -> bool {
        self.code == "ETREAT"
    }

    /// Parses the purpose headers; treatment is the default purpose.
    pub fn parse(h: PurposeHeaders, policy: &BreakGlassPolicy) -> Result<Purpose, String> {
        let code = match h.purpose.map(str::trim) {
            None | Some("") => "TREAT",
            Some(p) => PURPOSES_OF_USE
                .iter()
                .find(|c| **c == p)
                .copied()
                .ok_or("X-Purpose-Of-Use is not a supported PurposeOfUse code")?,
        };
        let reason = h.reason.map(str::trim).filter(|r| !r.is_empty());
        let reason_code = h.reason_code.map(str::trim).filter(|r| !r.is_empty());
        if code != "ETREAT" {
            if reason.is_some() || reason_code.is_some() {
                return Err("X-Break-Glass-Reason and -Reason-Code are only valid with X-Purpose-Of-Use: ETREAT".into());
            }
            return Ok(Purpose { code, break_glass: None });
        }
        let codes = policy.codes.join(", ");
        let reason_code = reason_code
            .filter(|c| policy.codes.iter().any(|k| k == c))
            .ok_or_else(|| format!("break-glass (ETREAT) requires X-Break-Glass-Reason-Code, one of: {codes}"))?;
        let r = reason.ok_or("break-glass (ETREAT) requires X-Break-Glass-Reason")?;
        let chars = r.chars().count();
        if chars < policy.min_reason || chars > MAX_BREAK_GLASS_REASON || r.chars().any(char::is_control) {
            return Err(format!(
                "X-Break-Glass-Reason must be {} to {MAX_BREAK_GLASS_REASON} printable characters",
                policy.min_reason
            ));
        }
        Ok(Purpose { code, break_glass: Some(BreakGlass { code: reason_code.to_owned(), reason: r.to_owned() }) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes() {
        fn parse(purpose: Option<&str>, code: Option<&str>, reason: Option<&str>) -> Result<Purpose, String> {
            Purpose::parse(PurposeHeaders { purpose, reason_code: code, reason }, &BreakGlassPolicy::default())
        }
        assert_eq!(parse(None, None, None).unwrap().code, "TREAT");
        assert_eq!(parse(Some("HPAYMT"), None, None).unwrap().code, "HPAYMT");
        assert!(parse(Some("treat"), None, None).is_err());
        assert!(parse(Some("ETREAT"), None, None).is_err());
        let why = "unconscious patient brought in by ambulance";
        assert!(parse(Some("ETREAT"), None, Some(why)).is_err(), "a reason code is required");
        assert!(parse(Some("ETREAT"), Some("because"), Some(why)).is_err(), "only listed codes");
        assert!(parse(Some("ETREAT"), Some("patient-unconscious"), Some("  ")).is_err());
        assert!(parse(Some("ETREAT"), Some("patient-unconscious"), Some("x")).is_err(), "a one-character reason");
        assert!(parse(Some("ETREAT"), Some("patient-unconscious"), Some(&"x".repeat(19))).is_err());
        assert!(parse(Some("ETREAT"), Some("patient-unconscious"), Some(&"x".repeat(20))).is_ok(), "at the minimum");
        assert!(parse(Some("ETREAT"), Some("patient-unconscious"), Some(&"x".repeat(501))).is_err());
        assert!(parse(Some("ETREAT"), Some("patient-unconscious"), Some("line\nbreak in a reason")).is_err());
        assert!(parse(Some("TREAT"), None, Some(why)).is_err());
        assert!(parse(Some("TREAT"), Some("patient-unconscious"), None).is_err());
        let bg = parse(Some("ETREAT"), Some("patient-unconscious"), Some(why)).unwrap();
        assert!(bg.is_break_glass());
        assert_eq!(bg.break_glass, Some(BreakGlass { code: "patient-unconscious".into(), reason: why.into() }));
        let strict = BreakGlassPolicy { codes: vec!["code-a".into()], min_reason: 5 };
        let h = PurposeHeaders { purpose: Some("ETREAT"), reason_code: Some("code-a"), reason: Some("short") };
        assert!(Purpose::parse(h, &strict).is_ok());
    }
}
