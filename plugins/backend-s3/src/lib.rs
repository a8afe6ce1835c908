//! The `s3` storage backend: AWS S3 and any S3-compatible store (MinIO, Ceph, R2, ...).
//!
//! Credentials come from the explicit keys in the settings, else the standard chain
//! (environment variables, shared config/credentials files and `profile`). All-zero objects
//! are server-side copies of one uploaded zero object of the same size; [`ObjectCopies`] are
//! server-side copies (CopyObject, which keeps the source's metadata). A CopyObject can fail
//! inside a `200 OK` response; opendal's copier reads the body and reports that as an error.

use aero_plugin_api::backend::{
    async_trait, opendal, parse_bool, storage_error, ObjectCopies, ObjectMeta, Settings, Storage,
    StorageBackend, ZeroObjects, DIGEST_METADATA_KEY,
};
use aero_plugin_api::{register_backend, Error, Result};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

/// The `s3` backend plugin.
#[derive(Default)]
pub struct S3Backend;

register_backend!(S3Backend);

/// The region used when neither the environment nor the settings name one.
pub const DEFAULT_REGION: &str = "us-east-1";

impl StorageBackend for S3Backend {
    fn name(&self) -> &str {
        "s3"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn keys(&self) -> &[&str] {
        &[
            "bucket",
            "root",
            "region",
            "endpoint",
            "force_path_style",
            "access_key_id",
            "secret_access_key",
            "session_token",
            "profile",
        ]
    }

    fn build(&self, settings: &Settings) -> Result<Storage> {
        let get = |k: &str| settings.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let bucket = get("bucket")
            .ok_or_else(|| Error::invalid_input("storage type 's3' needs a 'bucket'"))?;
        let root = get("root").unwrap_or("/");
        let region = std::env::var("AWS_REGION")
            .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
            .ok()
            .filter(|r| !r.is_empty())
            .or_else(|| get("region").map(str::to_string))
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        let mut builder = opendal::services::S3::default()
            .bucket(bucket)
            .root(root)
            .region(&region);
        if let Some(endpoint) = get("endpoint") {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(Error::invalid_input(format!(
                    "s3 endpoint '{endpoint}' must start with http:// or https://"
                )));
            }
            builder = builder.endpoint(endpoint);
        }
        if let Some(v) = get("force_path_style") {
            if !parse_bool("force_path_style", v)? {
                builder = builder.enable_virtual_host_style();
            }
        }
        match (get("access_key_id"), get("secret_access_key")) {
            (Some(id), Some(secret)) => {
                builder = builder.access_key_id(id).secret_access_key(secret);
                if let Some(token) = get("session_token") {
                    builder = builder.session_token(token);
                }
            }
            (None, None) => {}
            _ => {
                return Err(Error::invalid_input(
                    "s3 'access_key_id' and 'secret_access_key' must be given together",
                ))
            }
        }
        if let Some(profile) = get("profile") {
            builder = builder.profile(profile);
        }
        // The S3 service talks HTTP through opendal's process-wide default transport, which
        // is only installed on request (idempotent).
        opendal::install_default();
        let operator = opendal::Operator::new(builder)
            .map_err(|e| Error::invalid_input(format!("configuring s3 bucket {bucket}: {e}")))?;
        let root_shown = root.trim_matches('/');
        Ok(Storage {
            operator,
            description: if root_shown.is_empty() {
                format!("s3://{bucket}")
            } else {
                format!("s3://{bucket}/{root_shown}")
            },
            zero_objects: Some(Arc::new(ZeroCopies::default())),
            copies: Some(Arc::new(ServerCopies)),
            local_files: None,
            // An acknowledged PUT is durable.
            durability: None,
        })
    }
}

/// Server-side copies (CopyObject).
struct ServerCopies;

#[async_trait]
impl ObjectCopies for ServerCopies {
    async fn copy(
        &self,
        operator: &opendal::Operator,
        from: &str,
        to: &str,
        size: u64,
    ) -> Result<bool> {
        // The size is known, so opendal copies at once instead of asking for it first.
        match operator
            .copy_with(from, to)
            .source_content_length_hint(size)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(storage_error(format!("copying {from} to {to}"), e)),
        }
    }
}

/// Uploads one all-zero object per size, then makes every further one a server-side copy.
#[derive(Default)]
struct ZeroCopies {
    templates: Mutex<HashMap<u64, String>>,
}

#[async_trait]
impl ZeroObjects for ZeroCopies {
    async fn write_zero(
        &self,
        operator: &opendal::Operator,
        key: &str,
        size: u64,
        meta: &ObjectMeta,
    ) -> Result<()> {
        let mut templates = self.templates.lock().await;
        if let Some(template) = templates.get(&size) {
            let template = template.clone();
            drop(templates);
            operator.copy(&template, key).await.map_err(|e| {
                storage_error(format!("copying zero object {template} to {key}"), e)
            })?;
            return Ok(());
        }
        let len = usize::try_from(size)
            .map_err(|_| Error::invalid_input(format!("zero object {key} too large")))?;
        let mut write = operator
            .write_with(key, vec![0u8; len])
            .content_type(&meta.content_type)
            .cache_control(&meta.cache_control)
            .content_encoding(&meta.content_encoding);
        if let Some(digest) = &meta.sha256 {
            // Copies keep it: every zero object of this size has this digest.
            write = write.user_metadata([(DIGEST_METADATA_KEY.to_string(), digest.clone())]);
        }
        write
            .await
            .map_err(|e| storage_error(format!("writing {key}"), e))?;
        templates.insert(size, key.to_string());
        Ok(())
    }
}
