//! The command line: every clap struct of `aero-host`, and the mapping of its value words onto
//! `aero_chunked`'s types. Defaults are written here once, in the clap attributes; the
//! `[[publish]]` entries of a config take theirs from [`PublishArgs::defaults`].

use aero_chunked::format::{DEFAULT_CHUNK_SIZE, IMMUTABLE_CACHE_CONTROL, LATEST_CACHE_CONTROL};
use aero_chunked::publish::{self, Base, PublishPlan};
use aero_chunked::store::CacheControls;
use aero_plugin_host::PluginSet;
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
    /// Download a published image into a local disk file: verified, parallel, resumable.
    Pull(PullArgs),
    /// The image catalog: list images, sync the local copy of the registry.
    #[command(subcommand)]
    Images(ImagesCommand),
    /// Serve images over HTTP from the storage (Range bytes endpoint and chunked endpoints).
    Serve(crate::serve_args::ServeArgs),
    /// Export one image over NBD: chunks fetched on demand and verified, or a local image.
    Nbd(NbdArgs),
    /// The upload gateway: browser uploads straight to S3, image records in a database, and
    /// conversion into the chunked format (`gateway token create|revoke` manages API tokens).
    Gateway(Box<crate::gateway_args::GatewayCommand>),
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
    #[arg(long, default_value = "raw", value_parser = convert_targets())]
    pub to: String,
}

/// The values `--to` accepts: `raw`, and every built-in format that can write.
fn convert_targets() -> clap::builder::PossibleValuesParser {
    let writers: Vec<String> = PluginSet::builtin()
        .map(|set| set.writers().map(|f| f.name().to_string()).collect())
        .unwrap_or_default();
    // Parsed once per process: the few names live as long as it does.
    let names = std::iter::once("raw").chain(writers.into_iter().map(|name| &*name.leak()));
    clap::builder::PossibleValuesParser::new(names)
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

/// `pull` arguments.
#[derive(Debug, Clone, Args)]
pub struct PullArgs {
    /// What to pull: a manifest URL; with --storage/--bucket a prefix (an image root with
    /// latest.json, or a version directory); a local manifest.json; or a catalog
    /// NAME[:VERSION].
    pub source: String,
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Architecture of a catalog image (default: the host's).
    #[arg(long)]
    pub arch: Option<String>,
    /// The output file (default: `<image id>.raw`, or `.<format>` with --to); for a catalog
    /// archive, the directory it is extracted into (default: the image's name).
    #[arg(short = 'o', long)]
    pub out: Option<PathBuf>,
    /// Output format: a sparse raw file, or any format that can write.
    #[arg(long, default_value = "raw", value_parser = convert_targets())]
    pub to: String,
    /// Chunks fetched at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Extra request header "Name: value" (with a manifest URL).
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// The shared chunk cache (default: $XDG_CACHE_HOME/aero-host/chunks, or ~/.cache/…).
    #[arg(long, env = "AERO_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Largest size of the chunk cache in bytes; least recently used chunks are evicted.
    #[arg(long, default_value_t = 20 * 1024 * 1024 * 1024)]
    pub cache_max_bytes: u64,
    /// Use no chunk cache.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,
    /// Report what would be downloaded, re-used and skipped as zero; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print a one-object summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Attempts per chunk (bad bytes) and per request (transport failures, 5xx).
    #[arg(long, default_value_t = 5)]
    pub retries: usize,
    /// Expected image id.
    #[arg(long)]
    pub image_id: Option<String>,
    /// Which version (with a storage image root): default, the one latest.json names.
    #[arg(long)]
    pub image_version: Option<String>,
    /// Largest accepted chunk count.
    #[arg(long, default_value_t = 500_000)]
    pub max_chunks: u64,
    /// Largest total size of the files a catalog archive (.tar.gz) may expand to.
    #[arg(long, default_value_t = aero_archive::DEFAULT_MAX_BYTES)]
    pub max_archive_bytes: u64,
    /// Most entries a catalog archive (.tar.gz) may hold.
    #[arg(long, default_value_t = aero_archive::DEFAULT_MAX_ENTRIES)]
    pub max_archive_entries: u64,
    #[command(flatten)]
    pub s3: S3Flags,
}

impl PullArgs {
    /// The flags' defaults (with an empty source), read from the clap attributes above.
    pub fn defaults() -> Self {
        let command = Self::augment_args(clap::Command::new("pull"));
        let matches = command
            .try_get_matches_from(["pull", "-"])
            .expect("the pull flags parse with only a source");
        let mut args = Self::from_arg_matches(&matches).expect("the pull flags' defaults");
        args.source = String::new();
        args
    }
}

/// Where the catalog's registry is.
#[derive(Debug, Clone, Args)]
pub struct CatalogArgs {
    /// The registry (URL or path); default: the local copy `images sync` keeps.
    #[arg(long, env = "AERO_REGISTRY")]
    pub registry: Option<String>,
    /// Where the local copy of the registry is kept (default:
    /// $XDG_CACHE_HOME/aero-host/catalog, or ~/.cache/…).
    #[arg(long, env = "AERO_CATALOG_DIR")]
    pub catalog_dir: Option<PathBuf>,
}

/// `images` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// List the catalog's images.
    Ls {
        #[command(flatten)]
        catalog: CatalogArgs,
        /// Only images for this architecture.
        #[arg(long)]
        arch: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replace the local copy of the registry with a complete, parsed new one.
    Sync {
        #[command(flatten)]
        catalog: CatalogArgs,
    },
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

/// `nbd` arguments. The server's and the chunk reader's defaults are those of `aero_nbd`.
#[derive(Debug, Args)]
pub struct NbdArgs {
    /// What to export: a manifest URL, a storage prefix or version (with --storage), a local
    /// manifest.json or the directory holding it, a local image file in any format, or a
    /// catalog NAME[:VERSION] of a published chunked image.
    pub source: String,
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Architecture of a catalog image (default: the host's).
    #[arg(long)]
    pub arch: Option<String>,
    /// TCP address to listen on.
    #[arg(long, default_value = "127.0.0.1:10809", conflicts_with = "unix")]
    pub listen: String,
    /// Listen on this Unix socket instead of TCP.
    #[arg(long)]
    pub unix: Option<PathBuf>,
    /// The shared chunk cache; `none` keeps chunks in memory only
    /// (default: $XDG_CACHE_HOME/aero-host/chunks, or ~/.cache/…).
    #[arg(long, env = "AERO_CACHE_DIR")]
    pub cache_dir: Option<String>,
    /// Largest size of the chunk cache in bytes; least recently used chunks are evicted.
    #[arg(long, default_value_t = 20 * 1024 * 1024 * 1024)]
    pub cache_max_bytes: u64,
    /// Bytes of chunks kept in memory.
    #[arg(long, default_value_t = aero_nbd::ChunkedSettings::default().memory_cache_bytes)]
    pub memory_cache_bytes: u64,
    /// Chunks read ahead of a sequential reader (0 = none).
    #[arg(long, default_value_t = aero_nbd::ChunkedSettings::default().readahead)]
    pub readahead: u64,
    /// Chunks fetched at once.
    #[arg(long, default_value_t = aero_nbd::ChunkedSettings::default().concurrency)]
    pub concurrency: usize,
    /// Fetches of a chunk (a chunk failing verification is fetched again) before the read fails.
    #[arg(long, default_value_t = aero_nbd::ChunkedSettings::default().attempts)]
    pub retries: usize,
    /// Extra request header "Name: value" (with a manifest URL).
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// Which version to export (with a storage prefix of an image root).
    #[arg(long)]
    pub image_version: Option<String>,
    /// The export's name (default: the image id, or the file name).
    #[arg(long)]
    pub export_name: Option<String>,
    /// Connections served at once.
    #[arg(long, default_value_t = aero_nbd::Settings::default().max_connections)]
    pub max_connections: usize,
    /// Largest read a request may ask for, in bytes.
    #[arg(long, default_value_t = aero_nbd::Settings::default().max_request_bytes)]
    pub max_request_bytes: u32,
    /// Requests of one connection answered at once.
    #[arg(long, default_value_t = aero_nbd::Settings::default().max_in_flight)]
    pub max_in_flight: usize,
    /// Bytes of read buffers alive at once, all connections together.
    #[arg(long, default_value_t = aero_nbd::Settings::default().max_buffer_bytes)]
    pub max_buffer_bytes: u64,
    /// Seconds a client has to finish the handshake.
    #[arg(long, default_value_t = aero_nbd::Settings::default().handshake_timeout.as_secs())]
    pub handshake_timeout_secs: u64,
    /// Seconds a reply may take to be written before the connection is closed.
    #[arg(long, default_value_t = aero_nbd::Settings::default().send_timeout.as_secs())]
    pub send_timeout_secs: u64,
    /// Requests must be aligned to this many bytes (a power of two; 1 = any).
    #[arg(long, default_value_t = aero_nbd::Settings::default().min_block_size)]
    pub min_block_size: u32,
    /// Format of a local image (default: detect).
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// Follow backing files of a local image.
    #[arg(long)]
    pub allow_backing: bool,
    /// More directories backing files may live in.
    #[arg(long = "backing-root")]
    pub backing_roots: Vec<PathBuf>,
    /// Print a JSON summary (the counters) on stdout on exit.
    #[arg(long)]
    pub json: bool,
}
