//! `aero-host gateway` options: every setting is a CLI flag, an environment variable (the SPEC
//! 4.8 names where SPEC gives one, else `AERO_GATEWAY_*`) and a `[gateway]` key; a flag or the
//! environment wins over the config file, which wins over the default of
//! `aero_gateway::Settings::new`.

use aero_gateway::{AuthMode, ImageCacheControl, S3Settings, Settings};
use anyhow::{anyhow, Context, Result};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// Every gateway setting.
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayArgs {
    /// The bucket uploads go to and images are published in (required).
    #[arg(long, env = "S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// The bucket's region (required).
    #[arg(long, env = "AWS_REGION")]
    pub aws_region: Option<String>,
    /// An S3-compatible endpoint (http:// or https://); default AWS.
    #[arg(long, env = "S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Path-style bucket addressing (true/false) [default false].
    #[arg(long, env = "S3_FORCE_PATH_STYLE")]
    pub s3_force_path_style: Option<bool>,
    /// Access key id of the bucket's credentials (required).
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub aws_access_key_id: Option<String>,
    /// Secret access key (required; never logged).
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub aws_secret_access_key: Option<String>,
    /// Session token of temporary credentials.
    #[arg(long, env = "AWS_SESSION_TOKEN", hide_env_values = true)]
    pub aws_session_token: Option<String>,
    /// sqlite:PATH or postgres://USER@HOST/DB [default sqlite:aero-gateway.sqlite].
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,
    /// Port to listen on (all addresses) [default 3000].
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,
    /// Full address to listen on; wins over --port [default 0.0.0.0:PORT].
    #[arg(long, env = "AERO_GATEWAY_LISTEN_ADDR")]
    pub listen_addr: Option<String>,
    /// dev (X-User-Id), none (everyone is `public`) or token (Bearer tokens) [default dev].
    #[arg(long, env = "AUTH_MODE")]
    pub auth_mode: Option<String>,
    /// Multipart part size, 5 MiB–5 GiB [default 67108864].
    #[arg(long, env = "MULTIPART_PART_SIZE_BYTES")]
    pub multipart_part_size_bytes: Option<u64>,
    /// Key prefix of uploaded objects [default /images].
    #[arg(long, env = "IMAGE_BASE_PATH")]
    pub image_base_path: Option<String>,
    /// private-no-store or public-immutable [default private-no-store].
    #[arg(long, env = "IMAGE_CACHE_CONTROL")]
    pub image_cache_control: Option<String>,
    /// `*` or one bare http(s) origin [default *].
    #[arg(long, env = "CORS_ALLOW_ORIGIN")]
    pub cors_allow_origin: Option<String>,
    /// same-origin, same-site or cross-origin [default same-site].
    #[arg(long, env = "CROSS_ORIGIN_RESOURCE_POLICY")]
    pub cross_origin_resource_policy: Option<String>,
    /// Key prefix of converted images [default images/].
    #[arg(long, env = "AERO_GATEWAY_CHUNKED_PREFIX")]
    pub chunked_prefix: Option<String>,
    /// Lifetime of a presigned part URL, at most 7 days [default 3600].
    #[arg(long, env = "AERO_GATEWAY_UPLOAD_URL_EXPIRY_SECONDS")]
    pub upload_url_expiry_seconds: Option<u64>,
    /// Longest request URL (414 beyond) [default 8192].
    #[arg(long, env = "AERO_GATEWAY_MAX_URL_BYTES")]
    pub max_url_bytes: Option<usize>,
    /// Largest request body (413 beyond) [default 1048576].
    #[arg(long, env = "AERO_GATEWAY_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Largest upload `complete` accepts (413 beyond) [default 68719476736].
    #[arg(long, env = "AERO_GATEWAY_MAX_IMAGE_BYTES")]
    pub max_image_bytes: Option<u64>,
    /// Conversions this instance runs at once [default 2].
    #[arg(long, env = "AERO_GATEWAY_MAX_CONVERSIONS")]
    pub max_conversions: Option<usize>,
    /// Chunk size of converted images [default 4194304].
    #[arg(long, env = "AERO_GATEWAY_CHUNK_SIZE")]
    pub chunk_size: Option<u64>,
    /// Chunks one conversion reads and uploads at once [default 4].
    #[arg(long, env = "AERO_GATEWAY_CONVERSION_CONCURRENCY")]
    pub conversion_concurrency: Option<usize>,
    /// Seconds a conversion's claim lasts unrenewed before another instance takes it over [default 60].
    #[arg(long, env = "AERO_GATEWAY_JOB_LEASE_SECONDS")]
    pub job_lease_seconds: Option<u64>,
    /// Milliseconds between looks for queued conversions [default 1000].
    #[arg(long, env = "AERO_GATEWAY_JOB_POLL_INTERVAL_MS")]
    pub job_poll_interval_ms: Option<u64>,
    /// Connections to the database [default 8].
    #[arg(long, env = "AERO_GATEWAY_DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,
    /// Lease-key file (JSON: {"signing": KID, "keys": {KID: HEX SECRET}}), the file `serve
    /// --lease-keys` reads: its signing key signs the leases the gateway grants.
    #[arg(long, value_name = "FILE", env = "AERO_GATEWAY_LEASE_KEYS")]
    pub lease_keys: Option<String>,
    /// Lifetime of a granted lease, 1 to 3600 seconds [default 300].
    #[arg(long, env = "AERO_GATEWAY_LEASE_TTL_SECONDS")]
    pub lease_ttl_seconds: Option<u64>,
    /// Live share links per image [default 100].
    #[arg(long, env = "AERO_GATEWAY_MAX_SHARE_LINKS")]
    pub max_share_links: Option<usize>,
    /// Users in one image's ACL [default 100].
    #[arg(long, env = "AERO_GATEWAY_MAX_ACL_USERS")]
    pub max_acl_users: Option<usize>,
    /// CloudFront host or origin serving the bucket (with the key pair id and private key).
    #[arg(long, env = "CLOUDFRONT_DOMAIN")]
    pub cloudfront_domain: Option<String>,
    /// CloudFront public key id (key group member).
    #[arg(long, env = "CLOUDFRONT_KEY_PAIR_ID")]
    pub cloudfront_key_pair_id: Option<String>,
    /// CloudFront private key: PEM text (\n escapes allowed) or a file path (never logged).
    #[arg(long, env = "CLOUDFRONT_PRIVATE_KEY_PEM", hide_env_values = true)]
    pub cloudfront_private_key_pem: Option<String>,
    /// cookie (signed cookies) or url (signed URLs) [default cookie].
    #[arg(long, env = "CLOUDFRONT_AUTH_MODE")]
    pub cloudfront_auth_mode: Option<String>,
    /// Domain attribute of the signed cookies [default none].
    #[arg(long, env = "CLOUDFRONT_COOKIE_DOMAIN")]
    pub cloudfront_cookie_domain: Option<String>,
    /// SameSite of the signed cookies: None, Lax or Strict [default None].
    #[arg(long, env = "CLOUDFRONT_COOKIE_SAMESITE")]
    pub cloudfront_cookie_samesite: Option<String>,
    /// Partitioned signed cookies (true/false; needs SameSite None) [default false].
    #[arg(long, env = "CLOUDFRONT_COOKIE_PARTITIONED")]
    pub cloudfront_cookie_partitioned: Option<String>,
    /// Lifetime of signed cookies and URLs [default 43200].
    #[arg(long, env = "CLOUDFRONT_SIGNED_TTL_SECONDS")]
    pub cloudfront_signed_ttl_seconds: Option<String>,
    /// rsa-sha1 or ecdsa-sha256 [default: by the key's type].
    #[arg(long, env = "CLOUDFRONT_SIGNING_ALGORITHM")]
    pub cloudfront_signing_algorithm: Option<String>,
}

fn pick<T: Clone>(flag: &Option<T>, file: &Option<T>) -> Option<T> {
    flag.clone().or_else(|| file.clone())
}

impl GatewayArgs {
    /// The settings the environment gives (every flag unset).
    pub fn from_env() -> GatewayArgs {
        use clap::{Args, FromArgMatches};
        let command = Self::augment_args(clap::Command::new("gateway"));
        command
            .try_get_matches_from(["gateway"])
            .ok()
            .and_then(|m| Self::from_arg_matches(&m).ok())
            .unwrap_or_default()
    }

    /// These options over `file`'s (the `[gateway]` table): each set flag or variable wins.
    pub fn over(&self, file: &GatewayArgs) -> GatewayArgs {
        macro_rules! merge {
            ($($field:ident),*) => { GatewayArgs { $($field: pick(&self.$field, &file.$field)),* } };
        }
        merge!(
            s3_bucket,
            aws_region,
            s3_endpoint,
            s3_force_path_style,
            aws_access_key_id,
            aws_secret_access_key,
            aws_session_token,
            database,
            port,
            listen_addr,
            auth_mode,
            multipart_part_size_bytes,
            image_base_path,
            image_cache_control,
            cors_allow_origin,
            cross_origin_resource_policy,
            chunked_prefix,
            upload_url_expiry_seconds,
            max_url_bytes,
            max_body_bytes,
            max_image_bytes,
            max_conversions,
            chunk_size,
            conversion_concurrency,
            job_lease_seconds,
            job_poll_interval_ms,
            db_max_connections,
            lease_keys,
            lease_ttl_seconds,
            max_share_links,
            max_acl_users,
            cloudfront_domain,
            cloudfront_key_pair_id,
            cloudfront_private_key_pem,
            cloudfront_auth_mode,
            cloudfront_cookie_domain,
            cloudfront_cookie_samesite,
            cloudfront_cookie_partitioned,
            cloudfront_signed_ttl_seconds,
            cloudfront_signing_algorithm
        )
    }

    /// The database URL.
    pub fn database(&self) -> String {
        self.database
            .clone()
            .unwrap_or_else(|| Settings::new(empty_s3()).database)
    }

    /// The resolved settings; names the missing or wrong setting.
    pub fn resolve(&self) -> Result<Settings> {
        let need = |v: &Option<String>, name: &str| {
            v.clone().filter(|v| !v.is_empty()).ok_or_else(|| {
                anyhow!("the gateway needs {name} (flag, environment or [gateway] key)")
            })
        };
        let s3 = S3Settings {
            bucket: need(&self.s3_bucket, "S3_BUCKET")?,
            region: need(&self.aws_region, "AWS_REGION")?,
            endpoint: self.s3_endpoint.clone().filter(|e| !e.is_empty()),
            force_path_style: self.s3_force_path_style.unwrap_or(false),
            access_key_id: need(&self.aws_access_key_id, "AWS_ACCESS_KEY_ID")?,
            secret_access_key: need(&self.aws_secret_access_key, "AWS_SECRET_ACCESS_KEY")?,
            session_token: self.aws_session_token.clone(),
        };
        let mut s = Settings::new(s3);
        s.database = self.database();
        if let Some(port) = self.port {
            s.listen_addr = SocketAddr::from(([0, 0, 0, 0], port));
        }
        if let Some(addr) = &self.listen_addr {
            s.listen_addr = addr.parse().with_context(|| {
                format!("listen_addr '{addr}' is not an address such as 127.0.0.1:3000")
            })?;
        }
        if let Some(v) = &self.auth_mode {
            s.auth_mode = AuthMode::parse(v).map_err(|e| anyhow!(e))?;
        }
        if let Some(v) = &self.image_cache_control {
            s.image_cache_control = ImageCacheControl::parse(v).map_err(|e| anyhow!(e))?;
        }
        macro_rules! set {
            ($($field:ident => $target:ident),*) => { $(if let Some(v) = &self.$field { s.$target = v.clone(); })* };
        }
        set!(
            multipart_part_size_bytes => part_size, image_base_path => image_base_path,
            cors_allow_origin => cors_allow_origin,
            cross_origin_resource_policy => cross_origin_resource_policy,
            chunked_prefix => chunked_prefix, max_url_bytes => max_url_bytes,
            max_body_bytes => max_body_bytes, max_image_bytes => max_image_bytes,
            max_conversions => max_conversions, chunk_size => chunk_size,
            conversion_concurrency => conversion_concurrency,
            db_max_connections => db_max_connections,
            max_share_links => max_share_links, max_acl_users => max_acl_users
        );
        if let Some(v) = self.lease_ttl_seconds {
            s.lease_ttl = Duration::from_secs(v);
        }
        if let Some(path) = &self.lease_keys {
            s.lease_keys = Some(aero_access::LeaseKeys::load(std::path::Path::new(
                path.trim(),
            ))?);
        }
        s.cloudfront = aero_access::cloudfront::CloudFront::from_settings(&|name| {
            self.cloudfront_setting(name)
        })
        .map(|cf| cf.map(std::sync::Arc::new));
        if let Some(v) = self.upload_url_expiry_seconds {
            s.upload_url_expiry = Duration::from_secs(v);
        }
        if let Some(v) = self.job_lease_seconds {
            s.job_lease = Duration::from_secs(v);
        }
        if let Some(v) = self.job_poll_interval_ms {
            s.job_poll_interval = Duration::from_millis(v.max(1));
        }
        s.validate().map_err(|e| anyhow!(e))?;
        Ok(s)
    }
}

impl GatewayArgs {
    /// The SPEC 4.8 CloudFront value `name` (and `IMAGE_BASE_PATH`), as CloudFront's
    /// settings reader asks for it.
    fn cloudfront_setting(&self, name: &str) -> Option<String> {
        match name {
            "CLOUDFRONT_DOMAIN" => self.cloudfront_domain.clone(),
            "CLOUDFRONT_KEY_PAIR_ID" => self.cloudfront_key_pair_id.clone(),
            "CLOUDFRONT_PRIVATE_KEY_PEM" => self.cloudfront_private_key_pem.clone(),
            "CLOUDFRONT_AUTH_MODE" => self.cloudfront_auth_mode.clone(),
            "CLOUDFRONT_COOKIE_DOMAIN" => self.cloudfront_cookie_domain.clone(),
            "CLOUDFRONT_COOKIE_SAMESITE" => self.cloudfront_cookie_samesite.clone(),
            "CLOUDFRONT_COOKIE_PARTITIONED" => self.cloudfront_cookie_partitioned.clone(),
            "CLOUDFRONT_SIGNED_TTL_SECONDS" => self.cloudfront_signed_ttl_seconds.clone(),
            "CLOUDFRONT_SIGNING_ALGORITHM" => self.cloudfront_signing_algorithm.clone(),
            "IMAGE_BASE_PATH" => self.image_base_path.clone(),
            _ => None,
        }
    }
}

fn empty_s3() -> S3Settings {
    S3Settings {
        bucket: String::new(),
        region: String::new(),
        endpoint: None,
        force_path_style: false,
        access_key_id: String::new(),
        secret_access_key: String::new(),
        session_token: None,
    }
}

/// `aero-host gateway [token …]`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct GatewayCommand {
    /// The gateway's settings.
    #[command(flatten)]
    pub args: GatewayArgs,
    /// Manage API tokens instead of serving.
    #[command(subcommand)]
    pub action: Option<GatewayAction>,
}

/// What `aero-host gateway` does besides serving.
#[derive(Debug, clap::Subcommand)]
pub enum GatewayAction {
    /// API tokens of `AUTH_MODE=token`.
    #[command(subcommand)]
    Token(TokenAction),
}

/// `aero-host gateway token …`.
#[derive(Debug, clap::Subcommand)]
pub enum TokenAction {
    /// Create a token for a user; it is printed once and stored only as a sha256.
    Create {
        /// The user the token authenticates.
        #[arg(long)]
        user: String,
        /// sqlite:PATH or postgres://… [env DATABASE_URL; default sqlite:aero-gateway.sqlite].
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database: Option<String>,
    },
    /// Revoke a user's tokens (all of them, or the one named by --token-id).
    Revoke {
        /// The user whose tokens are revoked.
        #[arg(long)]
        user: String,
        /// Revoke only this token (the part between `agw_` and the next `_`).
        #[arg(long)]
        token_id: Option<String>,
        /// sqlite:PATH or postgres://… [env DATABASE_URL; default sqlite:aero-gateway.sqlite].
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database: Option<String>,
    },
}
