//! The registry file's entries and finding an image in them.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// One registry file as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    /// The images.
    #[serde(default)]
    pub images: Vec<Image>,
    /// Other registries to read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub includes: Vec<Include>,
}

/// `[[includes]]`: another registry, by URL or path (relative to the including file).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Include {
    /// URL or path.
    #[serde(alias = "path")]
    pub url: String,
}

/// `[[images]]`: one image version.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// Name (`debian`).
    pub name: String,
    /// Version (`12.5`).
    pub version: String,
    /// Release date or time, ISO 8601; the highest is a name's latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Architecture (`x86_64`, `aarch64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// Lowercase hex sha256: of the downloaded file (`url`), or of the guest disk (`manifest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A plain disk file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A published chunked image's manifest URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// The format of `url`: raw, qcow2, vhd, or `tar.gz` (an archive, extracted into a
    /// directory). Default: `tar.gz` when `url` ends with `.tar.gz` or `.tgz`, else raw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Instead of `sha256` for a `url`: a `SHA256SUMS`-style checksum list (URL, or relative
    /// to `url`) in which the file's name is looked up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256sums: Option<String>,
}

/// How an image is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageKind<'a> {
    /// A published chunked image.
    Chunked {
        /// The manifest URL.
        manifest: &'a str,
    },
    /// A plain disk file, checked against its sha256 and converted to raw.
    Disk {
        /// The file's URL.
        url: &'a str,
        /// Its format.
        format: &'a str,
        /// Where its digest comes from.
        checksum: Checksum<'a>,
    },
    /// A `.tar.gz` archive, checked against its sha256 and extracted into a directory.
    Archive {
        /// The archive's URL.
        url: &'a str,
        /// Where its digest comes from.
        checksum: Checksum<'a>,
    },
}

/// Where a downloaded file's sha256 comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum<'a> {
    /// Given in the entry.
    Sha256(&'a str),
    /// Looked up in a `SHA256SUMS`-style list at this URL (maybe relative to the file's).
    List(&'a str),
}

/// The `format` of an archive entry.
pub const ARCHIVE_FORMAT: &str = "tar.gz";

impl Image {
    /// `name:version`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.version)
    }

    /// How the image is fetched; an error names what the entry lacks.
    pub fn kind(&self) -> std::result::Result<ImageKind<'_>, String> {
        match (&self.manifest, &self.url) {
            (Some(_), None) if self.sha256sums.is_some() => Err(format!(
                "{}: sha256sums is for a file at a url, not a manifest",
                self.reference()
            )),
            (Some(manifest), None) => Ok(ImageKind::Chunked { manifest }),
            (None, Some(url)) => {
                let checksum = match (&self.sha256, &self.sha256sums) {
                    (Some(sha256), None) => Checksum::Sha256(sha256),
                    (None, Some(list)) => Checksum::List(list),
                    (Some(_), Some(_)) => {
                        return Err(format!(
                            "{}: both sha256 and sha256sums (give one)",
                            self.reference()
                        ))
                    }
                    (None, None) => {
                        return Err(format!(
                            "{}: a file at a url needs its sha256 or a sha256sums list",
                            self.reference()
                        ))
                    }
                };
                let is_archive = url.ends_with(".tar.gz") || url.ends_with(".tgz");
                let format = self.format.as_deref().unwrap_or(if is_archive {
                    ARCHIVE_FORMAT
                } else {
                    "raw"
                });
                match format {
                    ARCHIVE_FORMAT => Ok(ImageKind::Archive { url, checksum }),
                    "raw" | "qcow2" | "vhd" => Ok(ImageKind::Disk {
                        url,
                        format,
                        checksum,
                    }),
                    _ => Err(format!(
                        "{}: format '{format}' is not raw, qcow2, vhd or {ARCHIVE_FORMAT}",
                        self.reference()
                    )),
                }
            }
            (Some(_), Some(_)) => Err(format!("{}: both manifest and url", self.reference())),
            (None, None) => Err(format!("{}: neither manifest nor url", self.reference())),
        }
    }

    /// Checks the entry's rules.
    pub(crate) fn validate(&self) -> std::result::Result<(), String> {
        if self.name.is_empty() || self.version.is_empty() {
            return Err("an image has an empty name or version".into());
        }
        if let Some(d) = &self.sha256 {
            if !crate::checksums::is_sha256(d) {
                return Err(format!(
                    "{}: sha256 '{d}' is not 64 hex digits",
                    self.reference()
                ));
            }
        }
        self.kind().map(|_| ())
    }
}

/// Every image of a registry and its includes.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// The images, first registry first.
    pub images: Vec<Image>,
    /// What was skipped, and why (name:version conflicts).
    pub warnings: Vec<String>,
}

impl Registry {
    /// The images for `arch` (all with `None`; an entry without `arch` fits any).
    pub fn for_arch<'a>(&'a self, arch: Option<&'a str>) -> impl Iterator<Item = &'a Image> {
        self.images
            .iter()
            .filter(move |i| arch.is_none() || i.arch.is_none() || i.arch.as_deref() == arch)
    }

    /// The image `name` at `version` (or its latest: the highest `released_at`) for `arch`.
    pub fn find<'a>(
        &'a self,
        name: &str,
        version: Option<&str>,
        arch: &'a str,
    ) -> Result<&'a Image> {
        let candidates = self.for_arch(Some(arch)).filter(|i| i.name == name);
        let found = match version {
            Some(v) => candidates.into_iter().find(|i| i.version == v),
            None => candidates.max_by(|a, b| a.released_at.cmp(&b.released_at)),
        };
        found.ok_or_else(|| {
            Error::NotFound(format!(
                "no image {name}{} for {arch} in the registry",
                version.map(|v| format!(":{v}")).unwrap_or_default()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(text: &str) -> Image {
        toml::from_str(&format!("name = \"x\"\nversion = \"1\"\n{text}")).unwrap()
    }

    #[test]
    fn kinds_follow_the_url_format_and_checksum() {
        let sha = format!("sha256 = \"{}\"", "a".repeat(64));
        let archive = image(&format!("url = \"https://h/root.tar.gz\"\n{sha}"));
        assert!(matches!(archive.kind(), Ok(ImageKind::Archive { .. })));
        let listed = image("url = \"https://h/d.img\"\nformat = \"tar.gz\"\nsha256sums = \"SUMS\"");
        assert_eq!(
            listed.kind(),
            Ok(ImageKind::Archive {
                url: "https://h/d.img",
                checksum: Checksum::List("SUMS")
            })
        );
        let disk = image("url = \"https://h/d.img\"\nsha256sums = \"SUMS\"");
        assert!(matches!(
            disk.kind(),
            Ok(ImageKind::Disk { format: "raw", .. })
        ));
        let both = image(&format!("url = \"https://h/d\"\nsha256sums = \"S\"\n{sha}"));
        assert!(both
            .kind()
            .unwrap_err()
            .contains("both sha256 and sha256sums"));
        let none = image("url = \"https://h/d\"");
        assert!(none.kind().unwrap_err().contains("sha256sums list"));
        let zip = image(&format!(
            "url = \"https://h/d.zip\"\nformat = \"zip\"\n{sha}"
        ));
        assert!(zip.kind().unwrap_err().contains("tar.gz"));
    }
}
