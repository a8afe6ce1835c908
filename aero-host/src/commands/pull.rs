//! `aero-host pull`: a published image into a local disk file, through the shared chunk cache.

use super::images::{find_image, is_catalog_reference, CatalogImage};
use super::storage_for;
use super::verify::parse_header;
use crate::cli::PullArgs;
use crate::config::pick_storage;
use crate::output::{print_pull_summary, StderrProgress};
use crate::runtime::runtime;
use aero_chunk_cache::ChunkCache;
use aero_chunked::format::ManifestLimits;
use aero_chunked::resolve::{resolve, Locator, Resolved};
use aero_chunked::source::HttpSource;
use aero_plugin_api::backend::Storage;
use aero_plugin_host::{LibrarySelection, PluginSet};
use aero_pull::state::with_suffix;
use aero_pull::{pull, PullOptions, PullSummary};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// `aero-host pull`.
pub fn command(
    args: PullArgs,
    cli_storage: Option<&str>,
    libs: &LibrarySelection,
) -> Result<ExitCode> {
    let plugins = PluginSet::load(libs)?;
    let storage = match (cli_storage, args.s3.spec()?) {
        (None, None) => None,
        (cli, s3) => Some(storage_for(
            &plugins,
            &pick_storage(cli, s3, None)?,
            args.retries,
        )?),
    };
    runtime()?.block_on(async {
        let summary = pull_job(&plugins, &args, storage).await?;
        print_pull_summary(&summary, args.json)
    })?;
    Ok(ExitCode::SUCCESS)
}

/// One pull (of `aero-host pull` or a `[[pull]]` job); `storage` is where a prefix is read.
pub(crate) async fn pull_job(
    plugins: &PluginSet,
    args: &PullArgs,
    storage: Option<Arc<Storage>>,
) -> Result<PullSummary> {
    let cache = open_cache(args)?;
    let (locator, disk_sha256) = match locator(args, storage)? {
        Some(locator) => (locator, None),
        None => match find_image(&args.catalog, &args.source, args.arch.as_deref()).await? {
            CatalogImage::Chunked {
                manifest,
                disk_sha256,
            } => (http_locator(&manifest, args)?, disk_sha256),
            CatalogImage::Disk(image) => return pull_disk_file(plugins, &image, args).await,
            CatalogImage::Archive(image) => return pull_archive(&image, args).await,
        },
    };
    let limits = ManifestLimits {
        max_chunks: args.max_chunks,
    };
    let resolved = resolve(locator, limits).await?;
    check_identity(&resolved, args)?;
    pull_to(plugins, &resolved, args, cache, disk_sha256).await
}

/// A manifest URL with `--header`s and retries.
fn http_locator(url: &str, args: &PullArgs) -> Result<Locator> {
    let url = url::Url::parse(url).with_context(|| format!("'{url}' is not a valid URL"))?;
    let headers = args
        .headers
        .iter()
        .map(|h| parse_header(h))
        .collect::<Result<_>>()?;
    Ok(Locator::Url(HttpSource::new(
        url,
        headers,
        args.retries.max(1),
    )?))
}

/// Where the manifest is: a URL, a storage prefix, or a local file; `None` for a catalog
/// reference.
fn locator(args: &PullArgs, storage: Option<Arc<Storage>>) -> Result<Option<Locator>> {
    let storage_given = storage.is_some();
    let is_url = args.source.starts_with("http://") || args.source.starts_with("https://");
    if !args.headers.is_empty() && !is_url {
        bail!("--header is only valid with a manifest URL");
    }
    if is_url {
        if storage_given {
            bail!("a manifest URL cannot be combined with --storage or --bucket");
        }
        return http_locator(&args.source, args).map(Some);
    }
    if let Some(storage) = storage {
        return Ok(Some(Locator::Prefix {
            storage,
            prefix: args.source.clone(),
            image_id: args.image_id.clone(),
            version: args.image_version.clone(),
        }));
    }
    let path = PathBuf::from(&args.source);
    if path.is_file() {
        return Ok(Some(Locator::File(path)));
    }
    if !is_catalog_reference(&args.source) {
        bail!(
            "'{}' is neither a manifest URL nor an existing manifest file (a storage prefix needs --storage)",
            args.source
        );
    }
    Ok(None)
}

/// `--image-id` and `--image-version` against the manifest found.
fn check_identity(resolved: &Resolved, args: &PullArgs) -> Result<()> {
    let manifest = &resolved.manifest;
    if let Some(id) = args
        .image_id
        .as_ref()
        .filter(|id| **id != manifest.image_id)
    {
        bail!(
            "{}: imageId is '{}', expected '{id}'",
            resolved.location,
            manifest.image_id
        );
    }
    if let Some(v) = args
        .image_version
        .as_ref()
        .filter(|v| **v != manifest.version)
    {
        bail!(
            "{}: version is '{}', expected '{v}'",
            resolved.location,
            manifest.version
        );
    }
    Ok(())
}

/// The chunk cache `--cache-dir`/`--no-cache` select; by default under the user's cache
/// directory.
fn open_cache(args: &PullArgs) -> Result<Option<Arc<ChunkCache>>> {
    if args.no_cache {
        return Ok(None);
    }
    let dir = match &args.cache_dir {
        Some(dir) => dir.clone(),
        None => ChunkCache::default_dir(&user_cache_dir()?),
    };
    let cache = ChunkCache::open(&dir, args.cache_max_bytes)
        .with_context(|| format!("opening the chunk cache {}", dir.display()))?;
    Ok(Some(Arc::new(cache)))
}

/// `$XDG_CACHE_HOME`, else `$HOME/.cache`.
pub(crate) fn user_cache_dir() -> Result<PathBuf> {
    let from_env = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    from_env("XDG_CACHE_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| from_env("HOME").map(|home| home.join(".cache")))
        .ok_or_else(|| {
            anyhow!(
                "no cache directory: set XDG_CACHE_HOME or HOME, or pass --cache-dir or --no-cache"
            )
        })
}

/// Pulls into `OUT` as raw, or as raw beside it and then converted with the format's writer.
pub(crate) async fn pull_to(
    plugins: &PluginSet,
    resolved: &Resolved,
    args: &PullArgs,
    cache: Option<Arc<ChunkCache>>,
    disk_sha256: Option<String>,
) -> Result<PullSummary> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.{}", resolved.manifest.image_id, args.to)));
    let options = PullOptions {
        concurrency: args.concurrency,
        attempts: args.retries,
        cache,
        dry_run: args.dry_run,
        disk_sha256,
    };
    let progress = StderrProgress::new(args.json);
    if args.to == "raw" {
        return pull(resolved, &out, &options, &progress)
            .await
            .with_context(|| format!("pulling {} to {}", resolved.location, out.display()));
    }
    let raw = raw_stage_path(&out);
    let mut summary = pull(resolved, &raw, &options, &progress)
        .await
        .with_context(|| format!("pulling {} to {}", resolved.location, raw.display()))?;
    if !args.dry_run {
        convert_raw(plugins, &raw, &out, &args.to)?;
        std::fs::remove_file(&raw).with_context(|| format!("removing {}", raw.display()))?;
    }
    summary.out = out.display().to_string();
    Ok(summary)
}

/// The raw file a pull `--to FORMAT` writes first: `OUT.pull.raw`.
fn raw_stage_path(out: &Path) -> PathBuf {
    with_suffix(out, ".pull.raw")
}

/// Converts the pulled raw file to `target` with the format's writer (which never leaves a
/// file at `out` that looks complete).
fn convert_raw(plugins: &PluginSet, raw: &Path, out: &Path, target: &str) -> Result<()> {
    let disk = super::open_image(plugins, raw, "raw", false, &[])?;
    let format = plugins
        .formats()
        .require(target)
        .map_err(|e| anyhow!("{e}"))?;
    let writer = format
        .writer()
        .ok_or_else(|| anyhow!("format '{target}' cannot write images"))?;
    writer
        .write(disk.disk.as_ref(), out)
        .map_err(|e| anyhow!("writing {}: {e}", out.display()))?;
    Ok(())
}

/// The sha256 of a catalog's file at `url`: given, or looked up in its checksum list.
async fn file_sha256(url: &str, checksum: aero_catalog::Checksum<'_>) -> Result<String> {
    Ok(match checksum {
        aero_catalog::Checksum::Sha256(sha256) => sha256.to_string(),
        aero_catalog::Checksum::List(list) => aero_catalog::sha256_from_list(list, url)
            .await
            .with_context(|| format!("finding the sha256 of {url}"))?,
    })
}

/// The summary of a catalog file pull before anything is done.
fn file_summary(image: &aero_catalog::Image, out: &Path, args: &PullArgs) -> PullSummary {
    PullSummary {
        image_id: image.name.clone(),
        version: image.version.clone(),
        out: out.display().to_string(),
        dry_run: args.dry_run,
        ..PullSummary::default()
    }
}

/// Downloads `url` to `download` (resuming a partial one), checked against `sha256`; the bytes
/// fetched and resumed go into `summary`.
async fn download_counted(
    summary: &mut PullSummary,
    url: &str,
    download: &Path,
    sha256: &str,
) -> aero_pull::Result<()> {
    let fetched = aero_pull::download(url, download, sha256).await?;
    summary.bytes_downloaded = fetched.bytes_downloaded;
    summary.bytes_resumed = fetched.bytes_resumed;
    Ok(())
}

/// Pulls a catalog's plain disk file: downloaded to `OUT.pull.download` (resumed after an
/// interruption), checked against its sha256, then converted to a sparse raw `OUT`
/// (temporary name, renamed).
async fn pull_disk_file(
    plugins: &PluginSet,
    image: &aero_catalog::Image,
    args: &PullArgs,
) -> Result<PullSummary> {
    let started = std::time::Instant::now();
    let aero_catalog::ImageKind::Disk {
        url,
        format,
        checksum,
    } = image.kind().map_err(|e| anyhow!("{e}"))?
    else {
        bail!("{} is not a disk file", image.reference())
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.raw", image.name)));
    let mut summary = file_summary(image, &out, args);
    let context = || format!("pulling {} to {}", image.reference(), out.display());
    let sha256 = file_sha256(url, checksum).await.with_context(context)?;
    if args.dry_run {
        return Ok(summary);
    }
    let download = with_suffix(&out, ".pull.download");
    download_counted(&mut summary, url, &download, &sha256)
        .await
        .with_context(context)?;
    let converted = super::open_image(plugins, &download, format, false, &[]).and_then(|disk| {
        Ok(aero_chunked::sink::write_sparse_raw(
            disk.disk.as_ref(),
            &out,
        )?)
    });
    let _ = std::fs::remove_file(&download);
    summary.total_size = converted.with_context(context)?.virtual_size;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Pulls a catalog's `.tar.gz` archive into the directory `OUT` (default: the image's name):
/// downloaded to `OUT.download` (resumed after an interruption), checked against its sha256,
/// extracted by `aero_archive` (every entry checked, `OUT.part` renamed into place, a marker
/// holding the archive's sha256). An up-to-date `OUT` is a no-op.
async fn pull_archive(image: &aero_catalog::Image, args: &PullArgs) -> Result<PullSummary> {
    let started = std::time::Instant::now();
    let aero_catalog::ImageKind::Archive { url, checksum } =
        image.kind().map_err(|e| anyhow!("{e}"))?
    else {
        bail!("{} is not an archive", image.reference())
    };
    if args.to != "raw" {
        bail!(
            "--to does not apply to {}, an archive extracted into a directory",
            image.reference()
        );
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(&image.name));
    let mut summary = file_summary(image, &out, args);
    let context = || format!("pulling {} into {}", image.reference(), out.display());
    let sha256 = file_sha256(url, checksum).await.with_context(context)?;
    if aero_archive::is_extracted(&out, &sha256) {
        summary.up_to_date = true;
    } else if !args.dry_run {
        let download = with_suffix(&out, ".download");
        download_counted(&mut summary, url, &download, &sha256)
            .await
            .with_context(context)?;
        let limits = aero_archive::Limits {
            max_bytes: args.max_archive_bytes,
            max_entries: args.max_archive_entries,
        };
        let (archive, dir) = (download.clone(), out.clone());
        let extracted = tokio::task::spawn_blocking(move || {
            aero_archive::extract(&archive, &sha256, &dir, &limits)
        })
        .await
        .map_err(|e| anyhow!("the extracting thread failed: {e}"))?;
        let _ = std::fs::remove_file(&download);
        let extracted = extracted.with_context(context)?;
        summary.up_to_date = extracted.up_to_date;
        summary.total_size = extracted.bytes;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}
