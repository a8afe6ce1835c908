//! `aero-host nbd`: one image exported over NBD until SIGTERM or Ctrl-C, then the counters.

use super::images::{find_image, is_catalog_reference, CatalogImage};
use super::{open_image, storage_for};
use crate::cli::NbdArgs;
use crate::commands::verify::parse_header;
use crate::config::pick_storage;
use crate::output::out;
use crate::runtime::runtime;
use aero_chunk_cache::ChunkCache;
use aero_chunked::format::ManifestLimits;
use aero_chunked::layout::MANIFEST_NAME;
use aero_chunked::resolve::{resolve, Locator};
use aero_chunked::source::HttpSource;
use aero_nbd::{
    ChunkedExport, ChunkedSettings, DiskExport, Export, Listener, Metrics, Server, Settings,
};
use aero_plugin_host::{LibrarySelection, PluginSet};
use anyhow::{anyhow, bail, Context, Result};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// `aero-host nbd`.
pub fn command(
    args: NbdArgs,
    cli_storage: Option<&str>,
    libs: &LibrarySelection,
) -> Result<ExitCode> {
    let plugins = PluginSet::load(libs)?;
    let metrics = Arc::new(Metrics::default());
    let started = Instant::now();
    runtime()?.block_on(async {
        let (export, name) = open_export(&args, cli_storage, &plugins, &metrics).await?;
        let settings = Settings {
            export_name: args.export_name.clone().unwrap_or(name),
            max_connections: args.max_connections,
            max_request_bytes: args.max_request_bytes,
            max_in_flight: args.max_in_flight,
            max_buffer_bytes: args.max_buffer_bytes,
            handshake_timeout: Duration::from_secs(args.handshake_timeout_secs),
            send_timeout: Duration::from_secs(args.send_timeout_secs),
            min_block_size: args.min_block_size,
        };
        settings.validate().map_err(|e| anyhow!("nbd: {e}"))?;
        let (listener, address) = listen(&args).await?;
        eprintln!(
            "aero-host nbd: exporting '{}' ({} bytes) on {address}",
            settings.export_name,
            export.size()
        );
        let size = export.size();
        let export_name = settings.export_name.clone();
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        Server::new(export, settings, Arc::clone(&metrics))
            .run(listener, shutdown)
            .await
            .context("serving NBD")?;
        let counters = metrics.snapshot();
        if args.json {
            let mut summary = serde_json::to_value(&counters)?;
            let fields = summary.as_object_mut().expect("an object");
            fields.insert("source".into(), args.source.clone().into());
            fields.insert("export".into(), export_name.into());
            fields.insert("size".into(), size.into());
            fields.insert("seconds".into(), started.elapsed().as_secs_f64().into());
            out(serde_json::to_string(&summary)?)?;
        } else {
            eprintln!(
                "aero-host nbd: stopped after {} connections, {} requests: {} bytes served, {} chunks fetched ({} bytes), {} cache hits, {} verification failures",
                counters.connections,
                counters.requests,
                counters.bytes_served,
                counters.chunks_fetched,
                counters.bytes_fetched,
                counters.cache_hits,
                counters.verification_failures
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The export SOURCE names, and its default name.
async fn open_export(
    args: &NbdArgs,
    cli_storage: Option<&str>,
    plugins: &PluginSet,
    metrics: &Arc<Metrics>,
) -> Result<(Arc<dyn Export>, String)> {
    let source = args.source.as_str();
    if !args.headers.is_empty() && !is_url(source) {
        bail!("--header is only valid with a manifest URL");
    }
    let locator = if is_url(source) {
        if cli_storage.is_some() {
            bail!("a manifest URL cannot be combined with --storage");
        }
        let url = url::Url::parse(source)
            .with_context(|| format!("SOURCE '{source}' is not a valid URL"))?;
        let headers = args
            .headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<_>>()?;
        Locator::Url(HttpSource::new(url, headers, args.retries)?)
    } else if let Some(uri) = cli_storage {
        let spec = pick_storage(Some(uri), None, None)?;
        Locator::Prefix {
            storage: storage_for(plugins, &spec, args.retries)?,
            prefix: source.to_string(),
            image_id: None,
            version: args.image_version.clone(),
        }
    } else {
        let path = Path::new(source);
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && is_catalog_reference(source) => {
                return catalog_export(args, metrics).await;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "SOURCE '{source}' is not a URL, a catalog reference NAME[:VERSION], nor an \
                 existing file or directory (a storage prefix needs --storage)"
            ),
            Err(e) => bail!("reading SOURCE '{source}': {e}"),
        };
        let manifest = if meta.is_dir() {
            path.join(MANIFEST_NAME)
        } else {
            path.to_path_buf()
        };
        if meta.is_dir() || path.file_name().is_some_and(|n| n == MANIFEST_NAME) {
            Locator::File(manifest)
        } else {
            let opened = open_image(
                plugins,
                path,
                &args.format,
                args.allow_backing,
                &args.backing_roots,
            )
            .with_context(|| format!("opening {source}"))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Ok((Arc::new(DiskExport::new(opened.disk)), name));
        }
    };
    chunked_export(args, locator, metrics).await
}

/// The published image a catalog reference names (its whole-disk `sha256`, if any, is not
/// checked: the export never reads the whole disk; every chunk is verified as it is read).
async fn catalog_export(
    args: &NbdArgs,
    metrics: &Arc<Metrics>,
) -> Result<(Arc<dyn Export>, String)> {
    let source = args.source.as_str();
    match find_image(&args.catalog, source, args.arch.as_deref()).await? {
        CatalogImage::Chunked { manifest, .. } => {
            let url = url::Url::parse(&manifest).with_context(|| {
                format!("catalog image {source}: manifest '{manifest}' is not a valid URL")
            })?;
            let locator = Locator::Url(HttpSource::new(url, Vec::new(), args.retries)?);
            chunked_export(args, locator, metrics).await
        }
        CatalogImage::Disk(image) => bail!(
            "catalog image {} is a plain disk file, not a published chunked image: `aero-host \
             pull` it, then export the pulled file",
            image.reference()
        ),
        CatalogImage::Archive(image) => bail!(
            "catalog image {} is a .tar.gz archive, not a disk image: it cannot be exported",
            image.reference()
        ),
    }
}

/// The lazy, verified export of the chunked image `locator` finds.
async fn chunked_export(
    args: &NbdArgs,
    locator: Locator,
    metrics: &Arc<Metrics>,
) -> Result<(Arc<dyn Export>, String)> {
    let source = args.source.as_str();
    let limits = ManifestLimits::default();
    let resolved = resolve(locator, limits)
        .await
        .with_context(|| format!("resolving {source}"))?;
    let cache = chunk_cache(args)?;
    let settings = ChunkedSettings {
        readahead: args.readahead,
        concurrency: args.concurrency,
        memory_cache_bytes: args.memory_cache_bytes,
        attempts: args.retries,
    };
    let name = resolved.manifest.image_id.clone();
    let export = ChunkedExport::new(
        resolved.manifest,
        resolved.source,
        cache,
        settings,
        Arc::clone(metrics),
    )
    .map_err(|e| anyhow!("nbd: {e}"))?;
    Ok((Arc::new(export), name))
}

fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// The shared chunk cache `--cache-dir` names (`none`: none), by default the user's.
fn chunk_cache(args: &NbdArgs) -> Result<Option<Arc<ChunkCache>>> {
    let dir = match args.cache_dir.as_deref() {
        Some("none") => return Ok(None),
        Some(dir) => PathBuf::from(dir),
        None => {
            let user = std::env::var_os("XDG_CACHE_HOME")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .ok_or_else(|| anyhow!("no cache directory: set --cache-dir, XDG_CACHE_HOME or HOME, or pass --cache-dir none"))?;
            ChunkCache::default_dir(&user)
        }
    };
    let cache = ChunkCache::open(&dir, args.cache_max_bytes)
        .with_context(|| format!("opening the chunk cache {}", dir.display()))?;
    Ok(Some(Arc::new(cache)))
}

/// Binds `--listen` or `--unix`; the address as a client would write it.
async fn listen(args: &NbdArgs) -> Result<(Listener, String)> {
    if let Some(path) = &args.unix {
        // A socket left by a killed server is replaced; any other file is not touched.
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                bail!("--unix {}: exists and is not a socket", path.display());
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing the stale socket {}", path.display()))?;
        }
        let listener = tokio::net::UnixListener::bind(path)
            .with_context(|| format!("listening on {}", path.display()))?;
        let address = format!("nbd+unix:///?socket={}", path.display());
        return Ok((Listener::Unix(listener, path.clone()), address));
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let address = format!("nbd://{}", listener.local_addr()?);
    Ok((Listener::Tcp(listener), address))
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install the signal handlers; stop the server with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    shutdown.cancel();
}
