//! Reading registries (a URL or a path) with their includes, and the last-good local copy.

use crate::registry::RegistryFile;
use crate::{Error, Registry, Result};
use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};

/// Largest registry file read (16 MiB).
pub const MAX_REGISTRY_BYTES: u64 = 16 * 1024 * 1024;
/// Most registries one load reads, includes counted.
const MAX_REGISTRIES: usize = 64;

/// Reads the registry at `location` (an `http(s)://` URL or a path) and its includes,
/// breadth-first, each once. A registry that includes itself is an error; an include seen
/// before by another registry is skipped. On a name:version conflict the first wins.
pub async fn load(location: &str) -> Result<Registry> {
    let mut registry = Registry::default();
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([location.to_string()]);
    seen.insert(location.to_string());
    while let Some(current) = queue.pop_front() {
        if seen.len() > MAX_REGISTRIES {
            return Err(invalid(
                location,
                format!("more than {MAX_REGISTRIES} registries included"),
            ));
        }
        let text = fetch(&current).await?;
        let file: RegistryFile =
            toml::from_str(&text).map_err(|e| invalid(&current, e.to_string()))?;
        for image in file.images {
            image.validate().map_err(|p| invalid(&current, p))?;
            if registry
                .images
                .iter()
                .any(|i| i.name == image.name && i.version == image.version && i.arch == image.arch)
            {
                registry.warnings.push(format!(
                    "{} in {current} is listed by an earlier registry; the first is kept",
                    image.reference()
                ));
                continue;
            }
            registry.images.push(image);
        }
        for include in file.includes {
            let target = resolve(&current, &include.url)?;
            if target == current {
                return Err(invalid(&current, "it includes itself".into()));
            }
            if seen.insert(target.clone()) {
                queue.push_back(target);
            }
        }
    }
    Ok(registry)
}

/// What a sync did.
#[derive(Debug, Clone)]
pub struct SyncOutcome {
    /// The registry that was read.
    pub source: String,
    /// Images in the new local copy.
    pub images: usize,
    /// Warnings of the load, and registries that failed before this one.
    pub warnings: Vec<String>,
}

/// Reads the first registry of `sources` that loads completely (with its includes) and
/// replaces the local copy `local` with it (a temporary file renamed). When none loads, the
/// local copy is left as it was and the error names each failure.
pub async fn sync(sources: &[String], local: &Path) -> Result<SyncOutcome> {
    let mut failures = Vec::new();
    for source in sources {
        match load(source).await {
            Ok(registry) => {
                write_local(&registry, local)?;
                let mut warnings = failures;
                warnings.extend(registry.warnings);
                return Ok(SyncOutcome {
                    source: source.clone(),
                    images: registry.images.len(),
                    warnings,
                });
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    Err(Error::Fetch {
        location: sources.join(", "),
        problem: if failures.is_empty() {
            "no registry configured".into()
        } else {
            failures.join("; ")
        },
    })
}

/// Writes `registry` flattened (its images, no includes) to `local`, atomically.
fn write_local(registry: &Registry, local: &Path) -> Result<()> {
    let file = RegistryFile {
        images: registry.images.clone(),
        includes: Vec::new(),
    };
    let text =
        toml::to_string(&file).map_err(|e| invalid(&local.display().to_string(), e.to_string()))?;
    if let Some(dir) = local.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io(format!("creating {}", dir.display()), e))?;
    }
    let mut temp = local.as_os_str().to_owned();
    temp.push(format!(".tmp-{}", std::process::id()));
    let temp = PathBuf::from(temp);
    std::fs::write(&temp, text)
        .and_then(|_| std::fs::rename(&temp, local))
        .map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            io(format!("writing {}", local.display()), e)
        })
}

/// `include` (a URL or path) resolved against `base`, the registry or file that names it.
pub(crate) fn resolve(base: &str, include: &str) -> Result<String> {
    if is_url(include) {
        return Ok(include.to_string());
    }
    if is_url(base) {
        let base_url = url::Url::parse(base).map_err(|e| invalid(base, e.to_string()))?;
        return base_url
            .join(include)
            .map(|u| u.to_string())
            .map_err(|e| invalid(base, format!("include '{include}': {e}")));
    }
    let path = Path::new(base)
        .parent()
        .unwrap_or(Path::new(""))
        .join(include);
    // The same file named two ways is one registry.
    Ok(std::fs::canonicalize(&path)
        .unwrap_or(path)
        .display()
        .to_string())
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// The text of a registry.
pub(crate) async fn fetch(location: &str) -> Result<String> {
    let fail = |problem: String| Error::Fetch {
        location: location.to_string(),
        problem,
    };
    let bytes = if is_url(location) {
        let response = reqwest::get(location)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP {}", response.status())));
        }
        if response
            .content_length()
            .is_some_and(|l| l > MAX_REGISTRY_BYTES)
        {
            return Err(fail(format!("larger than {MAX_REGISTRY_BYTES} bytes")));
        }
        response
            .bytes()
            .await
            .map_err(|e| fail(e.to_string()))?
            .to_vec()
    } else {
        let meta = tokio::fs::metadata(location)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if meta.len() > MAX_REGISTRY_BYTES {
            return Err(fail(format!("larger than {MAX_REGISTRY_BYTES} bytes")));
        }
        tokio::fs::read(location)
            .await
            .map_err(|e| fail(e.to_string()))?
    };
    if bytes.len() as u64 > MAX_REGISTRY_BYTES {
        return Err(fail(format!("larger than {MAX_REGISTRY_BYTES} bytes")));
    }
    String::from_utf8(bytes).map_err(|_| fail("not UTF-8 text".into()))
}

pub(crate) fn invalid(location: &str, problem: String) -> Error {
    Error::Invalid {
        location: location.to_string(),
        problem,
    }
}

fn io(context: String, source: std::io::Error) -> Error {
    Error::Io { context, source }
}

/// The images of a list, for tests.
#[cfg(test)]
fn names(images: &[crate::Image]) -> Vec<String> {
    images.iter().map(|i| i.reference()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::canonicalize(path).unwrap().display().to_string()
    }

    const A: &str = r#"
[[images]]
name = "debian"
version = "12.4"
released_at = "2024-01-01"
arch = "x86_64"
manifest = "https://cdn/debian/12.4/manifest.json"

[[images]]
name = "debian"
version = "12.5"
released_at = "2024-02-10"
arch = "x86_64"
manifest = "https://cdn/debian/12.5/manifest.json"

[[includes]]
url = "b.toml"
[[includes]]
url = "c.toml"
"#;

    #[tokio::test]
    async fn includes_are_read_breadth_first_once_and_the_first_wins() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.toml", A);
        write(
            dir.path(),
            "b.toml",
            "[[images]]\nname = \"debian\"\nversion = \"12.5\"\narch = \"x86_64\"\nmanifest = \"https://other\"\n\
             [[includes]]\nurl = \"c.toml\"\n",
        );
        write(
            dir.path(),
            "c.toml",
            "[[images]]\nname = \"alpine\"\nversion = \"3.19\"\nurl = \"https://x/alpine.qcow2\"\nformat = \"qcow2\"\n\
             sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n\
             [[includes]]\nurl = \"a.toml\"\n",
        );
        let registry = load(&a).await.unwrap();
        assert_eq!(
            names(&registry.images),
            ["debian:12.4", "debian:12.5", "alpine:3.19"]
        );
        assert_eq!(registry.warnings.len(), 1, "{:?}", registry.warnings);
        assert!(registry.warnings[0].contains("debian:12.5"));
        let latest = registry.find("debian", None, "x86_64").unwrap();
        assert_eq!(latest.version, "12.5");
        assert_eq!(
            latest.manifest.as_deref(),
            Some("https://cdn/debian/12.5/manifest.json")
        );
        assert!(registry.find("debian", None, "aarch64").is_err());
        // No arch: fits any.
        assert!(registry.find("alpine", Some("3.19"), "aarch64").is_ok());
    }

    #[tokio::test]
    async fn a_registry_that_includes_itself_or_does_not_parse_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let selfish = write(
            dir.path(),
            "self.toml",
            "[[includes]]\nurl = \"self.toml\"\n",
        );
        let err = load(&selfish).await.unwrap_err().to_string();
        assert!(err.contains("includes itself"), "{err}");
        let broken = write(dir.path(), "broken.toml", "[[images]\nname=");
        let err = load(&broken).await.unwrap_err().to_string();
        assert!(err.contains("is invalid"), "{err}");
        let lacking = write(
            dir.path(),
            "lacking.toml",
            "[[images]]\nname = \"x\"\nversion = \"1\"\n",
        );
        let err = load(&lacking).await.unwrap_err().to_string();
        assert!(err.contains("neither manifest nor url"), "{err}");
    }

    #[tokio::test]
    async fn a_failed_sync_keeps_the_last_good_copy() {
        let dir = tempfile::tempdir().unwrap();
        let good = write(
            dir.path(),
            "a.toml",
            "[[images]]\nname = \"x\"\nversion = \"1\"\nmanifest = \"https://m\"\n",
        );
        let local = dir.path().join("local/registry.toml");
        let outcome = sync(std::slice::from_ref(&good), &local).await.unwrap();
        assert_eq!(outcome.images, 1);
        let before = std::fs::read_to_string(&local).unwrap();
        std::fs::write(&good, "not toml [").unwrap();
        let err = sync(std::slice::from_ref(&good), &local)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("is invalid"), "{err}");
        assert_eq!(std::fs::read_to_string(&local).unwrap(), before);
        let copy = load(local.to_str().unwrap()).await.unwrap();
        assert_eq!(names(&copy.images), ["x:1"]);
        // A fallback that loads is used, and the failure before it reported.
        let fallback = write(
            dir.path(),
            "f.toml",
            "[[images]]\nname = \"y\"\nversion = \"2\"\nmanifest = \"https://m\"\n",
        );
        let outcome = sync(&[good, fallback.clone()], &local).await.unwrap();
        assert_eq!(outcome.source, fallback);
        assert_eq!(outcome.warnings.len(), 1);
    }
}
