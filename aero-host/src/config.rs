//! Configuration layering, in one place: a flag beats its environment variable (clap `env`
//! attributes), which beats the config file, which beats the default (the clap attributes of
//! [`crate::cli`]). The config file of `aero-host run` is read as typed TOML: every error names
//! the file, and the key and line the toml crate's spans point at.

use crate::cli::{CatalogArgs, Checksum, ComputeVersion, PublishArgs, PullArgs, S3Flags};
use aero_plugin_host::storage::StorageSpec;
use aero_plugin_host::PluginSet;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Environment variables `AERO_BACKEND_<KEY>` override `[storage]` keys (`AERO_BACKEND_TYPE`,
/// `AERO_BACKEND_ROOT`, `AERO_BACKEND_BUCKET`, `AERO_BACKEND_ENDPOINT`, ...).
pub const STORAGE_ENV_PREFIX: &str = "AERO_BACKEND_";

/// The storage a command uses: `--storage` (or `AERO_STORAGE`), else the S3 shorthands, else
/// the config's `[storage]`.
pub fn pick_storage(
    cli_storage: Option<&str>,
    s3: Option<StorageSpec>,
    configured: Option<StorageSpec>,
) -> Result<StorageSpec> {
    match (cli_storage, s3) {
        (Some(_), Some(_)) => bail!("--storage and --bucket are mutually exclusive"),
        (Some(uri), None) => Ok(StorageSpec::parse_uri(uri)?),
        (None, Some(spec)) => Ok(spec),
        (None, None) => configured.ok_or_else(|| {
            anyhow!("no storage given: pass --storage fs:PATH|memory:|s3://BUCKET..., or --bucket, or a [storage] table in the config")
        }),
    }
}

impl S3Flags {
    /// The `s3` storage the shorthands select, or `None` without `--bucket`.
    pub fn spec(&self) -> Result<Option<StorageSpec>> {
        let Some(bucket) = &self.bucket else {
            if self.endpoint.is_some() || self.force_path_style || self.region.is_some() {
                bail!("--endpoint, --force-path-style and --region need --bucket");
            }
            return Ok(None);
        };
        let mut settings = BTreeMap::new();
        settings.insert("bucket".to_string(), bucket.clone());
        if let Some(e) = &self.endpoint {
            settings.insert("endpoint".to_string(), e.clone());
        }
        if self.force_path_style {
            settings.insert("force_path_style".to_string(), "true".to_string());
        }
        if let Some(r) = &self.region {
            settings.insert("region".to_string(), r.clone());
        }
        Ok(Some(StorageSpec {
            kind: "s3".to_string(),
            settings,
        }))
    }
}

/// The config of `aero-host run`, resolved: paths made absolute, environment applied.
#[derive(Debug)]
pub struct Config {
    /// `[storage]`: `type` plus the backend's settings, with where each was set.
    pub storage: BTreeMap<String, Spanned<toml::Value>>,
    /// `[plugins]`.
    pub plugins: PluginsConfig,
    /// `[[publish]]` jobs.
    pub publish: Vec<PublishJob>,
    /// `[serve]`: serve the storage over HTTP after the jobs.
    pub serve: Option<crate::serve_args::ServeArgs>,
    /// `[gateway]`: run the upload gateway after the jobs (beside `[serve]` when both are set).
    pub gateway: Option<crate::gateway_args::GatewayArgs>,
    /// `[[pull]]` jobs, run after the publishes and verifications.
    pub pull: Vec<PullArgs>,
    /// `[catalog]`: where `[[pull]]` jobs find catalog images.
    pub catalog: CatalogConfig,
    /// The file it was read from and its text, for messages.
    source: (PathBuf, String),
}

/// `[plugins]`: dynamic plugin libraries.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Library files to load.
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    /// A directory whose `*.so` files are loaded.
    pub dir: Option<PathBuf>,
    /// Plugin names whose dynamic library wins over a built-in of the same name.
    #[serde(default)]
    pub prefer_library: Vec<String>,
}

/// `[catalog]`: the registry, its fallbacks, the local copy and when it is synced again.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// The registry (URL or path).
    pub registry: Option<String>,
    /// Registries tried in order when `registry` cannot be read.
    #[serde(default)]
    pub fallback_registries: Vec<String>,
    /// Where the local copy is kept (default: the user's cache directory).
    pub dir: Option<PathBuf>,
    /// Sync the local copy before pulling when it is older than `max_age_hours`.
    #[serde(default = "yes")]
    pub auto_sync: bool,
    /// Age after which the local copy is synced again.
    #[serde(default = "day")]
    pub max_age_hours: u64,
    /// Largest total size of the files an archive may expand to (default: `pull`'s).
    pub max_archive_bytes: Option<u64>,
    /// Most entries an archive may hold (default: `pull`'s).
    pub max_archive_entries: Option<u64>,
}

fn yes() -> bool {
    true
}

fn day() -> u64 {
    24
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            registry: None,
            fallback_registries: Vec::new(),
            dir: None,
            auto_sync: yes(),
            max_age_hours: day(),
            max_archive_bytes: None,
            max_archive_entries: None,
        }
    }
}

/// A `[[pull]]` entry: a key per flag of `pull` (unset keys take the flag's default).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PullEntry {
    source: String,
    out: Option<PathBuf>,
    to: Option<String>,
    concurrency: Option<usize>,
    headers: Option<Vec<String>>,
    cache_dir: Option<PathBuf>,
    cache_max_bytes: Option<u64>,
    no_cache: Option<bool>,
    retries: Option<usize>,
    image_id: Option<String>,
    image_version: Option<String>,
    max_chunks: Option<u64>,
    registry: Option<String>,
    arch: Option<String>,
    max_archive_bytes: Option<u64>,
    max_archive_entries: Option<u64>,
}

impl PullEntry {
    /// The job: the entry's keys over `[catalog]`'s archive limits over the flags' defaults,
    /// paths against `base`.
    fn into_args(self, base: &Path, catalog: &CatalogConfig) -> PullArgs {
        let d = PullArgs::defaults();
        let source = if self.source.contains("://") || !base.join(&self.source).is_file() {
            self.source
        } else {
            base.join(&self.source).display().to_string()
        };
        PullArgs {
            source,
            catalog: CatalogArgs {
                registry: self.registry.or(d.catalog.registry),
                catalog_dir: d.catalog.catalog_dir,
            },
            arch: self.arch.or(d.arch),
            out: self.out.map(|o| base.join(o)),
            to: self.to.unwrap_or(d.to),
            concurrency: self.concurrency.unwrap_or(d.concurrency),
            headers: self.headers.unwrap_or(d.headers),
            cache_dir: self.cache_dir.map(|c| base.join(c)).or(d.cache_dir),
            cache_max_bytes: self.cache_max_bytes.unwrap_or(d.cache_max_bytes),
            no_cache: self.no_cache.unwrap_or(d.no_cache),
            dry_run: false,
            json: false,
            retries: self.retries.unwrap_or(d.retries),
            image_id: self.image_id.or(d.image_id),
            image_version: self.image_version.or(d.image_version),
            max_chunks: self.max_chunks.unwrap_or(d.max_chunks),
            max_archive_bytes: self
                .max_archive_bytes
                .or(catalog.max_archive_bytes)
                .unwrap_or(d.max_archive_bytes),
            max_archive_entries: self
                .max_archive_entries
                .or(catalog.max_archive_entries)
                .unwrap_or(d.max_archive_entries),
            s3: d.s3,
        }
    }
}

/// One `[[publish]]` job: the publish options, plus what to verify afterwards.
#[derive(Debug)]
pub struct PublishJob {
    /// The publish options.
    pub args: PublishArgs,
    /// Verify after publishing (default true).
    pub verify: bool,
    /// Verify only this many random chunks plus the last one.
    pub verify_chunk_sample: Option<u64>,
}

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    storage: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    plugins: PluginsConfig,
    #[serde(default)]
    publish: Vec<Spanned<PublishEntry>>,
    #[serde(default)]
    serve: Option<crate::serve_args::ServeArgs>,
    #[serde(default)]
    gateway: Option<crate::gateway_args::GatewayArgs>,
    #[serde(default)]
    pull: Vec<PullEntry>,
    #[serde(default)]
    catalog: CatalogConfig,
}

/// A `[[publish]]` entry as written: a key per flag of `publish` (unset keys take the flag's
/// default), plus `verify` and `verify_chunk_sample`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishEntry {
    file: Option<PathBuf>,
    format: Option<String>,
    allow_backing: Option<bool>,
    backing_roots: Option<Vec<PathBuf>>,
    prefix: Option<String>,
    image_id: Option<String>,
    image_version: Option<String>,
    compute_version: Option<ComputeVersion>,
    publish_latest: Option<bool>,
    cache_control_chunks: Option<String>,
    cache_control_manifest: Option<String>,
    cache_control_latest: Option<String>,
    chunk_size: Option<u64>,
    checksum: Option<Checksum>,
    concurrency: Option<usize>,
    retries: Option<usize>,
    no_meta: Option<bool>,
    base: Option<String>,
    #[serde(default, deserialize_with = "boolean")]
    verify: Option<bool>,
    #[serde(default, deserialize_with = "count")]
    verify_chunk_sample: Option<u64>,
}

fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    bool::deserialize(d)
        .map(Some)
        .map_err(|_| serde::de::Error::custom("must be true or false"))
}

fn count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    u64::deserialize(d)
        .map(Some)
        .map_err(|_| serde::de::Error::custom("must be a non-negative integer"))
}

impl PublishEntry {
    /// The job: the entry's keys over the flags' defaults.
    fn into_job(self) -> PublishJob {
        let d = PublishArgs::defaults();
        PublishJob {
            args: PublishArgs {
                file: self.file.unwrap_or(d.file),
                format: self.format.unwrap_or(d.format),
                allow_backing: self.allow_backing.unwrap_or(d.allow_backing),
                backing_roots: self.backing_roots.unwrap_or(d.backing_roots),
                prefix: self.prefix.unwrap_or(d.prefix),
                image_id: self.image_id.or(d.image_id),
                image_version: self.image_version.or(d.image_version),
                compute_version: self.compute_version.unwrap_or(d.compute_version),
                publish_latest: self.publish_latest.unwrap_or(d.publish_latest),
                cache_control_chunks: self.cache_control_chunks.unwrap_or(d.cache_control_chunks),
                cache_control_manifest: self
                    .cache_control_manifest
                    .unwrap_or(d.cache_control_manifest),
                cache_control_latest: self.cache_control_latest.unwrap_or(d.cache_control_latest),
                chunk_size: self.chunk_size.unwrap_or(d.chunk_size),
                checksum: self.checksum.unwrap_or(d.checksum),
                concurrency: self.concurrency.unwrap_or(d.concurrency),
                retries: self.retries.unwrap_or(d.retries),
                no_meta: self.no_meta.unwrap_or(d.no_meta),
                base: self.base.unwrap_or(d.base),
            },
            verify: self.verify.unwrap_or(true),
            verify_chunk_sample: self.verify_chunk_sample,
        }
    }
}

impl Config {
    /// Reads `path`, resolving relative paths against its directory and applying the
    /// process's environment overrides.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Self::parse(path, text, std::env::vars())
    }

    /// The config in `text`, read from `path`: relative paths are resolved against its
    /// directory, and the `AERO_BACKEND_<KEY>` variables among `vars` override `[storage]`.
    pub fn parse(
        path: &Path,
        text: String,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<Self> {
        let file: ConfigFile = toml::from_str(&text).map_err(|e| config_error(path, &text, &e))?;
        let base = path.parent().unwrap_or(Path::new(""));
        let mut publish = Vec::with_capacity(file.publish.len());
        for (n, entry) in file.publish.into_iter().enumerate() {
            let line = line_of(&text, entry.span().start);
            let mut job = entry.into_inner().into_job();
            if job.args.file.as_os_str().is_empty() {
                bail!("{}: a [[publish]] entry has no 'file'", path.display());
            }
            job.args.validate().with_context(|| {
                format!(
                    "{}: [[publish]] entry {} at line {line}",
                    path.display(),
                    n + 1
                )
            })?;
            job.args.file = base.join(&job.args.file);
            for root in &mut job.args.backing_roots {
                *root = base.join(&*root);
            }
            publish.push(job);
        }
        let mut plugins = file.plugins;
        for p in &mut plugins.paths {
            *p = base.join(&*p);
        }
        if let Some(dir) = &mut plugins.dir {
            *dir = base.join(&*dir);
        }
        let mut serve = file.serve;
        if let Some(keys) = serve.as_mut().and_then(|s| s.lease_keys.as_mut()) {
            *keys = base.join(&*keys).to_string_lossy().to_string();
        }
        let mut catalog = file.catalog;
        catalog.dir = catalog.dir.map(|d| base.join(d));
        if let Some(r) = catalog.registry.as_mut().filter(|r| !r.contains("://")) {
            *r = base.join(&*r).display().to_string();
        }
        for r in catalog
            .fallback_registries
            .iter_mut()
            .filter(|r| !r.contains("://"))
        {
            *r = base.join(&*r).display().to_string();
        }
        let mut pull: Vec<PullArgs> = file
            .pull
            .into_iter()
            .map(|e| e.into_args(base, &catalog))
            .collect();
        for job in &mut pull {
            job.catalog.catalog_dir = job.catalog.catalog_dir.take().or(catalog.dir.clone());
        }
        let mut config = Config {
            storage: file.storage,
            plugins,
            publish,
            serve,
            gateway: file.gateway.map(|mut g| {
                for path in [&mut g.lease_keys, &mut g.cloudfront_private_key_pem]
                    .into_iter()
                    .flatten()
                    .filter(|p| !p.contains("-----BEGIN"))
                {
                    *path = base.join(&*path).to_string_lossy().to_string();
                }
                g
            }),
            pull,
            catalog,
            source: (path.to_path_buf(), text),
        };
        config.apply_env(vars);
        if let Some(kind) = config.storage.get("type") {
            if kind.get_ref().as_str() == Some("fs") {
                if let Some(root) = config.storage.get_mut("root") {
                    if let Some(r) = root.get_ref().as_str() {
                        let joined = base.join(r).to_string_lossy().to_string();
                        *root = Spanned::new(root.span(), toml::Value::String(joined));
                    }
                }
            }
        }
        Ok(config)
    }

    /// Applies the `AERO_BACKEND_<KEY>` variables among `vars` to `[storage]`.
    fn apply_env(&mut self, vars: impl Iterator<Item = (String, String)>) {
        for (name, value) in vars {
            if let Some(key) = name.strip_prefix(STORAGE_ENV_PREFIX) {
                if key.is_empty() {
                    continue;
                }
                self.storage.insert(
                    key.to_ascii_lowercase(),
                    Spanned::new(0..0, toml::Value::String(value)),
                );
            }
        }
    }

    /// The `[storage]` table as a storage selection, or `None` when absent.
    /// Unknown types and keys are errors naming the file and the line.
    pub fn storage_spec(&self, plugins: &PluginSet) -> Result<Option<StorageSpec>> {
        let (path, text) = &self.source;
        let place = |value: &Spanned<toml::Value>| {
            if value.span().end == 0 {
                format!("{} (from the environment)", path.display())
            } else {
                format!(
                    "{}: line {}",
                    path.display(),
                    line_of(text, value.span().start)
                )
            }
        };
        if self.storage.is_empty() {
            return Ok(None);
        }
        let kind = self
            .storage
            .get("type")
            .and_then(|v| v.get_ref().as_str().map(str::to_string))
            .ok_or_else(|| {
                anyhow!(
                    "{}: [storage] needs a string 'type' (fs, s3, memory)",
                    path.display()
                )
            })?;
        let backend = plugins
            .backend(&kind)
            .with_context(|| place(&self.storage["type"]))?;
        let mut settings = BTreeMap::new();
        for (key, value) in &self.storage {
            if key == "type" {
                continue;
            }
            if !backend.keys().contains(&key.as_str()) {
                bail!(
                    "{}: unknown [storage] key '{key}' for type '{kind}' (accepted: {})",
                    place(value),
                    backend.keys().join(", ")
                );
            }
            let text = match value.get_ref() {
                toml::Value::String(s) => s.clone(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Integer(i) => i.to_string(),
                other => bail!(
                    "{}: line {}: [storage] key '{key}' must be a string, boolean or integer, not {}",
                    path.display(),
                    line_of(text, value.span().start),
                    other.type_str()
                ),
            };
            settings.insert(key.clone(), text);
        }
        Ok(Some(StorageSpec { kind, settings }))
    }
}

/// The keys of every `[[publish]]` entry with their spans, to name the key behind an error.
#[derive(Deserialize)]
struct PublishKeys {
    #[serde(default)]
    publish: Vec<BTreeMap<Spanned<String>, Spanned<serde::de::IgnoredAny>>>,
}

/// A config parse error naming the file; inside a `[[publish]]` entry also the key and its
/// line, taken from the spans of the error and of the entry's keys and values.
fn config_error(path: &Path, text: &str, err: &toml::de::Error) -> anyhow::Error {
    let at = err.span().map(|s| s.start);
    let key = at.and_then(|at| {
        let keys: PublishKeys = toml::from_str(text).ok()?;
        keys.publish.into_iter().flatten().find_map(|(key, value)| {
            (key.span().contains(&at) || value.span().contains(&at)).then(|| key.into_inner())
        })
    });
    match (key, at) {
        (Some(key), Some(at)) => anyhow!(
            "{}: line {}: [[publish]] key '{key}': {}",
            path.display(),
            line_of(text, at),
            err.message().trim()
        ),
        _ => anyhow!("{}: {err}", path.display()),
    }
}

/// The line (1-based) of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    // The built-in backends register themselves when linked, as in the binary.
    use backend_fs as _;
    use backend_memory as _;
    use backend_s3 as _;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn unknown_keys_name_the_file_key_and_line() {
        let (_d, path) = write("[storage]\ntype = \"fs\"\nroot = \"x\"\n\n[[publish]]\nfile = \"a.raw\"\nchunk_sise = 4096\n");
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("c.toml"), "{err}");
        assert!(err.contains("chunk_sise"), "{err}");
        assert!(err.contains("line 7"), "{err}");
    }

    #[test]
    fn bad_values_are_errors() {
        let (_d, path) = write("[[publish]]\nfile = \"a.raw\"\nchunk_size = \"big\"\n");
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("line 3") && err.contains("chunk_size"),
            "{err}"
        );
        let (_d, path) = write("[[publish]]\nfile = \"a.raw\"\nchecksum = \"md5\"\n");
        assert!(Config::load(&path).unwrap_err().to_string().contains("md5"));
    }

    #[test]
    fn paths_are_relative_to_the_config_and_env_overrides_storage() {
        let (dir, path) = write("[storage]\ntype = \"fs\"\nroot = \"out\"\n[[publish]]\nfile = \"a.raw\"\nprefix = \"images/\"\n");
        let mut config = Config::load(&path).unwrap();
        assert_eq!(config.publish[0].args.file, dir.path().join("a.raw"));
        assert!(config.publish[0].verify);
        let spec = config
            .storage_spec(&PluginSet::builtin().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(
            spec.settings["root"],
            dir.path().join("out").to_string_lossy()
        );
        let catalogue = PluginSet::builtin().unwrap();
        let env = |k: &str, v: &str| vec![(k.to_string(), v.to_string())].into_iter();
        config.apply_env(env("AERO_BACKEND_ROOT", "/srv/other"));
        let spec = config.storage_spec(&catalogue).unwrap().unwrap();
        assert_eq!(spec.settings["root"], "/srv/other");
        config.apply_env(env("AERO_BACKEND_BUCKET", "b"));
        let err = config.storage_spec(&catalogue).unwrap_err().to_string();
        assert!(
            err.contains("from the environment") && err.contains("'bucket'"),
            "{err}"
        );
    }

    #[test]
    fn unknown_storage_keys_name_the_line() {
        let (_d, path) = write("[storage]\ntype = \"fs\"\nroot = \"out\"\nbukket = \"x\"\n");
        let config = Config::load(&path).unwrap();
        let err = config
            .storage_spec(&PluginSet::builtin().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("c.toml: line 4") && err.contains("'bukket'"),
            "{err}"
        );
        let (_d, path) = write("[storage]\ntype = \"ftp\"\n");
        let config = Config::load(&path).unwrap();
        let err = format!(
            "{:#}",
            config
                .storage_spec(&PluginSet::builtin().unwrap())
                .unwrap_err()
        );
        assert!(
            err.contains("line 2") && err.contains("unknown storage type 'ftp'"),
            "{err}"
        );
    }

    #[test]
    fn a_comment_naming_the_table_does_not_move_the_line() {
        let (_d, path) = write(
            "# Jobs go in [[publish]] tables, e.g.\n# [[publish]]\n# file = \"x.raw\"\n\n[[publish]]\nfile = \"a.raw\"\nchunk_sise = 4096\n",
        );
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("c.toml: line 7: [[publish]] key 'chunk_sise'"),
            "{err}"
        );
        let (_d, path) = write(
            "# a [[publish]] comment\n[[publish]]\nfile = \"a.raw\"\n# [[publish]]\n\n[[publish]]\nfile = \"b.raw\"\nverify = \"yes\"\n",
        );
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("c.toml: line 8: [[publish]] key 'verify': must be true or false"),
            "{err}"
        );
    }

    #[test]
    fn invalid_options_name_the_entry_and_its_line() {
        let (_d, path) = write(
            "# [[publish]]\n[[publish]]\nfile = \"a.raw\"\n\n[[publish]]\nfile = \"b.raw\"\nchunk_size = 1000\n",
        );
        let err = format!("{:#}", Config::load(&path).unwrap_err());
        assert!(
            err.contains("c.toml: [[publish]] entry 2 at line 5"),
            "{err}"
        );
    }

    #[test]
    fn unset_keys_take_the_flags_defaults() {
        let (_d, path) = write("[[publish]]\nfile = \"a.raw\"\nverify_chunk_sample = 3\n");
        let config = Config::load(&path).unwrap();
        let job = &config.publish[0];
        let defaults = PublishArgs::defaults();
        assert_eq!(job.args.chunk_size, defaults.chunk_size);
        assert_eq!(job.args.cache_control_chunks, defaults.cache_control_chunks);
        assert_eq!(job.args.checksum, defaults.checksum);
        assert_eq!((job.verify, job.verify_chunk_sample), (true, Some(3)));
    }
}
