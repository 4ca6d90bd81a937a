//! Clinical documents as domain rules, free of AWS: which content types are
//! accepted and how their bytes are recognised, the malware-scan hook, the
//! size limits, and the medrec extension that records a document's SHA-256
//! (FHIR R4's `Attachment.hash` is SHA-1, kept for interoperability only).

use crate::error::ConfigError;
use std::time::Duration;

/// `Attachment.extension` carrying the SHA-256 of the content (base64).
pub const SHA256_EXTENSION: &str = "https://medrec.dev/fhir/StructureDefinition/attachment-sha256";

/// Content types medrec knows how to recognise. Only these may be allowed:
/// accepting a type whose bytes cannot be checked would let anything in
/// under its name.
const KNOWN_TYPES: &[&str] = &[
    "application/pdf",
    "image/png",
    "image/jpeg",
    "image/tiff",
    "text/plain",
    "application/xml",
    "text/xml",
    "application/dicom",
];

/// Accepted when nothing is configured: what clinical document exchange
/// mostly carries (scanned letters, images, C-CDA XML, notes).
const DEFAULT_TYPES: &str = "application/pdf,image/png,image/jpeg,image/tiff,text/plain,application/xml,text/xml";

/// Lambda's synchronous payload limit is 6 MB for the request and for the
/// response; a document inline in FHIR JSON travels as base64 (4/3 larger),
/// so 4 MiB is the largest that fits both ways with room for the envelope.
pub const INLINE_LIMIT: usize = 4 * 1024 * 1024;

/// The media type of a `Content-Type`-style value: lowercased, no parameters.
pub fn essence(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// Whether `bytes` look like `media` (an essence from KNOWN_TYPES).
pub fn content_matches(media: &str, bytes: &[u8]) -> bool {
    fn utf8_text(b: &[u8]) -> Option<&str> {
        let s = std::str::from_utf8(b).ok()?;
        (!s.contains('\0')).then_some(s)
    }
    match media {
        "application/pdf" => bytes.starts_with(b"%PDF-"),
        "image/png" => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
        "image/tiff" => bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*"),
        "text/plain" => utf8_text(bytes).is_some(),
        "application/xml" | "text/xml" => {
            utf8_text(bytes).is_some_and(|s| s.trim_start_matches('\u{feff}').trim_start().starts_with('<'))
        }
        "application/dicom" => bytes.len() >= 132 && &bytes[128..132] == b"DICM",
        _ => false,
    }
}

/// What a malware scan concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanVerdict {
    Clean,
    /// Names the signature, never the content.
    Infected(&'static str),
}

/// The hook every document passes before it is stored. Deployments plug
/// their engine in here (ClamAV in a layer, a scanning service); the built-in
/// scanner only knows test signatures, so that the hook itself is exercised.
pub trait MalwareScanner: Send + Sync {
    fn scan(&self, bytes: &[u8]) -> ScanVerdict;
}

/// Recognises the EICAR anti-malware test file, the industry's agreed
/// harmless sample for proving that a scanning path is wired.
pub struct TestSignatureScanner;

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

impl MalwareScanner for TestSignatureScanner {
    fn scan(&self, bytes: &[u8]) -> ScanVerdict {
        // Compare only where the signature's first byte occurs.
        let found =
            bytes.iter().enumerate().filter(|(_, b)| **b == EICAR[0]).any(|(i, _)| bytes[i..].starts_with(EICAR));
        if found {
            ScanVerdict::Infected("EICAR-Test-File")
        } else {
            ScanVerdict::Clean
        }
    }
}

/// Document settings, from the environment, validated at cold start.
#[derive(Debug, Clone)]
pub struct DocumentConfig {
    pub documents_bucket: String,
    pub uploads_bucket: String,
    /// Allowed content types (essences from KNOWN_TYPES).
    pub allowed_types: Vec<String>,
    /// Largest document accepted inline (and served without a Range).
    pub inline_max: usize,
    /// Largest document accepted through a presigned upload.
    pub upload_max: u64,
    pub upload_url_ttl: Duration,
}

impl DocumentConfig {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let req = |k: &'static str| get(k).filter(|v| !v.trim().is_empty()).ok_or(ConfigError::Missing(k));
        let num = |k: &'static str, default: u64| -> Result<u64, ConfigError> {
            get(k).map_or(Ok(default), |v| {
                v.trim().parse().map_err(|e: std::num::ParseIntError| ConfigError::Invalid(k, e.to_string()))
            })
        };
        let types = get("MEDREC_DOCUMENT_TYPES").unwrap_or_else(|| DEFAULT_TYPES.into());
        let mut allowed_types = vec![];
        for t in types.split(',').map(essence).filter(|t| !t.is_empty()) {
            if !KNOWN_TYPES.contains(&t.as_str()) {
                return Err(ConfigError::Invalid("MEDREC_DOCUMENT_TYPES", format!("{t:?} has no content check")));
            }
            allowed_types.push(t);
        }
        let cfg = DocumentConfig {
            documents_bucket: req("MEDREC_DOCUMENTS_BUCKET")?,
            uploads_bucket: req("MEDREC_UPLOADS_BUCKET")?,
            allowed_types,
            inline_max: num("MEDREC_DOCUMENT_INLINE_MAX_BYTES", INLINE_LIMIT as u64)? as usize,
            upload_max: num("MEDREC_DOCUMENT_MAX_BYTES", 100 * 1024 * 1024)?,
            upload_url_ttl: Duration::from_secs(num("MEDREC_UPLOAD_URL_SECONDS", 900)?),
        };
        if cfg.allowed_types.is_empty() {
            return Err(ConfigError::Invalid("MEDREC_DOCUMENT_TYPES", "allows nothing".into()));
        }
        if cfg.inline_max == 0 || cfg.inline_max > INLINE_LIMIT {
            return Err(ConfigError::Invalid(
                "MEDREC_DOCUMENT_INLINE_MAX_BYTES",
                format!("must be 1..={INLINE_LIMIT}"),
            ));
        }
        // The ingest holds a document and its ciphertext in memory.
        if cfg.upload_max == 0 || cfg.upload_max > 1024 * 1024 * 1024 {
            return Err(ConfigError::Invalid("MEDREC_DOCUMENT_MAX_BYTES", "must be 1..=1 GiB".into()));
        }
        if !(60..=3600).contains(&cfg.upload_url_ttl.as_secs()) {
            return Err(ConfigError::Invalid("MEDREC_UPLOAD_URL_SECONDS", "must be 60..=3600".into()));
        }
        Ok(cfg)
    }

    pub fn allows(&self, media: &str) -> bool {
        self.allowed_types.iter().any(|t| t == media)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_checks_recognise_their_type_and_refuse_others() {
        let pdf = b"%PDF-1.7\n...";
        assert!(content_matches("application/pdf", pdf));
        assert!(!content_matches("image/png", pdf));
        assert!(!content_matches("application/pdf", b"MZ\x90\0 executable"));
        assert!(content_matches("text/plain", "Befund: unauffällig".as_bytes()));
        assert!(!content_matches("text/plain", b"bin\0ary"));
        assert!(!content_matches("text/plain", &[0xC3, 0x28]));
        assert!(content_matches("application/xml", "\u{feff}  <ClinicalDocument/>".as_bytes()));
        assert!(!content_matches("application/xml", b"plain words"));
        let mut dicom = vec![0u8; 128];
        dicom.extend_from_slice(b"DICM....");
        assert!(content_matches("application/dicom", &dicom));
        assert!(!content_matches("application/x-msdownload", b"MZ"));
        assert_eq!(essence(" Text/Plain; charset=UTF-8"), "text/plain");
    }

    #[test]
    fn the_test_scanner_finds_eicar_anywhere() {
        let s = TestSignatureScanner;
        assert_eq!(s.scan(b"hello"), ScanVerdict::Clean);
        let mut b = b"%PDF-1.4 ".to_vec();
        b.extend_from_slice(EICAR);
        assert_eq!(s.scan(&b), ScanVerdict::Infected("EICAR-Test-File"));
    }

    #[test]
    fn config_refuses_types_it_cannot_check_and_limits_out_of_range() {
        let base = |extra: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                extra.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()).or(match k {
                    "MEDREC_DOCUMENTS_BUCKET" => Some("docs".into()),
                    "MEDREC_UPLOADS_BUCKET" => Some("uploads".into()),
                    _ => None,
                })
            }
        };
        let ok = DocumentConfig::from_lookup(base(&[])).unwrap();
        assert!(ok.allows("application/pdf") && !ok.allows("application/dicom"));
        assert_eq!(ok.inline_max, INLINE_LIMIT);
        for bad in [
            &[("MEDREC_DOCUMENT_TYPES", "application/pdf,application/x-msdownload")][..],
            &[("MEDREC_DOCUMENT_TYPES", " , ")],
            &[("MEDREC_DOCUMENT_INLINE_MAX_BYTES", "5000000")],
            &[("MEDREC_DOCUMENT_MAX_BYTES", "0")],
            &[("MEDREC_UPLOAD_URL_SECONDS", "86400")],
        ] {
            assert!(DocumentConfig::from_lookup(base(bad)).is_err(), "{bad:?}");
        }
        assert!(DocumentConfig::from_lookup(|_| None).is_err());
    }
}
