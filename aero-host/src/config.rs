//! The TOML config of `aero-host run`: storage, plugins and jobs, with environment overrides.

use crate::publish_args::PublishArgs;
use aero_plugin_host::storage::StorageSpec;
use aero_plugin_host::PluginSet;
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Environment variables `AERO_BACKEND_<KEY>` override `[storage]` keys (`AERO_BACKEND_TYPE`,
/// `AERO_BACKEND_ROOT`, `AERO_BACKEND_BUCKET`, `AERO_BACKEND_ENDPOINT`, ...).
pub const STORAGE_ENV_PREFIX: &str = "AERO_BACKEND_";

/// The whole config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[storage]`: `type` plus the backend's settings.
    #[serde(default)]
    pub storage: BTreeMap<String, toml::Spanned<toml::Value>>,
    /// `[plugins]`.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// `[[publish]]` jobs.
    #[serde(default)]
    pub publish: Vec<PublishJob>,
    /// `[serve]`: serve the storage over HTTP after the jobs.
    #[serde(default)]
    pub serve: Option<crate::serve_args::ServeArgs>,
    /// The file it was read from and its text, for messages.
    #[serde(skip)]
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

/// One `[[publish]]` entry: every publish option, plus what to verify afterwards.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishJob {
    /// The publish options.
    #[serde(flatten)]
    pub args: PublishArgs,
    /// Verify after publishing (default true).
    #[serde(default = "yes")]
    pub verify: bool,
    /// Verify only this many random chunks plus the last one.
    pub verify_chunk_sample: Option<u64>,
}

fn yes() -> bool {
    true
}

impl Config {
    /// Reads `path`, resolving relative paths against its directory and applying
    /// environment overrides.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let mut config: Config =
            toml::from_str(&text).map_err(|e| config_error(path, &text, &e))?;
        let base = path.parent().unwrap_or(Path::new(""));
        for (n, job) in config.publish.iter_mut().enumerate() {
            if job.args.file.as_os_str().is_empty() {
                bail!("{}: a [[publish]] entry has no 'file'", path.display());
            }
            let at = || {
                let line = publish_header(&text, n).map(|o| line_of(&text, o));
                let line = line.map(|l| format!(" at line {l}")).unwrap_or_default();
                format!("{}: [[publish]] entry {}{line}", path.display(), n + 1)
            };
            job.args.validate().with_context(at)?;
            job.args.file = base.join(&job.args.file);
            for root in &mut job.args.backing_roots {
                *root = base.join(&*root);
            }
        }
        for p in &mut config.plugins.paths {
            *p = base.join(&*p);
        }
        if let Some(dir) = &mut config.plugins.dir {
            *dir = base.join(&*dir);
        }
        config.apply_env(std::env::vars())?;
        config.source = (path.to_path_buf(), text);
        if let Some(kind) = config.storage.get("type") {
            if kind.get_ref().as_str() == Some("fs") {
                if let Some(root) = config.storage.get_mut("root") {
                    if let Some(r) = root.get_ref().as_str() {
                        let joined = base.join(r).to_string_lossy().to_string();
                        *root = toml::Spanned::new(root.span(), toml::Value::String(joined));
                    }
                }
            }
        }
        Ok(config)
    }

    fn apply_env(&mut self, vars: impl Iterator<Item = (String, String)>) -> Result<()> {
        for (name, value) in vars {
            if let Some(key) = name.strip_prefix(STORAGE_ENV_PREFIX) {
                if key.is_empty() {
                    continue;
                }
                self.storage.insert(
                    key.to_ascii_lowercase(),
                    toml::Spanned::new(0..0, toml::Value::String(value)),
                );
            }
        }
        Ok(())
    }

    /// The `[storage]` table as a storage selection, or `None` when absent.
    /// Unknown types and keys are errors naming the file and the line.
    pub fn storage_spec(&self, catalogue: &PluginSet) -> Result<Option<StorageSpec>> {
        let (path, text) = &self.source;
        let place = |value: &toml::Spanned<toml::Value>| {
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
        let backend = catalogue
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

/// A config parse error naming the file and, for `[[publish]]` entries (whose keys serde
/// only sees through `flatten`, which loses their positions), the offending key and its line.
fn config_error(path: &Path, text: &str, err: &toml::de::Error) -> anyhow::Error {
    match locate_publish_error(text, err) {
        Some((key, line, message)) => anyhow!(
            "{}: line {line}: [[publish]] key '{key}': {message}",
            path.display()
        ),
        None => anyhow!("{}: {err}", path.display()),
    }
}

/// Byte offset of the `n`-th `[[publish]]` header.
fn publish_header(text: &str, n: usize) -> Option<usize> {
    text.match_indices("[[publish]]").nth(n).map(|(o, _)| o)
}

/// Finds the `[[publish]]` key behind `err`: each entry is checked key by key on its own.
fn locate_publish_error(text: &str, err: &toml::de::Error) -> Option<(String, usize, String)> {
    let table: toml::Table = text.parse().ok()?;
    let entries = table.get("publish")?.as_array()?;
    let first = err
        .span()
        .map(|s| {
            text[..s.start.min(text.len())]
                .matches("[[publish]]")
                .count()
        })
        .unwrap_or(0);
    for n in std::iter::once(first).chain(0..entries.len()) {
        let Some(entry) = entries.get(n).and_then(toml::Value::as_table) else {
            continue;
        };
        if let Some((key, message)) = bad_publish_key(entry) {
            let line = key_line(text, publish_header(text, n)?, &key)?;
            return Some((key, line, message));
        }
    }
    None
}

/// The first key of a `[[publish]]` entry that does not deserialize, with the reason.
fn bad_publish_key(entry: &toml::Table) -> Option<(String, String)> {
    let mut args = entry.clone();
    if let Some(v) = args.remove("verify") {
        if !v.is_bool() {
            return Some(("verify".into(), "must be true or false".into()));
        }
    }
    if let Some(v) = args.remove("verify_chunk_sample") {
        if v.as_integer().is_none_or(|n| n < 0) {
            return Some((
                "verify_chunk_sample".into(),
                "must be a non-negative integer".into(),
            ));
        }
    }
    let probe = toml::to_string(&args).ok()?;
    let err = toml::from_str::<PublishArgs>(&probe).err()?;
    let start = err.span()?.start.min(probe.len());
    let line_start = probe[..start].rfind('\n').map_or(0, |i| i + 1);
    let key = probe[line_start..]
        .split('=')
        .next()?
        .trim()
        .trim_matches('"');
    Some((key.to_string(), err.message().trim().to_string()))
}

/// The line (1-based) of `key = ...` in the table starting at byte offset `from`.
fn key_line(text: &str, from: usize, key: &str) -> Option<usize> {
    let first = line_of(text, from);
    text[from..]
        .lines()
        .enumerate()
        .take_while(|(i, l)| *i == 0 || !l.trim_start().starts_with('['))
        .find(|(_, l)| {
            let l = l.trim_start();
            let rest = l
                .strip_prefix(key)
                .or_else(|| l.strip_prefix(&format!("\"{key}\"")));
            rest.is_some_and(|r| r.trim_start().starts_with('='))
        })
        .map(|(i, _)| first + i)
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
        config
            .apply_env(env("AERO_BACKEND_ROOT", "/srv/other"))
            .unwrap();
        let spec = config.storage_spec(&catalogue).unwrap().unwrap();
        assert_eq!(spec.settings["root"], "/srv/other");
        config.apply_env(env("AERO_BACKEND_BUCKET", "b")).unwrap();
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
}
