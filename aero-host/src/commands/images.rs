//! `aero-host images ls|sync`: the catalog's registry and its local copy.

use crate::cli::{CatalogArgs, ImagesCommand};
use crate::output::out;
use crate::runtime::runtime;
use aero_catalog::{load, sync, Registry};
use anyhow::{anyhow, Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;

/// `aero-host images`.
pub fn command(cmd: ImagesCommand) -> Result<ExitCode> {
    runtime()?.block_on(async {
        match cmd {
            ImagesCommand::Ls {
                catalog,
                arch,
                json,
            } => {
                let registry = registry(&catalog).await?;
                let images: Vec<_> = registry.for_arch(arch.as_deref()).collect();
                if json {
                    out(serde_json::to_string(&images)?)?;
                } else {
                    for i in images {
                        out(format_args!(
                            "{}:{}\t{}\t{}\t{}",
                            i.name,
                            i.version,
                            i.arch.as_deref().unwrap_or("any"),
                            i.released_at.as_deref().unwrap_or("-"),
                            i.description.as_deref().unwrap_or("")
                        ))?;
                    }
                }
            }
            ImagesCommand::Sync { catalog } => {
                let source = catalog
                    .registry
                    .clone()
                    .ok_or_else(|| anyhow!("images sync needs --registry (or AERO_REGISTRY)"))?;
                let local = local_copy(&catalog)?;
                let outcome = sync(&[source], &local)
                    .await
                    .map_err(|e| anyhow!("{e}; the last good copy {} is kept", local.display()))?;
                for w in &outcome.warnings {
                    eprintln!("warning: {w}");
                }
                eprintln!(
                    "synced {} images from {} to {}",
                    outcome.images,
                    outcome.source,
                    local.display()
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The registry `--registry` names, else the local copy; warnings go to stderr.
pub async fn registry(catalog: &CatalogArgs) -> Result<Registry> {
    let location = match &catalog.registry {
        Some(r) => r.clone(),
        None => {
            let local = local_copy(catalog)?;
            if !local.is_file() {
                return Err(anyhow!(
                    "no registry: pass --registry URL|PATH, or run `aero-host images sync --registry …` to keep a local copy at {}",
                    local.display()
                ));
            }
            local.display().to_string()
        }
    };
    let registry = load(&location).await?;
    for w in &registry.warnings {
        eprintln!("warning: {w}");
    }
    Ok(registry)
}

/// What a catalog reference names.
pub(crate) enum CatalogImage {
    /// A published chunked image, and the digest of its whole disk when the catalog gives it.
    Chunked {
        manifest: String,
        disk_sha256: Option<String>,
    },
    /// A plain disk file.
    Disk(aero_catalog::Image),
    /// A `.tar.gz` archive.
    Archive(aero_catalog::Image),
}

/// Whether a SOURCE that is no URL and no existing file reads as a catalog reference
/// `NAME[:VERSION]`: not empty, no path separator, not a manifest file name.
pub(crate) fn is_catalog_reference(source: &str) -> bool {
    !source.is_empty() && !source.contains('/') && !source.ends_with(".json")
}

/// The entry `NAME[:VERSION]` names in the registry `catalog` selects, for `arch` (default:
/// the host's architecture). `pull` and `nbd` resolve catalog references here.
pub(crate) async fn find_image(
    catalog: &CatalogArgs,
    reference: &str,
    arch: Option<&str>,
) -> Result<CatalogImage> {
    let registry = registry(catalog)
        .await
        .with_context(|| format!("catalog reference '{reference}'"))?;
    let (name, version) = match reference.split_once(':') {
        Some((name, version)) => (name, Some(version)),
        None => (reference, None),
    };
    let arch = arch.unwrap_or(std::env::consts::ARCH);
    let image = registry.find(name, version, arch)?;
    Ok(match image.kind().map_err(|e| anyhow!("{e}"))? {
        aero_catalog::ImageKind::Chunked { manifest } => CatalogImage::Chunked {
            manifest: manifest.to_string(),
            disk_sha256: image.sha256.clone(),
        },
        aero_catalog::ImageKind::Disk { .. } => CatalogImage::Disk(image.clone()),
        aero_catalog::ImageKind::Archive { .. } => CatalogImage::Archive(image.clone()),
    })
}

/// The local copy of the registry: `<catalog dir>/registry.toml`.
pub(crate) fn local_copy(catalog: &CatalogArgs) -> Result<PathBuf> {
    let dir = match &catalog.catalog_dir {
        Some(d) => d.clone(),
        None => super::pull::user_cache_dir()?
            .join("aero-host")
            .join("catalog"),
    };
    Ok(dir.join("registry.toml"))
}
