//! The oracle: a raw file holding the guest-visible bytes a fixture must read as.

use crate::fixtures::{Fixture, Fixtures};
use aero_plugin_api::{ByteSource, FileSource};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// Bytes hashed or compared per read.
pub(crate) const CHUNK: usize = 1 << 20;

/// Finds raw views for fixtures, hashing each file at most once.
pub(crate) struct Oracles<'a> {
    fixtures: &'a Fixtures,
    /// Files whose sha256 matched, with that sha256.
    verified: HashSet<(PathBuf, String)>,
}

impl<'a> Oracles<'a> {
    pub(crate) fn new(fixtures: &'a Fixtures) -> Self {
        Oracles {
            fixtures,
            verified: HashSet::new(),
        }
    }

    /// The raw view of `fixture`: the file itself for raw images, else a raw fixture with the
    /// same expected sha256, else `qemu-img convert -O raw` cached in `<dir>/raw-views/`.
    /// A view is checked against the expected sha256 when there is one.
    pub(crate) fn raw_view(&mut self, fixture: &Fixture) -> Result<Arc<FileSource>, String> {
        let path = if fixture.qemu_format == "raw" {
            fixture.path.clone()
        } else if let Some(twin) =
            self.fixtures.entries().iter().find(|f| {
                f.qemu_format == "raw" && f.sha256.is_some() && f.sha256 == fixture.sha256
            })
        {
            twin.path.clone()
        } else {
            let cached = self
                .fixtures
                .dir()
                .join("raw-views")
                .join(format!("{}.raw", fixture.name));
            let fresh = cached.is_file() && self.verify(&cached, fixture.sha256.as_deref()).is_ok();
            if !fresh {
                convert(fixture, &cached)?;
            }
            cached
        };
        self.verify(&path, fixture.sha256.as_deref())?;
        FileSource::open(&path)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }

    fn verify(&mut self, path: &Path, sha256: Option<&str>) -> Result<(), String> {
        let Some(want) = sha256 else { return Ok(()) };
        let key = (path.to_path_buf(), want.to_string());
        if self.verified.contains(&key) {
            return Ok(());
        }
        let source = FileSource::open(path).map_err(|e| e.to_string())?;
        let got = sha256_of(&source).map_err(|e| e.to_string())?;
        if got != want {
            return Err(format!(
                "raw view {} has sha256 {got}, expected {want}",
                path.display()
            ));
        }
        self.verified.insert(key);
        Ok(())
    }
}

/// sha256 (lowercase hex) of the whole of `source`.
fn sha256_of(source: &FileSource) -> aero_plugin_api::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0;
    while offset < source.len() {
        let n = (source.len() - offset).min(CHUNK as u64) as usize;
        source.read_at(offset, &mut buf[..n])?;
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Writes `qemu-img convert -f <qemu_format> -O raw` of `fixture` to `out` atomically.
fn convert(fixture: &Fixture, out: &Path) -> Result<(), String> {
    let dir = out.parent().unwrap_or(out);
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let temp = dir.join(format!(".{}.{}.tmp", fixture.name, std::process::id()));
    let output = Command::new("qemu-img")
        .args(["convert", "-q", "-f", &fixture.qemu_format, "-O", "raw"])
        .arg(&fixture.path)
        .arg(&temp)
        .output()
        .map_err(|e| {
            format!(
                "running qemu-img for the raw view of {}: {e}; {}",
                fixture.name,
                crate::fixtures::QEMU_IMG_HINT
            )
        })?;
    let result = if output.status.success() {
        fs::rename(&temp, out).map_err(|e| format!("renaming to {}: {e}", out.display()))
    } else {
        Err(format!(
            "qemu-img convert -f {} -O raw {} failed: {}",
            fixture.qemu_format,
            fixture.name,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    };
    let _ = fs::remove_file(&temp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_views_come_from_raw_twins_or_qemu_img_and_are_verified() {
        let fixtures = Fixtures::builtin();
        let mut oracles = Oracles::new(&fixtures);
        let find = |name: &str| {
            fixtures
                .entries()
                .iter()
                .find(|f| f.name == name)
                .unwrap_or_else(|| panic!("{name} not in the built-in set"))
                .clone()
        };
        for name in [
            "v3.qcow2",
            "overlay.qcow2",
            "dynamic-chs.vhd",
            "src.aerosparse",
        ] {
            let fixture = find(name);
            let view = oracles.raw_view(&fixture).unwrap();
            assert_eq!(Some(view.len()), fixture.virtual_size, "{name}");
        }
        let mut wrong = find("src.raw");
        wrong.sha256 = Some("0".repeat(64));
        assert!(oracles.raw_view(&wrong).is_err());
    }
}
