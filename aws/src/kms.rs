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
    key_id: String,
}

impl KmsKeys {
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        KmsKeys { client, key_id: key_id.into() }
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
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
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
