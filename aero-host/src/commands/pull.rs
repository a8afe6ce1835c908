//! `aero-host pull`: a published image into a local disk file, through the shared chunk cache.

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
use aero_plugin_host::{LibrarySelection, PluginSet};
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
    let locator = locator(&args, cli_storage, &plugins)?;
    let cache = open_cache(&args)?;
    runtime()?.block_on(async {
        let limits = ManifestLimits {
            max_chunks: args.max_chunks,
        };
        let resolved = resolve(locator, limits).await?;
        check_identity(&resolved, &args)?;
        let summary = pull_to(&plugins, &resolved, &args, cache).await?;
        print_pull_summary(&summary, args.json)?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Where the manifest is: a URL, a storage prefix, or a local file.
fn locator(args: &PullArgs, cli_storage: Option<&str>, plugins: &PluginSet) -> Result<Locator> {
    let storage_given = cli_storage.is_some() || args.s3.spec()?.is_some();
    let is_url = args.source.starts_with("http://") || args.source.starts_with("https://");
    if !args.headers.is_empty() && !is_url {
        bail!("--header is only valid with a manifest URL");
    }
    if is_url {
        if storage_given {
            bail!("a manifest URL cannot be combined with --storage or --bucket");
        }
        let url = url::Url::parse(&args.source)
            .with_context(|| format!("'{}' is not a valid URL", args.source))?;
        let headers = args
            .headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<_>>()?;
        return Ok(Locator::Url(HttpSource::new(
            url,
            headers,
            args.retries.max(1),
        )?));
    }
    if storage_given {
        let spec = pick_storage(cli_storage, args.s3.spec()?, None)?;
        return Ok(Locator::Prefix {
            storage: storage_for(plugins, &spec, args.retries)?,
            prefix: args.source.clone(),
            image_id: args.image_id.clone(),
            version: args.image_version.clone(),
        });
    }
    let path = PathBuf::from(&args.source);
    if path.is_file() {
        return Ok(Locator::File(path));
    }
    bail!(
        "'{}' is neither a manifest URL, nor a local manifest file, nor (without --storage) a prefix",
        args.source
    )
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
fn user_cache_dir() -> Result<PathBuf> {
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
    let mut name = out.as_os_str().to_owned();
    name.push(".pull.raw");
    PathBuf::from(name)
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
