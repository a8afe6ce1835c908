//! The options of one publish, shared by the `publish` command and `[[publish]]` config entries.

use aero_chunked::format::{DEFAULT_CHUNK_SIZE, IMMUTABLE_CACHE_CONTROL, LATEST_CACHE_CONTROL};
use aero_chunked::publish::{self, PublishPlan};
use aero_chunked::store::CacheControls;
use serde::Deserialize;
use std::path::PathBuf;

/// How the version is chosen (`--compute-version`, `compute_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputeVersion {
    /// `--image-version` or the prefix decide.
    #[default]
    None,
    /// `sha256-<digest of the whole disk>`.
    Sha256,
    /// `mh1-<digest of the chunk list>`: authenticates the manifest, zero chunks never read.
    #[serde(rename = "manifest-sha256")]
    ManifestSha256,
}

impl From<ComputeVersion> for publish::ComputeVersion {
    fn from(value: ComputeVersion) -> Self {
        match value {
            ComputeVersion::None => publish::ComputeVersion::None,
            ComputeVersion::Sha256 => publish::ComputeVersion::Sha256,
            ComputeVersion::ManifestSha256 => publish::ComputeVersion::ManifestSha256,
        }
    }
}

/// Per-chunk digests in the manifest (`--checksum`, `checksum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Checksum {
    /// No digests.
    None,
    /// sha256 of every chunk.
    #[default]
    Sha256,
}

impl From<Checksum> for publish::Checksum {
    fn from(value: Checksum) -> Self {
        match value {
            Checksum::None => publish::Checksum::None,
            Checksum::Sha256 => publish::Checksum::Sha256,
        }
    }
}

/// Publish options: every flag of `aero-host publish`, and every key of a `[[publish]]` entry.
#[derive(Debug, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishArgs {
    /// The disk image to publish.
    #[arg(long)]
    pub file: PathBuf,
    /// Input format: auto, raw, qcow2, vhd, aerosparse (alias aerospar), or a plugin's name.
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// Follow backing files / parent disks (confined to the image's directory and --backing-root).
    #[arg(long)]
    pub allow_backing: bool,
    /// More directories backing files may live in.
    #[arg(long = "backing-root")]
    pub backing_roots: Vec<PathBuf>,
    /// Key prefix (a trailing / is added).
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Image id (default: inferred from the prefix).
    #[arg(long)]
    pub image_id: Option<String>,
    /// Version (default: computed or inferred from the prefix).
    #[arg(long)]
    pub image_version: Option<String>,
    /// `sha256` makes the version `sha256-<digest of the whole disk>`.
    #[arg(long, value_enum, default_value = "none")]
    pub compute_version: ComputeVersion,
    /// Also write `images/<id>/latest.json`.
    #[arg(long)]
    pub publish_latest: bool,
    /// Cache-Control of chunks (must contain no-transform).
    #[arg(long, default_value = IMMUTABLE_CACHE_CONTROL)]
    pub cache_control_chunks: String,
    /// Cache-Control of manifest.json and meta.json (must contain no-transform).
    #[arg(long, default_value = IMMUTABLE_CACHE_CONTROL)]
    pub cache_control_manifest: String,
    /// Cache-Control of latest.json (must contain no-transform).
    #[arg(long, default_value = LATEST_CACHE_CONTROL)]
    pub cache_control_latest: String,
    /// Chunk size in bytes: a multiple of 512, at most 64 MiB.
    #[arg(long, default_value_t = DEFAULT_CHUNK_SIZE)]
    pub chunk_size: u64,
    /// Per-chunk digests in the manifest.
    #[arg(long, value_enum, default_value = "sha256")]
    pub checksum: Checksum,
    /// Chunks read, hashed and uploaded at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Attempts per storage operation, including the first.
    #[arg(long, default_value_t = 5)]
    pub retries: usize,
    /// Do not write meta.json.
    #[arg(long)]
    pub no_meta: bool,
}

impl Default for PublishArgs {
    fn default() -> Self {
        PublishArgs {
            file: PathBuf::new(),
            format: "auto".to_string(),
            allow_backing: false,
            backing_roots: Vec::new(),
            prefix: String::new(),
            image_id: None,
            image_version: None,
            compute_version: ComputeVersion::None,
            publish_latest: false,
            cache_control_chunks: IMMUTABLE_CACHE_CONTROL.to_string(),
            cache_control_manifest: IMMUTABLE_CACHE_CONTROL.to_string(),
            cache_control_latest: LATEST_CACHE_CONTROL.to_string(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            checksum: Checksum::Sha256,
            concurrency: 8,
            retries: 5,
            no_meta: false,
        }
    }
}

impl PublishArgs {
    /// Checks every option (SPEC 1.10 step 1).
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.retries == 0 {
            anyhow::bail!("--retries must be at least 1");
        }
        Ok(self.plan().validate()?)
    }

    /// The publish plan these options describe.
    pub fn plan(&self) -> PublishPlan {
        PublishPlan {
            prefix: self.prefix.clone(),
            image_id: self.image_id.clone(),
            image_version: self.image_version.clone(),
            compute_version: self.compute_version.into(),
            publish_latest: self.publish_latest,
            cache_control: CacheControls {
                chunks: self.cache_control_chunks.clone(),
                manifest: self.cache_control_manifest.clone(),
                latest: self.cache_control_latest.clone(),
            },
            chunk_size: self.chunk_size,
            checksum: self.checksum.into(),
            concurrency: self.concurrency,
            no_meta: self.no_meta,
            original_filename: self
                .file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("unknown")
                .to_string(),
        }
    }
}
