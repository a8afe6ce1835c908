//! `aero-host run CONFIG`: every publish, then the verifications, then (with `[serve]`) the
//! server over the same store.

use super::{publish_one, verify_published};
use crate::config::{pick_storage, Config, PublishJob};
use crate::output::{print_report, print_summary};
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
    let spec = pick_storage(cli_storage, None, config.storage_spec(&plugins)?)?;
    // One store for every job and the server (so `memory` works), each with its own policy.
    let storage = open_storage(&plugins, &spec, StoragePolicy::default())?;
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
        if !failed {
            let serve = async {
                match &config.serve {
                    Some(serve) => {
                        let storage =
                            Arc::new(with_policy(&storage, super::serve::storage_policy()));
                        super::serve::run(storage, serve.clone()).await
                    }
                    None => Ok(()),
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
