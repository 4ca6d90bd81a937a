//! KMS adapter: per-patient data keys under the records CMK. The encryption
//! context names the patient, so a wrapped key only unwraps for its own
//! patient, and the key policy can require the context key.

use super::port_error;
use crate::crypto::DataKey;
use crate::error::PortError;
use crate::ports::KeyService;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;

pub const PATIENT_CONTEXT_KEY: &str = "medrec:patient";
pub const PURPOSE_CONTEXT_KEY: &str = "medrec:purpose";

#[derive(Clone)]
pub struct KmsKeys {
    client: aws_sdk_kms::Client,
    /// The CMK new data keys are generated under.
    key_id: String,
    /// CMKs a wrapped key may also be under: the ones a re-wrap
    /// (`rekey::Rekey`) is moving away from.
    previous: Vec<String>,
}

/// Whether `arn` (what KMS answers) is the key `id` names: its ARN, or the
/// key id its ARN ends with.
pub fn names_key(id: &str, arn: &str) -> bool {
    !id.is_empty() && (arn == id || arn.strip_suffix(id).is_some_and(|head| head.ends_with("key/")))
}

impl KmsKeys {
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        KmsKeys { client, key_id: key_id.into(), previous: vec![] }
    }

    /// Also unwraps keys still under these CMKs (during a re-wrap).
    pub fn accepting(mut self, previous: Vec<String>) -> Self {
        self.previous = previous;
        self
    }

    fn accepted(&self, arn: &str) -> bool {
        std::iter::once(&self.key_id).chain(&self.previous).any(|id| names_key(id, arn))
    }

    async fn generate_with(&self, ctx_key: &str, ctx_value: &str) -> Result<(DataKey, Vec<u8>), PortError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .encryption_context(ctx_key, ctx_value)
            .send()
            .await
            .map_err(|e| port_error("kms", &e))?;
        let plain = out.plaintext().ok_or(PortError::Backend { service: "kms", detail: "no plaintext".into() })?;
        let wrapped =
            out.ciphertext_blob().ok_or(PortError::Backend { service: "kms", detail: "no ciphertext".into() })?;
        let key = DataKey::from_slice(plain.as_ref()).map_err(|_| PortError::Integrity("data key length".into()))?;
        Ok((key, wrapped.as_ref().to_vec()))
    }

    async fn unwrap_with(&self, ctx_key: &str, ctx_value: &str, wrapped: &[u8]) -> Result<DataKey, PortError> {
        // Without a key id, KMS unwraps under whichever CMK wrapped it (a
        // re-wrap leaves keys under two for a while); the answer names it,
        // and a CMK this function was not configured with is refused: else
        // someone able to write the table could swap in a key wrapped under
        // a CMK of their own, which they know, and read what is sealed next.
        let out = self
            .client
            .decrypt()
            .ciphertext_blob(Blob::new(wrapped))
            .encryption_context(ctx_key, ctx_value)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(se) if se.is_invalid_ciphertext_exception() => {
                    PortError::Integrity("wrapped key does not unwrap in this context".into())
                }
                _ => port_error("kms", &e),
            })?;
        if !out.key_id().is_some_and(|arn| self.accepted(arn)) {
            return Err(PortError::Integrity(
                "wrapped key is under a CMK this function does not accept (a swapped key, or a re-wrap's CMK missing from MEDREC_RECORDS_KEY_ID / MEDREC_PREVIOUS_RECORDS_KEY_IDS)".into(),
            ));
        }
        let plain = out.plaintext().ok_or(PortError::Backend { service: "kms", detail: "no plaintext".into() })?;
        DataKey::from_slice(plain.as_ref()).map_err(|_| PortError::Integrity("data key length".into()))
    }

    /// A service secret (not patient data) bound to a purpose label.
    pub async fn generate_secret(&self, purpose: &str) -> Result<(DataKey, Vec<u8>), PortError> {
        self.generate_with(PURPOSE_CONTEXT_KEY, purpose).await
    }

    pub async fn unwrap_secret(&self, purpose: &str, wrapped: &[u8]) -> Result<DataKey, PortError> {
        self.unwrap_with(PURPOSE_CONTEXT_KEY, purpose, wrapped).await
    }
}

impl KeyService for KmsKeys {
    async fn generate(&self, patient: &str) -> Result<(DataKey, Vec<u8>), PortError> {
        self.generate_with(PATIENT_CONTEXT_KEY, patient).await
    }

    async fn unwrap(&self, patient: &str, wrapped: &[u8]) -> Result<DataKey, PortError> {
        self.unwrap_with(PATIENT_CONTEXT_KEY, patient, wrapped).await
    }
}

#[cfg(test)]
mod tests {
    use super::names_key;

    #[test]
    fn a_key_is_named_by_its_arn_or_its_id() {
        let arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert!(names_key(arn, arn));
        assert!(names_key("1234abcd-12ab-34cd-56ef-1234567890ab", arn));
        assert!(!names_key("34cd-56ef-1234567890ab", arn), "a suffix of the id is not the id");
        assert!(!names_key("alias/medrec-records", arn));
        assert!(!names_key("", arn));
    }
}
