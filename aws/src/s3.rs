//! S3 adapter of the blob store: encrypted documents in one bucket, client
//! uploads in a quarantine bucket that only the ingest reads.

use super::port_error;
use crate::error::PortError;
use crate::ports::{BlobStore, PresignedUpload, UploadTerms};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;

pub struct S3Blobs {
    client: aws_sdk_s3::Client,
    documents: String,
    uploads: String,
}

impl S3Blobs {
    pub fn new(sdk: &aws_config::SdkConfig, local: bool, documents: &str, uploads: &str) -> Self {
        S3Blobs { client: super::s3_client(sdk, local), documents: documents.into(), uploads: uploads.into() }
    }

    async fn read(&self, bucket: &str, key: &str, range: Option<(u64, u64)>) -> Result<Option<Vec<u8>>, PortError> {
        let mut req = self.client.get_object().bucket(bucket).key(key);
        if let Some((first, last)) = range {
            req = req.range(format!("bytes={first}-{last}"));
        }
        let out = match req.send().await {
            Ok(o) => o,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            // S3 answers a range on an empty object with InvalidRange.
            Err(e) if e.as_service_error().and_then(|s| s.meta().code()) == Some("InvalidRange") => {
                return Ok(Some(vec![]))
            }
            Err(e) => return Err(port_error("s3", &e)),
        };
        let body = out.body.collect().await.map_err(|_| PortError::Backend { service: "s3", detail: "body".into() })?;
        Ok(Some(body.to_vec()))
    }
}

impl BlobStore for S3Blobs {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), PortError> {
        self.client
            .put_object()
            .bucket(&self.documents)
            .key(key)
            .content_type("application/octet-stream")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| port_error("s3", &e))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        self.client.delete_object().bucket(&self.documents).key(key).send().await.map_err(|e| port_error("s3", &e))?;
        Ok(())
    }

    async fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<Option<Vec<u8>>, PortError> {
        self.read(&self.documents, key, range).await
    }

    async fn presign_upload(&self, key: &str, terms: &UploadTerms) -> Result<PresignedUpload, PortError> {
        let cfg = PresigningConfig::expires_in(terms.expires_in)
            .map_err(|_| PortError::Backend { service: "s3", detail: "presigning config".into() })?;
        // Length, type and checksum are signed: S3 refuses an upload that
        // differs from what the DocumentReference declared.
        let req = self
            .client
            .put_object()
            .bucket(&self.uploads)
            .key(key)
            .content_type(&terms.content_type)
            .content_length(terms.length as i64)
            .checksum_sha256(&terms.sha256)
            .presigned(cfg)
            .await
            .map_err(|e| port_error("s3", &e))?;
        Ok(PresignedUpload {
            url: req.uri().to_owned(),
            method: req.method().to_owned(),
            headers: req.headers().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        })
    }

    async fn fetch_upload(&self, key: &str, max: u64) -> Result<Option<Vec<u8>>, PortError> {
        self.read(&self.uploads, key, Some((0, max))).await
    }

    async fn discard_upload(&self, key: &str) -> Result<(), PortError> {
        self.client.delete_object().bucket(&self.uploads).key(key).send().await.map_err(|e| port_error("s3", &e))?;
        Ok(())
    }
}
