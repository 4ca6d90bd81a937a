//! Identity and access: who the caller is (a verified JWT), what their roles
//! and SMART scopes let them do, and the purpose of use they declare.

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

/// Why the caller is accessing data. `ETREAT` is break-glass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purpose {
    pub code: &'static str,
    pub break_glass_reason: Option<String>,
}

impl Purpose {
    pub fn is_break_glass(&self) -> bool {
        self.code == "ETREAT"
    }

    /// Parses the purpose headers; treatment is the default purpose.
    pub fn parse(purpose: Option<&str>, reason: Option<&str>) -> Result<Purpose, &'static str> {
        let code = match purpose.map(str::trim) {
            None | Some("") => "TREAT",
            Some(p) => PURPOSES_OF_USE
                .iter()
                .find(|c| **c == p)
                .copied()
                .ok_or("X-Purpose-Of-Use is not a supported PurposeOfUse code")?,
        };
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        if code == "ETREAT" {
            let r = reason.ok_or("break-glass (ETREAT) requires X-Break-Glass-Reason")?;
            if r.len() > 500 || r.chars().any(char::is_control) {
                return Err("X-Break-Glass-Reason must be at most 500 printable characters");
            }
            return Ok(Purpose { code, break_glass_reason: Some(r.to_owned()) });
        }
        if reason.is_some() {
            return Err("X-Break-Glass-Reason is only valid with X-Purpose-Of-Use: ETREAT");
        }
        Ok(Purpose { code, break_glass_reason: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes() {
        assert_eq!(Purpose::parse(None, None).unwrap().code, "TREAT");
        assert_eq!(Purpose::parse(Some("HPAYMT"), None).unwrap().code, "HPAYMT");
        assert!(Purpose::parse(Some("treat"), None).is_err());
        assert!(Purpose::parse(Some("ETREAT"), None).is_err());
        assert!(Purpose::parse(Some("ETREAT"), Some("  ")).is_err());
        assert!(Purpose::parse(Some("TREAT"), Some("why")).is_err());
        let bg = Purpose::parse(Some("ETREAT"), Some("unconscious patient in ED")).unwrap();
        assert!(bg.is_break_glass());
        assert!(Purpose::parse(Some("ETREAT"), Some(&"x".repeat(501))).is_err());
    }
}
