//! One module per command; the helpers several of them share.

pub mod convert;
pub mod gateway;
pub mod images;
pub mod inspect;
pub mod nbd;
pub mod plugins;
pub mod publish;
pub mod pull;
pub mod run;
pub mod serve;
pub mod verify;

use crate::cli::{ImageArgs, PublishArgs};
use crate::output::StderrProgress;
use aero_chunked::publish::{publish as publish_disk, PublishSummary};
use aero_chunked::verify::{verify as verify_image, VerifyOptions, VerifyReport, VerifySource};
use aero_plugin_api::backend::Storage;
use aero_plugin_host::storage::{open_storage, StoragePolicy, StorageSpec};
use aero_plugin_host::{OpenOptions, OpenedDisk, PluginSet};
use anyhow::{anyhow, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Opens the image `args` name, with their options.
fn open_args(args: &ImageArgs, plugins: &PluginSet) -> Result<OpenedDisk> {
    open_image(
        plugins,
        &args.image,
        &args.format,
        args.allow_backing,
        &args.backing_roots,
    )
}

fn open_image(
    plugins: &PluginSet,
    image: &Path,
    format: &str,
    allow_backing: bool,
    backing_roots: &[PathBuf],
) -> Result<OpenedDisk> {
    let options = OpenOptions {
        allow_backing,
        backing_roots: backing_roots.to_vec(),
    };
    aero_plugin_host::open_path(plugins.formats(), image, Some(format), &options)
        .map_err(|e| anyhow!("{e}"))
}

/// The storage of `spec` with `retries` attempts per operation.
fn storage_for(plugins: &PluginSet, spec: &StorageSpec, retries: usize) -> Result<Arc<Storage>> {
    let policy = StoragePolicy {
        attempts: retries.max(1),
        ..StoragePolicy::default()
    };
    Ok(Arc::new(open_storage(plugins, spec, policy)?))
}

/// One publish, with progress on stderr (a bar unless `quiet`).
async fn publish_one(
    plugins: &PluginSet,
    storage: Arc<Storage>,
    args: &PublishArgs,
    quiet: bool,
) -> Result<PublishSummary> {
    args.validate()?;
    let opened = open_image(
        plugins,
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

/// Verifies what a publish just wrote (every chunk, or a sample).
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
