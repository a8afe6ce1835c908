//! `aero-host verify`: a published image from storage, a URL or a local manifest.

use super::storage_for;
use crate::cli::VerifyArgs;
use crate::config::pick_storage;
use crate::output::print_report;
use crate::runtime::runtime;
use aero_chunked::verify::{verify as verify_image, VerifyOptions, VerifySource};
use aero_plugin_host::{LibrarySelection, PluginSet};
use anyhow::{anyhow, bail, Context, Result};
use std::process::ExitCode;

/// `aero-host verify`.
pub fn command(
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
        let plugins = PluginSet::load(libs)?;
        let spec = pick_storage(cli_storage, args.s3.spec()?, None)?;
        if args.prefix.is_none() && args.manifest_key.is_none() {
            bail!("verifying from storage needs --prefix or --manifest-key");
        }
        VerifySource::Storage {
            storage: storage_for(&plugins, &spec, args.retries)?,
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

/// A `--header "Name: value"` checked as an HTTP header.
pub(crate) fn parse_header(raw: &str) -> Result<(String, String)> {
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
