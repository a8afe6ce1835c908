//! The command line: every clap struct of `aero-host`, and the mapping of its value words onto
//! `aero_chunked`'s types. Defaults are written here once, in the clap attributes; the
//! `[[publish]]` entries of a config take theirs from [`PublishArgs::defaults`].

use aero_chunked::format::{DEFAULT_CHUNK_SIZE, IMMUTABLE_CACHE_CONTROL, LATEST_CACHE_CONTROL};
use aero_chunked::publish::{self, Base, PublishPlan};
use aero_chunked::store::CacheControls;
use clap::{Args, FromArgMatches, Parser, Subcommand};
use serde::Deserialize;
use std::path::PathBuf;

/// Publish, verify and serve virtual-machine disk images from any storage backend.
#[derive(Debug, Parser)]
#[command(name = "aero-host", version, about)]
pub struct Cli {
    /// Storage to use: fs:PATH, memory:, or s3://BUCKET[/ROOT]?endpoint=URL&region=R&force_path_style=true.
    #[arg(long, global = true, env = "AERO_STORAGE")]
    pub storage: Option<String>,
    /// Load a format plugin from a shared library (repeatable).
    #[arg(long = "plugin", global = true, value_name = "PATH")]
    pub plugins: Vec<PathBuf>,
    /// Logging filter (e.g. info, debug, aero_host=debug); RUST_LOG wins when set.
    #[arg(long, global = true, default_value = DEFAULT_LOG_LEVEL)]
    pub log_level: String,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The default of the global `--log-level`.
pub const DEFAULT_LOG_LEVEL: &str = "warn,opendal=error";

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show an image's format, size, allocation and backing chain.
    Inspect(InspectArgs),
    /// Write an image's guest-visible bytes as a sparse raw file or an AeroSparse image.
    Convert(ConvertArgs),
    /// List the plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Publish an image as chunks, manifest, meta and latest pointer.
    Publish(PublishCommand),
    /// Verify a published image.
    Verify(VerifyArgs),
    /// Serve images over HTTP from the storage (Range bytes endpoint and chunked endpoints).
    Serve(crate::serve_args::ServeArgs),
    /// Run the jobs of a config file: publishes, then verifications.
    Run {
        /// The TOML config.
        config: PathBuf,
        /// Print a JSON summary of each job on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// The image to read and how: shared by `inspect` and `convert`.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// The image.
    pub image: PathBuf,
    /// Format (default: detect).
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// Follow backing files.
    #[arg(long)]
    pub allow_backing: bool,
    /// More directories backing files may live in.
    #[arg(long = "backing-root")]
    pub backing_roots: Vec<PathBuf>,
}

/// `inspect` arguments.
#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub source: ImageArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `convert` arguments.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    #[command(flatten)]
    pub source: ImageArgs,
    /// The output file.
    pub out: PathBuf,
    /// Output format.
    #[arg(long, default_value = "raw", value_parser = crate::commands::convert::targets())]
    pub to: String,
}

/// `plugins` subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List format and backend plugins.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the conformance suite against the plugins loaded with --plugin.
    Test {
        /// Fixture images plus expected.tsv (default: the built-in fixture set).
        #[arg(long)]
        fixtures: Option<PathBuf>,
    },
}

/// `publish` arguments: the publish options plus S3 shorthands and output.
#[derive(Debug, Args)]
pub struct PublishCommand {
    #[command(flatten)]
    pub args: PublishArgs,
    #[command(flatten)]
    pub s3: S3Flags,
    /// Print a one-object JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// Verify every chunk after publishing.
    #[arg(long)]
    pub verify: bool,
}

/// The S3 shorthands of SPEC 1.10: `--bucket` etc. mean the `s3` backend.
#[derive(Debug, Clone, Args)]
pub struct S3Flags {
    /// S3 bucket (selects the s3 backend).
    #[arg(long)]
    pub bucket: Option<String>,
    /// S3 endpoint URL (MinIO and other S3-compatible stores).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Path-style addressing.
    #[arg(long)]
    pub force_path_style: bool,
    /// Fallback region.
    #[arg(long)]
    pub region: Option<String>,
}

/// `verify` arguments (SPEC 1.11).
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Manifest URL; chunks are fetched relative to it.
    #[arg(long, conflicts_with_all = ["manifest_file", "bucket", "prefix", "manifest_key"])]
    pub manifest_url: Option<String>,
    /// Local manifest file; chunks are read from `<dir>/chunks/`.
    #[arg(long, conflicts_with_all = ["bucket", "prefix", "manifest_key"])]
    pub manifest_file: Option<PathBuf>,
    /// Extra request header "Name: value" (with --manifest-url).
    #[arg(long = "header", requires = "manifest_url")]
    pub headers: Vec<String>,
    /// Key prefix of the image (its version directory, or the image root with latest.json).
    #[arg(long, conflicts_with = "manifest_key")]
    pub prefix: Option<String>,
    /// Explicit manifest key.
    #[arg(long)]
    pub manifest_key: Option<String>,
    /// Expected image id.
    #[arg(long)]
    pub image_id: Option<String>,
    /// Expected version (with --prefix: which version to verify).
    #[arg(long)]
    pub image_version: Option<String>,
    #[command(flatten)]
    pub s3: S3Flags,
    /// Chunks checked at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Attempts per download.
    #[arg(long, default_value_t = 5)]
    pub retries: usize,
    /// Largest accepted chunk count.
    #[arg(long, default_value_t = 500_000)]
    pub max_chunks: u64,
    /// Verify N random chunks plus the last one.
    #[arg(long)]
    pub chunk_sample: Option<u64>,
    /// Seed of the sample.
    #[arg(long, requires = "chunk_sample")]
    pub chunk_sample_seed: Option<u64>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// How the version is chosen (`--compute-version`, `compute_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputeVersion {
    /// `--image-version` or the prefix decide.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Checksum {
    /// No digests.
    None,
    /// sha256 of every chunk.
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
/// The defaults below are the only ones: config entries start from [`PublishArgs::defaults`].
#[derive(Debug, Clone, Args)]
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
    /// Copy chunks unchanged since this version instead of uploading them: `auto` (the version
    /// latest.json names, when there is one), `latest`, a version, or `none`.
    #[arg(long, default_value = "auto")]
    pub base: String,
}

impl PublishArgs {
    /// The flags' defaults (with an empty `file`), read from the clap attributes above.
    pub fn defaults() -> Self {
        let command = Self::augment_args(clap::Command::new("publish"));
        let matches = command
            .try_get_matches_from(["publish", "--file", "-"])
            .expect("the publish flags parse with only --file");
        let mut args = Self::from_arg_matches(&matches).expect("the publish flags' defaults");
        args.file = PathBuf::new();
        args
    }

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
            base: Base::parse(&self.base),
            original_filename: self
                .file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("unknown")
                .to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_defaults_come_from_the_flags() {
        let d = PublishArgs::defaults();
        assert_eq!(d.file, PathBuf::new());
        assert_eq!(d.format, "auto");
        assert_eq!(d.prefix, "");
        assert_eq!(d.compute_version, ComputeVersion::None);
        assert_eq!(d.checksum, Checksum::Sha256);
        assert_eq!(d.chunk_size, DEFAULT_CHUNK_SIZE);
        assert_eq!((d.concurrency, d.retries), (8, 5));
        assert_eq!(d.cache_control_chunks, IMMUTABLE_CACHE_CONTROL);
        assert_eq!(d.cache_control_latest, LATEST_CACHE_CONTROL);
        assert!(!d.allow_backing && !d.publish_latest && !d.no_meta);
        assert_eq!(d.base, "auto");
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
