//! The gateway's resolved settings (SPEC 4.8 plus the limits of a real service) and their one
//! table of defaults. The library never reads the environment: the binary resolves flags,
//! environment variables and the `[gateway]` table into a [`Settings`].

use aero_access::cloudfront::{CloudFront, CloudFrontError};
use aero_access::LeaseKeys;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Smallest multipart part size S3 accepts (5 MiB).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Largest multipart part size S3 accepts (5 GiB).
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Longest lifetime S3 accepts for a presigned URL (7 days).
pub const MAX_URL_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// How callers are identified (`AUTH_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// The caller is the `X-User-Id` header (SPEC 4.1): for development only.
    Dev,
    /// Everyone is the user `public`.
    None,
    /// `Authorization: Bearer <token>`, tokens created with `aero-host gateway token create`.
    Token,
}

impl AuthMode {
    /// Parses `dev`, `none` or `token`.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "dev" => Ok(AuthMode::Dev),
            "none" => Ok(AuthMode::None),
            "token" => Ok(AuthMode::Token),
            other => Err(format!(
                "AUTH_MODE '{other}' is not one of dev, none, token"
            )),
        }
    }
}

/// `IMAGE_CACHE_CONTROL`: the Cache-Control of uploaded objects and proxied chunked objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageCacheControl {
    /// `private, no-store, no-transform` (default).
    PrivateNoStore,
    /// `public, max-age=31536000, immutable, no-transform`.
    PublicImmutable,
}

impl ImageCacheControl {
    /// Parses `private-no-store` or `public-immutable`.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "private-no-store" => Ok(ImageCacheControl::PrivateNoStore),
            "public-immutable" => Ok(ImageCacheControl::PublicImmutable),
            other => Err(format!(
                "IMAGE_CACHE_CONTROL '{other}' is not one of private-no-store, public-immutable"
            )),
        }
    }

    /// The header value.
    pub fn header(self) -> &'static str {
        match self {
            ImageCacheControl::PrivateNoStore => "private, no-store, no-transform",
            ImageCacheControl::PublicImmutable => {
                "public, max-age=31536000, immutable, no-transform"
            }
        }
    }
}

/// The S3 bucket uploads go to and conversions publish into.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// `S3_BUCKET` (required).
    pub bucket: String,
    /// `AWS_REGION` (required).
    pub region: String,
    /// `S3_ENDPOINT`: an S3-compatible server; default AWS's regional endpoint.
    pub endpoint: Option<String>,
    /// `S3_FORCE_PATH_STYLE`: `http://endpoint/bucket/key` instead of virtual hosts. Default false.
    pub force_path_style: bool,
    /// Access key id (`AWS_ACCESS_KEY_ID`).
    pub access_key_id: String,
    /// Secret access key (`AWS_SECRET_ACCESS_KEY`); never logged.
    pub secret_access_key: String,
    /// Session token (`AWS_SESSION_TOKEN`), for temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Settings {
    /// Everything but the secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("force_path_style", &self.force_path_style)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Everything the gateway needs, already resolved. [`Settings::new`] fills every default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// The bucket and its credentials.
    pub s3: S3Settings,
    /// Database URL: `sqlite:PATH` (or a bare path) or `postgres://…`. Default
    /// `sqlite:aero-gateway.sqlite` in the working directory.
    pub database: String,
    /// Where the binary listens (`PORT` sets the port). Default `0.0.0.0:3000`.
    pub listen_addr: SocketAddr,
    /// Caller identification. Default `dev`.
    pub auth_mode: AuthMode,
    /// `MULTIPART_PART_SIZE_BYTES`: 5 MiB–5 GiB. Default 64 MiB.
    pub part_size: u64,
    /// `IMAGE_BASE_PATH`: where uploaded objects go (`<base>/<owner>/<id>/<version>/disk.img`).
    /// Default `/images`.
    pub image_base_path: String,
    /// `IMAGE_CACHE_CONTROL`. Default `private-no-store`.
    pub image_cache_control: ImageCacheControl,
    /// Key prefix of converted images (`<prefix><id>/<version>/…` and `<prefix><id>/latest.json`),
    /// ending in `/`. Default `images/`.
    pub chunked_prefix: String,
    /// `CORS_ALLOW_ORIGIN`: `*` or one bare http(s) origin. Default `*`.
    pub cors_allow_origin: String,
    /// `CROSS_ORIGIN_RESOURCE_POLICY` of proxied bytes. Default `same-site`.
    pub cross_origin_resource_policy: String,
    /// Lifetime of a presigned part URL. Default 3600 s; at most 7 days.
    pub upload_url_expiry: Duration,
    /// Longest request URL (414 beyond). Default 8192 bytes.
    pub max_url_bytes: usize,
    /// Largest request body (413 beyond). Default 1 MiB.
    pub max_body_bytes: usize,
    /// Largest uploaded object accepted by `complete` (413 beyond). Default 64 GiB.
    pub max_image_bytes: u64,
    /// Conversions run at once by this instance. Default 2.
    pub max_conversions: usize,
    /// Chunk size of converted images. Default 4 MiB.
    pub chunk_size: u64,
    /// Chunks read and uploaded at once by one conversion. Default 4.
    pub conversion_concurrency: usize,
    /// How long a conversion's claim lasts without renewal; after a crash another instance
    /// (or the restarted one) takes the job over once it lapses. Default 60 s.
    pub job_lease: Duration,
    /// How often the instance looks for queued conversions. Default 1 s.
    pub job_poll_interval: Duration,
    /// Connections to the database. Default 8.
    pub db_max_connections: u32,
    /// The lease keys (`--lease-keys FILE`, the file `serve` reads): the signing key signs the
    /// leases the gateway grants, every key verifies the leases it is shown. Without them no
    /// lease is granted (503 `NO_LEASE_KEYS`) and lease-carrying requests are refused.
    pub lease_keys: Option<LeaseKeys>,
    /// Lifetime of a granted lease: 1 s to 1 hour. Default 300 s.
    pub lease_ttl: Duration,
    /// Live (unrevoked) share links per image (409 `LIMIT_REACHED` beyond). Default 100.
    pub max_share_links: usize,
    /// Users in one image's ACL (400 beyond). Default 100.
    pub max_acl_users: usize,
    /// CloudFront (SPEC 4.5, 4.7, 4.8): `Ok(None)` when not configured, the signer when fully
    /// configured, the `MISCONFIG` error of a partial or invalid configuration (answered as a
    /// 500 by the routes that need it). Default not configured.
    pub cloudfront: Result<Option<Arc<CloudFront>>, CloudFrontError>,
}

impl Settings {
    /// Settings for `s3` with every other value at its default.
    pub fn new(s3: S3Settings) -> Self {
        Settings {
            s3,
            database: "sqlite:aero-gateway.sqlite".into(),
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 3000)),
            auth_mode: AuthMode::Dev,
            part_size: 64 * 1024 * 1024,
            image_base_path: "/images".into(),
            image_cache_control: ImageCacheControl::PrivateNoStore,
            chunked_prefix: "images/".into(),
            cors_allow_origin: "*".into(),
            cross_origin_resource_policy: "same-site".into(),
            upload_url_expiry: Duration::from_secs(3600),
            max_url_bytes: 8192,
            max_body_bytes: 1024 * 1024,
            max_image_bytes: 64 * 1024 * 1024 * 1024,
            max_conversions: 2,
            chunk_size: aero_chunked::format::DEFAULT_CHUNK_SIZE,
            conversion_concurrency: 4,
            job_lease: Duration::from_secs(60),
            job_poll_interval: Duration::from_secs(1),
            db_max_connections: 8,
            lease_keys: None,
            lease_ttl: Duration::from_secs(300),
            max_share_links: 100,
            max_acl_users: 100,
            cloudfront: Ok(None),
        }
    }

    /// Checks every value, naming the setting that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.s3.bucket.is_empty() {
            return Err("S3_BUCKET is required".into());
        }
        if self.s3.region.is_empty() {
            return Err("AWS_REGION is required".into());
        }
        if let Some(endpoint) = &self.s3.endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(format!(
                    "S3_ENDPOINT '{endpoint}' must start with http:// or https://"
                ));
            }
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(format!(
                "MULTIPART_PART_SIZE_BYTES {} must lie between {MIN_PART_SIZE} (5 MiB) and {MAX_PART_SIZE} (5 GiB)",
                self.part_size
            ));
        }
        if self.cors_allow_origin != "*" && !is_bare_origin(&self.cors_allow_origin) {
            return Err(format!(
                "CORS_ALLOW_ORIGIN '{}' must be * or a bare http(s) origin such as https://app.example",
                self.cors_allow_origin
            ));
        }
        if !["same-origin", "same-site", "cross-origin"]
            .contains(&self.cross_origin_resource_policy.as_str())
        {
            return Err(format!(
                "CROSS_ORIGIN_RESOURCE_POLICY '{}' is not one of same-origin, same-site, cross-origin",
                self.cross_origin_resource_policy
            ));
        }
        if self.upload_url_expiry.is_zero() || self.upload_url_expiry > MAX_URL_EXPIRY {
            return Err(format!(
                "upload_url_expiry_seconds {} must lie between 1 and {} (7 days)",
                self.upload_url_expiry.as_secs(),
                MAX_URL_EXPIRY.as_secs()
            ));
        }
        if self.lease_ttl.is_zero() || self.lease_ttl > aero_access::lease::MAX_LEASE_TTL {
            return Err(format!(
                "lease_ttl_seconds {} must lie between 1 and {}",
                self.lease_ttl.as_secs(),
                aero_access::lease::MAX_LEASE_TTL.as_secs()
            ));
        }
        aero_chunked::layout::check_prefix(&self.chunked_prefix).map_err(|e| e.to_string())?;
        if !self.chunked_prefix.ends_with('/') {
            return Err(format!(
                "chunked_prefix '{}' must end with /",
                self.chunked_prefix
            ));
        }
        for (name, value) in [
            ("max_url_bytes", self.max_url_bytes as u64),
            ("max_body_bytes", self.max_body_bytes as u64),
            ("max_image_bytes", self.max_image_bytes),
            ("max_conversions", self.max_conversions as u64),
            ("conversion_concurrency", self.conversion_concurrency as u64),
            ("db_max_connections", self.db_max_connections as u64),
            ("job_lease_seconds", self.job_lease.as_secs()),
            ("max_share_links", self.max_share_links as u64),
            ("max_acl_users", self.max_acl_users as u64),
        ] {
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        Ok(())
    }

    /// The key prefix of uploaded objects: `IMAGE_BASE_PATH` without its leading `/`.
    pub fn upload_prefix(&self) -> &str {
        self.image_base_path.trim_matches('/')
    }
}

/// Whether `value` is `http(s)://host[:port]` with nothing after it.
fn is_bare_origin(value: &str) -> bool {
    let Some(rest) = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
    else {
        return false;
    };
    !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3() -> S3Settings {
        S3Settings {
            bucket: "b".into(),
            region: "us-east-1".into(),
            endpoint: None,
            force_path_style: false,
            access_key_id: "k".into(),
            secret_access_key: "s".into(),
            session_token: None,
        }
    }

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        let ok = Settings::new(s3());
        ok.validate().unwrap();
        let mut bad = ok.clone();
        bad.part_size = 1024;
        assert!(bad
            .validate()
            .unwrap_err()
            .contains("MULTIPART_PART_SIZE_BYTES"));
        let mut bad = ok.clone();
        bad.cors_allow_origin = "https://a.example/path".into();
        assert!(bad.validate().unwrap_err().contains("CORS_ALLOW_ORIGIN"));
        let mut bad = ok.clone();
        bad.upload_url_expiry = Duration::from_secs(8 * 24 * 3600);
        assert!(bad.validate().unwrap_err().contains("upload_url_expiry"));
        let mut bad = ok.clone();
        bad.lease_ttl = Duration::from_secs(7200);
        assert!(bad.validate().unwrap_err().contains("lease_ttl_seconds"));
        let mut bad = ok;
        bad.s3.bucket.clear();
        assert!(bad.validate().unwrap_err().contains("S3_BUCKET"));
    }
}
