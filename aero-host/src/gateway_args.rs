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
            db_max_connections
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
            db_max_connections => db_max_connections
        );
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
