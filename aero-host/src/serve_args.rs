//! `aero-host serve` options: CLI flags, `[serve]` config keys and `AERO_STORAGE_*` environment
//! fallbacks (SPEC 3.2), resolved into `aero_serve::Settings` (whose `Default` holds the
//! defaults).

use aero_serve::{normalize_origin, CorsMode, Settings};
use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use std::time::Duration;

/// Every serve option; each is a CLI flag and a `[serve]` key. Unset options fall back to the
/// environment, then to the default.
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeArgs {
    /// Address to listen on [env AERO_STORAGE_LISTEN_ADDR; default 0.0.0.0:8080].
    #[arg(long)]
    pub listen_addr: Option<String>,
    /// Allowed CORS origin (repeatable or comma list; `*` = any) [env AERO_STORAGE_CORS_ORIGIN].
    #[arg(long = "cors-origin", value_delimiter = ',')]
    #[serde(alias = "cors_origins")]
    pub cors_origin: Vec<String>,
    /// same-origin, same-site or cross-origin [env AERO_STORAGE_CROSS_ORIGIN_RESOURCE_POLICY; default same-site].
    #[arg(long)]
    pub cross_origin_resource_policy: Option<String>,
    /// Key prefix under which published images live [env AERO_STORAGE_IMAGES_PREFIX; default images/].
    #[arg(long, alias = "images-root")]
    #[serde(alias = "images_root")]
    pub images_prefix: Option<String>,
    /// Key of the optional catalog of raw images [env AERO_STORAGE_CATALOG_KEY; default manifest.json].
    #[arg(long)]
    pub catalog_key: Option<String>,
    /// Fail when the catalog is missing [env AERO_STORAGE_REQUIRE_MANIFEST].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub require_manifest: Option<bool>,
    /// Log filter of the server [env AERO_STORAGE_LOG_LEVEL; default info]; RUST_LOG wins.
    #[arg(skip)]
    pub log_level: Option<String>,
    /// Log lines as text or json (JSON lines) [env AERO_STORAGE_LOG_FORMAT; default text].
    #[arg(long)]
    pub log_format: Option<String>,
    /// Bytes/chunked requests served at once; 0 = unlimited [env AERO_STORAGE_MAX_CONCURRENT_BYTES_REQUESTS; default 64].
    #[arg(long)]
    pub max_concurrent_bytes_requests: Option<usize>,
    /// Largest single range in bytes [env AERO_STORAGE_MAX_RANGE_BYTES; default 8388608].
    #[arg(long)]
    pub max_range_bytes: Option<u64>,
    /// Largest chunk object served [env AERO_STORAGE_MAX_CHUNK_BYTES; default 67108864].
    #[arg(long)]
    pub max_chunk_bytes: Option<u64>,
    /// max-age of public bytes responses [env AERO_STORAGE_PUBLIC_CACHE_MAX_AGE_SECS; default 3600].
    #[arg(long)]
    pub public_cache_max_age_secs: Option<u64>,
    /// Access-Control-Max-Age of preflights [env AERO_STORAGE_CORS_PREFLIGHT_MAX_AGE_SECS; default 86400].
    #[arg(long)]
    pub cors_preflight_max_age_secs: Option<u64>,
    /// Serve the bytes endpoint to Range GETs only [env AERO_STORAGE_REQUIRE_RANGE].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub require_range: Option<bool>,
    /// Do not mount /metrics [env AERO_STORAGE_DISABLE_METRICS].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub disable_metrics: Option<bool>,
    /// Bearer token /metrics requires [env AERO_STORAGE_METRICS_AUTH_TOKEN].
    #[arg(long)]
    pub metrics_auth_token: Option<String>,
    /// How long parsed latest.json pointers, manifests, the catalog and stats are reused, in
    /// milliseconds [env AERO_STORAGE_CACHE_TTL_MS; default 2000].
    #[arg(long)]
    pub cache_ttl_ms: Option<u64>,
    /// Bytes of recently served ranges and chunks kept in memory, 0 = none
    /// [env AERO_STORAGE_CACHE_BYTES; default 268435456].
    #[arg(long)]
    pub cache_bytes: Option<u64>,
    /// Files kept open for positional reads on an fs storage, 0 = open per read
    /// [env AERO_STORAGE_OPEN_FILES; default 256].
    #[arg(long)]
    pub open_files: Option<usize>,
    /// Seconds in-flight responses get to finish after SIGINT/SIGTERM [env AERO_STORAGE_SHUTDOWN_GRACE_SECS; default 30].
    #[arg(long)]
    pub shutdown_grace_secs: Option<u64>,
    /// Seconds a client may read nothing of a response before it is disconnected
    /// [env AERO_STORAGE_SEND_TIMEOUT_SECS; default 60].
    #[arg(long)]
    pub send_timeout_secs: Option<u64>,
    /// Seconds a connection may send nothing before its first request or between requests
    /// [env AERO_STORAGE_IDLE_TIMEOUT_SECS; default 20].
    #[arg(long)]
    pub idle_timeout_secs: Option<u64>,
    /// Open connections at once, more are closed at accept; 0 = unlimited
    /// [env AERO_STORAGE_MAX_CONNECTIONS; default 4096].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Open connections at once from one client address; 0 = unlimited
    /// [env AERO_STORAGE_MAX_CONNECTIONS_PER_IP; default 256].
    #[arg(long)]
    pub max_connections_per_ip: Option<usize>,
    /// Lease-key file (JSON: {"signing": KID, "keys": {KID: HEX SECRET}}); private and shared
    /// images then need a lease on every data request [env AERO_STORAGE_LEASE_KEYS].
    #[arg(long, value_name = "FILE")]
    pub lease_keys: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Parses the boolean words of SPEC 3.2.
pub fn parse_bool_word(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "t" | "yes" | "y" | "on" => Some(true),
        "0" | "false" | "f" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

struct Env<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    /// The first set, non-empty variable among `names`.
    fn first(&self, names: &[&str]) -> Option<(String, String)> {
        names.iter().find_map(|n| {
            (self.get)(n)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (n.to_string(), v))
        })
    }

    fn num<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>> {
        match self.first(&[name]) {
            None => Ok(None),
            Some((n, v)) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| anyhow!("{n}='{v}' is not a valid number")),
        }
    }

    fn boolean(&self, name: &str) -> Result<Option<bool>> {
        match self.first(&[name]) {
            None => Ok(None),
            Some((n, v)) => parse_bool_word(&v).map(Some).ok_or_else(|| {
                anyhow!("{n}='{v}' is not a boolean (true/false, 1/0, yes/no, on/off)")
            }),
        }
    }
}

/// The table of settings that are a flag or `[serve]` key, else one environment variable, else
/// the default already in `settings`: one row `field <- flag, "ENV_NAME", parser[, conversion];`
/// (`parser` is `num` or `boolean` of [`Env`]; the conversion applies to either source).
macro_rules! layered {
    ($args:ident, $env:ident, $settings:ident; $($field:ident <- $flag:ident, $name:literal, $parse:ident $(, $conv:path)?;)*) => {
        $(
            $settings.$field = match $args.$flag {
                Some(given) => layered!(@convert given $(, $conv)?),
                None => match $env.$parse($name)? {
                    Some(found) => layered!(@convert found $(, $conv)?),
                    None => $settings.$field,
                },
            };
        )*
    };
    (@convert $value:ident) => { $value };
    (@convert $value:ident, $conv:path) => { $conv($value) };
}

impl ServeArgs {
    /// Resolves the options with the process environment.
    pub fn resolve(&self) -> Result<Settings> {
        self.resolve_with(&|n| std::env::var(n).ok())
    }

    /// Resolves the options with `get` as the environment.
    pub fn resolve_with(&self, get: &dyn Fn(&str) -> Option<String>) -> Result<Settings> {
        let env = Env { get };
        let d = Settings::default();
        let listen_addr = match &self.listen_addr {
            Some(a) => a
                .trim()
                .parse()
                .map_err(|_| anyhow!("listen address '{a}' is not HOST:PORT"))?,
            None => {
                let mut addr = None;
                for name in [
                    "AERO_STORAGE_LISTEN_ADDR",
                    "AERO_BIND",
                    "AERO_STORAGE_SERVER_ADDR",
                    "AERO_STORAGE_SERVER_LISTEN_ADDR",
                ] {
                    if let Some((n, v)) = env.first(&[name]) {
                        match v.trim().parse() {
                            Ok(a) => {
                                addr = Some(a);
                                break;
                            }
                            Err(_) => tracing::warn!("{n}='{v}' is not HOST:PORT; ignored"),
                        }
                    }
                }
                addr.unwrap_or(d.listen_addr)
            }
        };
        let origins: Vec<String> = if self.cors_origin.is_empty() {
            env.first(&[
                "AERO_STORAGE_CORS_ORIGIN",
                "AERO_STORAGE_SERVER_CORS_ORIGIN",
            ])
            .map(|(_, v)| v.split(',').map(str::to_string).collect())
            .unwrap_or_default()
        } else {
            self.cors_origin.clone()
        };
        let origins: Vec<String> = origins
            .iter()
            .map(|o| o.trim())
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect();
        let cors = if origins.is_empty() || origins.iter().any(|o| o == "*") {
            CorsMode::Wildcard
        } else {
            CorsMode::Allowlist(origins.iter().map(|o| normalize_origin(o)).collect())
        };
        let corp = self
            .cross_origin_resource_policy
            .clone()
            .or_else(|| {
                env.first(&[
                    "AERO_STORAGE_CROSS_ORIGIN_RESOURCE_POLICY",
                    "AERO_STORAGE_CORP",
                    "AERO_STORAGE_SERVER_CROSS_ORIGIN_RESOURCE_POLICY",
                ])
                .map(|(_, v)| v)
            })
            .unwrap_or_else(|| d.corp.clone())
            .trim()
            .to_string();
        if !matches!(corp.as_str(), "same-origin" | "same-site" | "cross-origin") {
            bail!("cross-origin resource policy '{corp}' must be same-origin, same-site or cross-origin");
        }
        let images_prefix = self
            .images_prefix
            .clone()
            .or_else(|| {
                env.first(&["AERO_STORAGE_IMAGES_PREFIX", "AERO_STORAGE_IMAGE_ROOT"])
                    .map(|(_, v)| v)
            })
            .unwrap_or_else(|| d.images_prefix.clone());
        let images_prefix = aero_chunked::layout::normalize_prefix(images_prefix.trim());
        let catalog_key = self
            .catalog_key
            .clone()
            .or_else(|| env.first(&["AERO_STORAGE_CATALOG_KEY"]).map(|(_, v)| v))
            .unwrap_or_else(|| d.catalog_key.clone())
            .trim()
            .trim_start_matches('/')
            .to_string();
        if catalog_key.is_empty() || catalog_key.ends_with('/') {
            bail!("catalog key '{catalog_key}' must name an object");
        }
        let metrics_token = self
            .metrics_auth_token
            .clone()
            .or_else(|| {
                env.first(&["AERO_STORAGE_METRICS_AUTH_TOKEN"])
                    .map(|(_, v)| v)
            })
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let git_sha = env
            .first(&["AERO_STORAGE_SERVER_GIT_SHA", "GIT_SHA"])
            .map(|(_, v)| v)
            .unwrap_or(d.git_sha.clone());
        let mut s = Settings::default();
        s.listen_addr = listen_addr;
        s.cors = cors;
        s.corp = corp;
        s.images_prefix = images_prefix;
        s.catalog_key = catalog_key;
        layered!(self, env, s;
            require_manifest <- require_manifest, "AERO_STORAGE_REQUIRE_MANIFEST", boolean;
            max_concurrent <- max_concurrent_bytes_requests, "AERO_STORAGE_MAX_CONCURRENT_BYTES_REQUESTS", num;
            max_range_bytes <- max_range_bytes, "AERO_STORAGE_MAX_RANGE_BYTES", num;
            max_chunk_bytes <- max_chunk_bytes, "AERO_STORAGE_MAX_CHUNK_BYTES", num;
            public_max_age <- public_cache_max_age_secs, "AERO_STORAGE_PUBLIC_CACHE_MAX_AGE_SECS", num;
            preflight_max_age <- cors_preflight_max_age_secs, "AERO_STORAGE_CORS_PREFLIGHT_MAX_AGE_SECS", num;
            require_range <- require_range, "AERO_STORAGE_REQUIRE_RANGE", boolean;
            disable_metrics <- disable_metrics, "AERO_STORAGE_DISABLE_METRICS", boolean;
            cache_ttl <- cache_ttl_ms, "AERO_STORAGE_CACHE_TTL_MS", num, Duration::from_millis;
            cache_bytes <- cache_bytes, "AERO_STORAGE_CACHE_BYTES", num;
            open_files <- open_files, "AERO_STORAGE_OPEN_FILES", num;
            shutdown_grace <- shutdown_grace_secs, "AERO_STORAGE_SHUTDOWN_GRACE_SECS", num, Duration::from_secs;
            send_timeout <- send_timeout_secs, "AERO_STORAGE_SEND_TIMEOUT_SECS", num, Duration::from_secs;
            idle_timeout <- idle_timeout_secs, "AERO_STORAGE_IDLE_TIMEOUT_SECS", num, Duration::from_secs;
            max_connections <- max_connections, "AERO_STORAGE_MAX_CONNECTIONS", num;
            max_connections_per_ip <- max_connections_per_ip, "AERO_STORAGE_MAX_CONNECTIONS_PER_IP", num;
        );
        s.metrics_token = metrics_token;
        if s.send_timeout.is_zero() || s.idle_timeout.is_zero() {
            bail!("send and idle timeouts must be at least 1 second");
        }
        s.lease_keys = match self
            .lease_keys
            .clone()
            .or_else(|| env.first(&["AERO_STORAGE_LEASE_KEYS"]).map(|(_, v)| v))
        {
            Some(path) => Some(std::sync::Arc::new(aero_access::LeaseKeys::load(
                std::path::Path::new(path.trim()),
            )?)),
            None => None,
        };
        s.metrics_max_ids = env
            .num("AERO_IMAGE_METRICS_MAX_IDS")?
            .unwrap_or(d.metrics_max_ids);
        s.version = env
            .first(&["AERO_STORAGE_SERVER_VERSION"])
            .map(|(_, v)| v)
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());
        s.git_sha = git_sha;
        s.built_at = env
            .first(&["AERO_STORAGE_SERVER_BUILD_TIMESTAMP", "BUILD_TIMESTAMP"])
            .map(|(_, v)| v)
            .unwrap_or(d.built_at);
        Ok(s)
    }

    /// The log filter: `--log-level` given explicitly, else `[serve] log_level`, else
    /// `AERO_STORAGE_LOG_LEVEL`, else `info`.
    pub fn log_filter(&self) -> String {
        self.log_level
            .clone()
            .or_else(|| std::env::var("AERO_STORAGE_LOG_LEVEL").ok())
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| "info,opendal=error".into())
    }

    /// The log format: `--log-format`, else `[serve] log_format`, else
    /// `AERO_STORAGE_LOG_FORMAT`, else text.
    pub fn log_format(&self) -> Result<LogFormat> {
        self.log_format_with(&|n| std::env::var(n).ok())
    }

    fn log_format_with(&self, get: &dyn Fn(&str) -> Option<String>) -> Result<LogFormat> {
        let env = Env { get };
        let value = self
            .log_format
            .clone()
            .or_else(|| env.first(&["AERO_STORAGE_LOG_FORMAT"]).map(|(_, v)| v));
        match value.as_deref().map(str::trim) {
            None | Some("text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => bail!("log format '{other}' must be text or json"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_env_beat_defaults() {
        let env = |n: &str| match n {
            "AERO_STORAGE_MAX_RANGE_BYTES" => Some("100".to_string()),
            "AERO_BIND" => Some("127.0.0.1:9".to_string()),
            "AERO_STORAGE_LISTEN_ADDR" => Some("bogus".to_string()),
            "AERO_STORAGE_REQUIRE_RANGE" => Some("on".to_string()),
            "AERO_STORAGE_CORS_ORIGIN" => Some("https://A.example/, https://b.example".to_string()),
            _ => None,
        };
        let args = ServeArgs {
            max_range_bytes: None,
            max_chunk_bytes: Some(5),
            ..Default::default()
        };
        let s = args.resolve_with(&env).unwrap();
        assert_eq!(s.max_range_bytes, 100);
        assert_eq!(s.max_chunk_bytes, 5);
        assert_eq!(s.listen_addr.to_string(), "127.0.0.1:9");
        assert!(s.require_range);
        assert_eq!(
            s.cors,
            CorsMode::Allowlist(vec!["https://a.example".into(), "https://b.example".into()])
        );
        assert_eq!(s.images_prefix, "images/");
        assert_eq!(s.corp, "same-site");
        let bad = ServeArgs {
            cross_origin_resource_policy: Some("nope".into()),
            ..Default::default()
        };
        assert!(bad.resolve_with(&|_| None).is_err());
        let s = ServeArgs::default().resolve_with(&|_| None).unwrap();
        assert_eq!(s.max_chunk_bytes, 64 * 1024 * 1024);
        assert_eq!(s.cors, CorsMode::Wildcard);
    }

    #[test]
    fn limits_and_log_format_resolve() {
        let env = |n: &str| match n {
            "AERO_STORAGE_SEND_TIMEOUT_SECS" => Some("7".to_string()),
            "AERO_STORAGE_MAX_CONNECTIONS_PER_IP" => Some("3".to_string()),
            "AERO_STORAGE_LOG_FORMAT" => Some("json".to_string()),
            _ => None,
        };
        let args = ServeArgs {
            idle_timeout_secs: Some(5),
            max_connections: Some(10),
            ..Default::default()
        };
        let s = args.resolve_with(&env).unwrap();
        assert_eq!(s.send_timeout, Duration::from_secs(7));
        assert_eq!(s.idle_timeout, Duration::from_secs(5));
        assert_eq!((s.max_connections, s.max_connections_per_ip), (10, 3));
        assert_eq!(args.log_format_with(&env).unwrap(), LogFormat::Json);
        assert_eq!(
            ServeArgs::default().log_format_with(&|_| None).unwrap(),
            LogFormat::Text
        );
        let bad = ServeArgs {
            log_format: Some("xml".into()),
            ..Default::default()
        };
        assert!(bad.log_format_with(&|_| None).is_err());
        let zero = ServeArgs {
            send_timeout_secs: Some(0),
            ..Default::default()
        };
        assert!(zero.resolve_with(&|_| None).is_err());
    }

    #[test]
    fn lease_keys_load_from_the_flag_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let secret = "ab".repeat(32);
        std::fs::write(
            &path,
            format!(r#"{{"signing":"k1","keys":{{"k1":"{secret}"}}}}"#),
        )
        .unwrap();
        let file = path.display().to_string();
        let env = |n: &str| (n == "AERO_STORAGE_LEASE_KEYS").then(|| file.clone());
        let s = ServeArgs::default().resolve_with(&env).unwrap();
        assert_eq!(s.lease_keys.unwrap().signing_kid(), "k1");
        assert!(ServeArgs::default()
            .resolve_with(&|_| None)
            .unwrap()
            .lease_keys
            .is_none());
        std::fs::write(&path, r#"{"signing":"k2","keys":{"k1":"ab"}}"#).unwrap();
        let bad = ServeArgs {
            lease_keys: Some(file.clone()),
            ..Default::default()
        };
        let err = format!("{:#}", bad.resolve_with(&|_| None).unwrap_err());
        assert!(err.contains(&file) && err.contains("1 bytes"), "{err}");
    }
}
