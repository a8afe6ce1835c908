//! The commands behind the CLI.

pub mod serve;

use crate::config::{Config, PublishJob};
use crate::progress::StderrProgress;
use crate::publish_args::PublishArgs;
use aero_chunked::publish::{publish as publish_disk, PublishSummary};
use aero_chunked::verify::{verify as verify_image, VerifyOptions, VerifyReport, VerifySource};
use aero_plugin_api::backend::Storage;
use aero_plugin_host::storage::{open_storage, with_policy, StoragePolicy, StorageSpec};
use aero_plugin_host::{LibrarySelection, OpenOptions, OpenedDisk, PluginSet};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// The image to read and how: shared by `inspect` and `convert`.
#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    /// The image.
    image: PathBuf,
    /// Format (default: detect).
    #[arg(long, default_value = "auto")]
    format: String,
    /// Follow backing files.
    #[arg(long)]
    allow_backing: bool,
    /// More directories backing files may live in.
    #[arg(long = "backing-root")]
    backing_roots: Vec<PathBuf>,
}

impl ImageArgs {
    fn open(&self, catalogue: &PluginSet) -> Result<OpenedDisk> {
        open_image(
            catalogue,
            &self.image,
            &self.format,
            self.allow_backing,
            &self.backing_roots,
        )
    }
}

/// `inspect` arguments.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    #[command(flatten)]
    source: ImageArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `convert` arguments.
#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    #[command(flatten)]
    source: ImageArgs,
    /// The output file.
    out: PathBuf,
    /// Output format.
    #[arg(long, default_value = "raw", value_parser = crate::convert::targets())]
    to: String,
}

/// `plugins` subcommands.
#[derive(Debug, clap::Subcommand)]
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
#[derive(Debug, clap::Args)]
pub struct PublishCommand {
    #[command(flatten)]
    args: PublishArgs,
    #[command(flatten)]
    s3: S3Flags,
    /// Print a one-object JSON summary on stdout.
    #[arg(long)]
    json: bool,
    /// Verify every chunk after publishing.
    #[arg(long)]
    verify: bool,
}

/// The S3 shorthands of SPEC 1.10: `--bucket` etc. mean the `s3` backend.
#[derive(Debug, Clone, clap::Args)]
pub struct S3Flags {
    /// S3 bucket (selects the s3 backend).
    #[arg(long)]
    bucket: Option<String>,
    /// S3 endpoint URL (MinIO and other S3-compatible stores).
    #[arg(long)]
    endpoint: Option<String>,
    /// Path-style addressing.
    #[arg(long)]
    force_path_style: bool,
    /// Fallback region.
    #[arg(long)]
    region: Option<String>,
}

impl S3Flags {
    fn spec(&self) -> Result<Option<StorageSpec>> {
        let Some(bucket) = &self.bucket else {
            if self.endpoint.is_some() || self.force_path_style || self.region.is_some() {
                bail!("--endpoint, --force-path-style and --region need --bucket");
            }
            return Ok(None);
        };
        let mut settings = std::collections::BTreeMap::new();
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

/// `verify` arguments (SPEC 1.11).
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Manifest URL; chunks are fetched relative to it.
    #[arg(long, conflicts_with_all = ["manifest_file", "bucket", "prefix", "manifest_key"])]
    manifest_url: Option<String>,
    /// Local manifest file; chunks are read from `<dir>/chunks/`.
    #[arg(long, conflicts_with_all = ["bucket", "prefix", "manifest_key"])]
    manifest_file: Option<PathBuf>,
    /// Extra request header "Name: value" (with --manifest-url).
    #[arg(long = "header", requires = "manifest_url")]
    headers: Vec<String>,
    /// Key prefix of the image (its version directory, or the image root with latest.json).
    #[arg(long, conflicts_with = "manifest_key")]
    prefix: Option<String>,
    /// Explicit manifest key.
    #[arg(long)]
    manifest_key: Option<String>,
    /// Expected image id.
    #[arg(long)]
    image_id: Option<String>,
    /// Expected version (with --prefix: which version to verify).
    #[arg(long)]
    image_version: Option<String>,
    #[command(flatten)]
    s3: S3Flags,
    /// Chunks checked at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Attempts per download.
    #[arg(long, default_value_t = 5)]
    retries: usize,
    /// Largest accepted chunk count.
    #[arg(long, default_value_t = 500_000)]
    max_chunks: u64,
    /// Verify N random chunks plus the last one.
    #[arg(long)]
    chunk_sample: Option<u64>,
    /// Seed of the sample.
    #[arg(long, requires = "chunk_sample")]
    chunk_sample_seed: Option<u64>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

fn open_image(
    catalogue: &PluginSet,
    image: &Path,
    format: &str,
    allow_backing: bool,
    backing_roots: &[PathBuf],
) -> Result<OpenedDisk> {
    let options = OpenOptions {
        allow_backing,
        backing_roots: backing_roots.to_vec(),
    };
    aero_plugin_host::open_path(catalogue.formats(), image, Some(format), &options)
        .map_err(|e| anyhow!("{e}"))
}

/// Stdout was closed by its reader (`aero-host inspect IMG | head -1`).
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes one line to stdout; a closed stdout is a [`StdoutClosed`] error.
fn out(text: impl std::fmt::Display) -> Result<()> {
    use std::io::Write;
    writeln!(std::io::stdout().lock(), "{text}").map_err(|e| match e.kind() {
        std::io::ErrorKind::BrokenPipe => anyhow::Error::new(StdoutClosed),
        _ => anyhow::Error::new(e).context("writing to stdout"),
    })
}

/// `aero-host inspect`.
pub fn inspect(args: InspectArgs, libs: &LibrarySelection) -> Result<ExitCode> {
    let opened = args.source.open(&PluginSet::load(libs)?)?;
    let inspection = crate::inspect::inspect(&opened)
        .with_context(|| format!("inspecting {}", args.source.image.display()))?;
    if args.json {
        out(serde_json::to_string_pretty(&inspection)?)?;
    } else {
        out(&inspection)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `aero-host convert`.
pub fn convert(args: ConvertArgs, libs: &LibrarySelection) -> Result<ExitCode> {
    let plugins = PluginSet::load(libs)?;
    let opened = args.source.open(&plugins)?;
    let converted = crate::convert::convert(&plugins, opened.disk.as_ref(), &args.out, &args.to)
        .with_context(|| {
            format!(
                "converting {} to {}",
                args.source.image.display(),
                args.out.display()
            )
        })?;
    eprintln!(
        "wrote {} ({} guest bytes, {} data bytes)",
        args.out.display(),
        converted.virtual_size,
        converted.written
    );
    Ok(ExitCode::SUCCESS)
}

/// `aero-host plugins ...`.
pub fn plugins(cmd: PluginsCommand, libs: &LibrarySelection) -> Result<ExitCode> {
    match cmd {
        PluginsCommand::List { json } => {
            let rows = PluginSet::load(libs)?.rows();
            if json {
                out(serde_json::to_string_pretty(&rows)?)?;
            } else {
                for r in rows {
                    out(format_args!(
                        "{:<8} {:<12} {:<8} api v{} {:<10} {}",
                        r.kind,
                        r.name,
                        r.version,
                        r.api_version,
                        r.origin,
                        r.capabilities.join(",")
                    ))?;
                }
            }
        }
        PluginsCommand::Test { fixtures } => return test_plugins(&libs.paths, fixtures.as_deref()),
    }
    Ok(ExitCode::SUCCESS)
}

/// `aero-host plugins test`: the conformance suite against every library plugin, run by
/// `aero-plugin-check` (beside this executable, else on `PATH`), which counts allocations for
/// the allocation bound. Each library is tested on its own, so one that shares a built-in's
/// name can be tested too.
fn test_plugins(libraries: &[PathBuf], fixtures: Option<&Path>) -> Result<ExitCode> {
    const CHECKER: &str = "aero-plugin-check";
    if libraries.is_empty() {
        bail!("no plugin to test: pass --plugin PATH (a format plugin library)");
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(CHECKER)))
        .filter(|path| path.is_file());
    let mut command = std::process::Command::new(beside.as_deref().unwrap_or(Path::new(CHECKER)));
    if let Some(dir) = fixtures {
        command.arg("--fixtures").arg(dir);
    }
    let output = command
        .args(libraries)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::piped())
        .output()
        .with_context(|| {
            format!(
                "running {CHECKER}, which plugins test needs beside aero-host or on PATH \
                 (install it with: cargo install --path plugin-testkit --bin {CHECKER})"
            )
        })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => Ok(ExitCode::SUCCESS),
        Some(1) => Ok(ExitCode::FAILURE),
        Some(2) => Err(anyhow!("{}", stderr.trim_end())),
        _ => Err(anyhow!(
            "{CHECKER} failed ({}): {}",
            output.status,
            stderr.trim_end()
        )),
    }
}

/// The async runtime; `AERO_TOKIO_WORKER_THREADS` sizes it.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Ok(threads) = std::env::var("AERO_TOKIO_WORKER_THREADS") {
        match threads.parse::<usize>() {
            Ok(n) if n > 0 => {
                builder.worker_threads(n);
            }
            _ => tracing::warn!("AERO_TOKIO_WORKER_THREADS='{threads}' is not a positive integer; using the default"),
        }
    }
    builder
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn pick_storage(
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

fn print_summary(summary: &PublishSummary, json: bool) -> Result<()> {
    if json {
        out(serde_json::to_string(summary)?)?;
    } else {
        eprintln!(
            "published {} version {} to {} ({} chunks, {} zero, {} already stored; {} bytes read, {} uploaded, {:.2}s)",
            summary.image_id,
            summary.version,
            summary.manifest_key,
            summary.chunk_count,
            summary.zero_chunks,
            summary.skipped_chunks,
            summary.bytes_read,
            summary.bytes_uploaded,
            summary.seconds
        );
    }
    Ok(())
}

fn print_report(report: &VerifyReport, json: bool) -> Result<()> {
    if json {
        out(serde_json::to_string(report)?)?;
        return Ok(());
    }
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    for bad in &report.bad_chunks {
        eprintln!("bad chunk {} ({}): {}", bad.index, bad.key, bad.problem);
    }
    if report.ok() {
        out(format_args!(
            "Verified {}/{} chunks ({} bytes) in {:.2}s",
            report.checked_chunks, report.total_chunks, report.checked_bytes, report.seconds
        ))?;
    } else {
        out(format_args!(
            "FAILED: {} bad chunk(s); {} of {} chunks checked good",
            report.bad_chunks.len(),
            report.checked_chunks,
            report.total_chunks
        ))?;
    }
    Ok(())
}

async fn publish_one(
    catalogue: &PluginSet,
    storage: Arc<Storage>,
    args: &PublishArgs,
    quiet: bool,
) -> Result<PublishSummary> {
    args.validate()?;
    let opened = open_image(
        catalogue,
        &args.file,
        &args.format,
        args.allow_backing,
        &args.backing_roots,
    )?;
    publish_disk(
        storage,
        opened.disk,
        args.plan(),
        Arc::new(StderrProgress::new(quiet)),
    )
    .await
    .with_context(|| format!("publishing {}", args.file.display()))
}

fn storage_for(catalogue: &PluginSet, spec: &StorageSpec, retries: usize) -> Result<Arc<Storage>> {
    let policy = StoragePolicy {
        attempts: retries.max(1),
        ..StoragePolicy::default()
    };
    Ok(Arc::new(open_storage(catalogue, spec, policy)?))
}

/// `aero-host publish`.
pub fn publish(
    cmd: PublishCommand,
    cli_storage: Option<&str>,
    libs: &LibrarySelection,
) -> Result<ExitCode> {
    let catalogue = PluginSet::load(libs)?;
    let spec = pick_storage(cli_storage, cmd.s3.spec()?, None)?;
    let storage = storage_for(&catalogue, &spec, cmd.args.retries)?;
    runtime()?.block_on(async {
        let summary = publish_one(&catalogue, Arc::clone(&storage), &cmd.args, cmd.json).await?;
        print_summary(&summary, cmd.json)?;
        if cmd.verify {
            let report = verify_published(&storage, &summary, None, &cmd.args).await?;
            print_report(&report, cmd.json)?;
            if !report.ok() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn verify_published(
    storage: &Arc<Storage>,
    summary: &PublishSummary,
    sample: Option<u64>,
    args: &PublishArgs,
) -> Result<VerifyReport> {
    let source = VerifySource::Storage {
        storage: Arc::clone(storage),
        prefix: None,
        manifest_key: Some(summary.manifest_key.clone()),
    };
    let options = VerifyOptions {
        image_id: Some(summary.image_id.clone()),
        image_version: Some(summary.version.clone()),
        concurrency: args.concurrency,
        retries: args.retries,
        max_chunks: aero_chunked::publish::MAX_CHUNKS,
        chunk_sample: sample,
        chunk_sample_seed: None,
    };
    Ok(verify_image(source, &options).await?)
}

fn parse_header(raw: &str) -> Result<(String, String)> {
    let (name, value) = raw
        .split_once(':')
        .ok_or_else(|| anyhow!("--header '{raw}' must look like 'Name: value'"))?;
    let (name, value) = (name.trim(), value.trim());
    reqwest::header::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| anyhow!("--header '{raw}': invalid header name"))?;
    reqwest::header::HeaderValue::from_str(value)
        .map_err(|_| anyhow!("--header '{raw}': invalid header value"))?;
    Ok((name.to_string(), value.to_string()))
}

/// `aero-host verify`.
pub fn verify(
    args: VerifyArgs,
    cli_storage: Option<&str>,
    libs: &LibrarySelection,
) -> Result<ExitCode> {
    let options = VerifyOptions {
        image_id: args.image_id.clone(),
        image_version: args.image_version.clone(),
        concurrency: args.concurrency,
        retries: args.retries,
        max_chunks: args.max_chunks,
        chunk_sample: args.chunk_sample,
        chunk_sample_seed: args.chunk_sample_seed,
    };
    if !args.headers.is_empty() && args.manifest_url.is_none() {
        bail!("--header is only valid with --manifest-url");
    }
    let source = if let Some(url) = &args.manifest_url {
        if cli_storage.is_some() || args.s3.spec()?.is_some() {
            bail!("--manifest-url cannot be combined with --storage or --bucket");
        }
        let url = url::Url::parse(url)
            .with_context(|| format!("--manifest-url '{url}' is not a valid URL"))?;
        let headers = args
            .headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<_>>()?;
        VerifySource::Http { url, headers }
    } else if let Some(file) = &args.manifest_file {
        if cli_storage.is_some() || args.s3.spec()?.is_some() {
            bail!("--manifest-file cannot be combined with --storage or --bucket");
        }
        VerifySource::File(file.clone())
    } else {
        let catalogue = PluginSet::load(libs)?;
        let spec = pick_storage(cli_storage, args.s3.spec()?, None)?;
        if args.prefix.is_none() && args.manifest_key.is_none() {
            bail!("verifying from storage needs --prefix or --manifest-key");
        }
        VerifySource::Storage {
            storage: storage_for(&catalogue, &spec, args.retries)?,
            prefix: args.prefix.clone(),
            manifest_key: args.manifest_key.clone(),
        }
    };
    runtime()?.block_on(async {
        let report = verify_image(source, &options).await?;
        print_report(&report, args.json)?;
        Ok(if report.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

/// `aero-host run CONFIG`: every publish, then the verifications.
pub fn run(
    path: &Path,
    cli_storage: Option<&str>,
    json: bool,
    libs: &LibrarySelection,
) -> Result<ExitCode> {
    let config = Config::load(path)?;
    let mut libs = libs.clone();
    libs.paths.extend(config.plugins.paths.iter().cloned());
    libs.dir = config.plugins.dir.clone();
    libs.prefer_library = config.plugins.prefer_library.clone();
    let catalogue = PluginSet::load(&libs)?;
    let spec = pick_storage(cli_storage, None, config.storage_spec(&catalogue)?)?;
    // One store for every job and the server (so `memory` works), each with its own policy.
    let storage = open_storage(&catalogue, &spec, StoragePolicy::default())?;
    let for_job = |job: &PublishJob| {
        Arc::new(with_policy(
            &storage,
            StoragePolicy {
                attempts: job.args.retries.max(1),
                ..StoragePolicy::default()
            },
        ))
    };
    runtime()?.block_on(async {
        let mut published = Vec::new();
        for job in &config.publish {
            let summary = publish_one(&catalogue, for_job(job), &job.args, json).await?;
            print_summary(&summary, json)?;
            published.push((job, summary));
        }
        let mut failed = false;
        for (job, summary) in &published {
            if !job.verify {
                continue;
            }
            let report =
                verify_published(&for_job(job), summary, job.verify_chunk_sample, &job.args)
                    .await?;
            print_report(&report, json)?;
            failed |= !report.ok();
        }
        if let (false, Some(args)) = (failed, &config.serve) {
            let storage = Arc::new(with_policy(&storage, serve::storage_policy()));
            serve::run(storage, args.clone()).await?;
        }
        Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}
