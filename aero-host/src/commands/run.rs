//! `aero-host run CONFIG`: every publish, then the verifications, then the `[[pull]]` jobs,
//! then (with `[serve]`) the server over the same store and (with `[gateway]`) the gateway.

use super::{publish_one, verify_published};
use crate::cli::CatalogArgs;
use crate::config::{pick_storage, CatalogConfig, Config, PublishJob};
use crate::output::{print_pull_summary, print_report, print_summary};
use crate::runtime::runtime;
use aero_plugin_host::storage::{open_storage, with_policy, StoragePolicy};
use aero_plugin_host::{LibrarySelection, PluginSet};
use anyhow::Result;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// `aero-host run CONFIG`.
pub fn command(
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
    let plugins = PluginSet::load(&libs)?;
    // One store for every job and the server (so `memory` works), each with its own policy;
    // a config of `[[pull]]` jobs from URLs or a catalog needs none.
    let configured = config.storage_spec(&plugins)?;
    let needs_storage = !config.publish.is_empty() || config.serve.is_some();
    let storage = if needs_storage || cli_storage.is_some() || configured.is_some() {
        let spec = pick_storage(cli_storage, None, configured)?;
        Some(open_storage(&plugins, &spec, StoragePolicy::default())?)
    } else {
        None
    };
    let for_job = |job: &PublishJob| {
        Arc::new(with_policy(
            storage.as_ref().expect("publish jobs open the storage"),
            StoragePolicy {
                attempts: job.args.retries.max(1),
                ..StoragePolicy::default()
            },
        ))
    };
    runtime()?.block_on(async {
        let mut published = Vec::new();
        for job in &config.publish {
            let summary = publish_one(&plugins, for_job(job), &job.args, json).await?;
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
        if !failed && !config.pull.is_empty() {
            let storage = storage
                .as_ref()
                .map(|s| Arc::new(with_policy(s, StoragePolicy::default())));
            sync_catalog(&config.catalog).await;
            for job in &config.pull {
                let mut job = job.clone();
                job.json = json;
                if job.catalog.registry.is_none() && !local_copy_exists(&job.catalog)? {
                    job.catalog.registry = config.catalog.registry.clone();
                }
                let summary = super::pull::pull_job(&plugins, &job, storage.clone()).await?;
                print_pull_summary(&summary, json)?;
            }
        }
        if !failed {
            let serve = async {
                match (&config.serve, &storage) {
                    (Some(serve), Some(storage)) => {
                        let storage =
                            Arc::new(with_policy(storage, super::serve::storage_policy()));
                        super::serve::run(storage, serve.clone()).await
                    }
                    _ => Ok(()),
                }
            };
            let gateway = async {
                match &config.gateway {
                    // Flags do not exist here; the environment still wins over the file.
                    Some(table) => {
                        let settings = crate::gateway_args::GatewayArgs::from_env()
                            .over(table)
                            .resolve()?;
                        super::gateway::run(&plugins, settings).await
                    }
                    None => Ok(()),
                }
            };
            tokio::try_join!(serve, gateway)?;
        }
        Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}

/// Syncs the catalog's local copy when `auto_sync` is on and it is missing or older than
/// `max_age_hours`; a failed sync keeps the last good copy and says so.
async fn sync_catalog(catalog: &CatalogConfig) {
    let Some(registry) = &catalog.registry else {
        return;
    };
    let args = CatalogArgs {
        registry: None,
        catalog_dir: catalog.dir.clone(),
    };
    let Ok(local) = super::images::local_copy(&args) else {
        return;
    };
    let age = std::fs::metadata(&local)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok());
    let stale = age.is_none_or(|a| a.as_secs() > catalog.max_age_hours * 3600);
    if !catalog.auto_sync || !stale {
        return;
    }
    let sources: Vec<String> = std::iter::once(registry.clone())
        .chain(catalog.fallback_registries.iter().cloned())
        .collect();
    match aero_catalog::sync(&sources, &local).await {
        Ok(outcome) => eprintln!(
            "synced {} images from {} to {}",
            outcome.images,
            outcome.source,
            local.display()
        ),
        Err(e) => eprintln!(
            "warning: {e}; the last good copy {} is kept",
            local.display()
        ),
    }
}

/// Whether the local copy of the registry exists.
fn local_copy_exists(catalog: &CatalogArgs) -> Result<bool> {
    Ok(super::images::local_copy(catalog)?.is_file())
}
