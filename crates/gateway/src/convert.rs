//! The conversion jobs: a completed upload is read through ranged storage reads, its format
//! detected by the format plugins (backing files and external data files refused), published
//! as a chunked image (`<chunked_prefix><id>/<version>/` and `latest.json`), verified, and the
//! record set `ready` or `failed` with the reason. Jobs live in the database: an instance
//! claims one for a lease it keeps renewing, so a job whose instance died is taken over (and
//! the publish, which skips chunks already stored, resumes) once the lease lapses.

use crate::db::now_ms;
use crate::record::{ImageRecord, JobState, State};
use crate::source::ObjectSource;
use crate::Gateway;
use aero_chunked::format::LATEST_CACHE_CONTROL;
use aero_chunked::progress::NoProgress;
use aero_chunked::publish::{publish, Base, Checksum, ComputeVersion, PublishPlan, MAX_CHUNKS};
use aero_chunked::store::CacheControls;
use aero_chunked::verify::{verify, VerifyOptions, VerifySource};
use aero_plugin_api::ByteSource;
use aero_plugin_host::OpenOptions;
use std::sync::Arc;

/// Claims of one job before it is given up (an instance died during each).
pub const MAX_ATTEMPTS: i64 = 3;

/// Looks for queued jobs every `job_poll_interval` and runs up to `max_conversions` at once,
/// until `shutdown` completes.
pub async fn run_jobs(gateway: Arc<Gateway>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        if let Err(e) = claim_and_start(&gateway).await {
            tracing::warn!("looking for conversions: {e}");
        }
        tokio::select! {
            _ = tokio::time::sleep(gateway.settings.job_poll_interval) => {}
            _ = &mut shutdown => return,
        }
    }
}

async fn claim_and_start(gateway: &Arc<Gateway>) -> Result<(), crate::db::DbError> {
    let free = gateway.conversions.available_permits();
    if free == 0 {
        return Ok(());
    }
    let now = now_ms();
    for mut rec in gateway.db.claimable_jobs(now, free as i64).await? {
        let Ok(permit) = Arc::clone(&gateway.conversions).try_acquire_owned() else {
            break;
        };
        if rec.job_attempts >= MAX_ATTEMPTS {
            fail(
                gateway,
                &mut rec,
                format!("the conversion was interrupted {MAX_ATTEMPTS} times"),
            )
            .await;
            continue;
        }
        rec.job_owner = Some(gateway.instance.clone());
        rec.job_lease_until = Some(now + gateway.settings.job_lease.as_millis() as i64);
        rec.job_attempts += 1;
        match gateway.db.save(&mut rec).await {
            Ok(()) => {}
            Err(crate::db::DbError::Conflict(_)) => continue, // another instance claimed it
            Err(e) => return Err(e),
        }
        tracing::info!(image = %rec.id, attempt = rec.job_attempts, "conversion claimed");
        let gateway = Arc::clone(gateway);
        tokio::spawn(async move {
            run_one(&gateway, rec).await;
            drop(permit);
        });
    }
    Ok(())
}

/// What a successful conversion found.
struct Converted {
    format: String,
    disk_size: u64,
    version_prefix: String,
    manifest_key: String,
}

/// Runs one claimed job to its end, renewing the claim meanwhile.
async fn run_one(gateway: &Arc<Gateway>, mut rec: ImageRecord) {
    let id = rec.id.clone();
    let lease = gateway.settings.job_lease;
    let mut renew = tokio::time::interval(lease / 3);
    renew.tick().await;
    let snapshot = rec.clone();
    let job = convert(gateway, &snapshot);
    tokio::pin!(job);
    let outcome = loop {
        tokio::select! {
            outcome = &mut job => break outcome,
            _ = renew.tick() => {
                rec.job_lease_until = Some(now_ms() + lease.as_millis() as i64);
                if let Err(e) = gateway.db.save(&mut rec).await {
                    // Deleted or taken over meanwhile: stop without touching the record.
                    tracing::warn!(image = %id, "conversion stopped: renewing its claim: {e}");
                    return;
                }
            }
        }
    };
    match outcome {
        Ok(done) => {
            rec.state = State::Ready;
            rec.failure_reason = None;
            rec.disk_format = Some(done.format);
            rec.disk_size = Some(done.disk_size as i64);
            rec.chunked_prefix = Some(done.version_prefix);
            rec.chunked_manifest_key = Some(done.manifest_key);
            rec.job_state = JobState::Done;
            rec.job_owner = None;
            rec.job_lease_until = None;
            match gateway.db.save(&mut rec).await {
                Ok(()) => tracing::info!(image = %id, "conversion done: ready"),
                Err(e) => tracing::warn!(image = %id, "conversion done but not recorded: {e}"),
            }
        }
        Err(reason) => {
            tracing::warn!(image = %id, "conversion failed: {reason}");
            fail(gateway, &mut rec, reason).await;
        }
    }
}

async fn fail(gateway: &Gateway, rec: &mut ImageRecord, reason: String) {
    rec.state = State::Failed;
    rec.failure_reason = Some(reason);
    rec.job_state = JobState::Done;
    rec.job_owner = None;
    rec.job_lease_until = None;
    if let Err(e) = gateway.db.save(rec).await {
        tracing::warn!(image = %rec.id, "recording the failed conversion: {e}");
    }
}

/// Detects, publishes and verifies the upload of `rec`; the error is the reason shown.
async fn convert(gateway: &Arc<Gateway>, rec: &ImageRecord) -> Result<Converted, String> {
    let operator = gateway.storage.operator.clone();
    let len = operator
        .stat(&rec.source_key)
        .await
        .map_err(|e| format!("reading the uploaded object {}: {e}", rec.source_key))?
        .content_length();
    let source: Arc<dyn ByteSource> = Arc::new(ObjectSource::new(
        operator,
        rec.source_key.clone(),
        len,
        tokio::runtime::Handle::current(),
    ));
    let formats = gateway.formats.clone();
    // Never follow backing files: an upload must not make the server read its own files.
    let opened = tokio::task::spawn_blocking(move || {
        aero_plugin_host::open_source(&formats, source, None, &OpenOptions::default())
    })
    .await
    .map_err(|e| format!("opening the upload: {e}"))?
    .map_err(|e| e.to_string())?;
    let format = opened.format.name().to_string();
    let disk_size = opened.disk.capacity();
    let settings = &gateway.settings;
    let cache = settings.image_cache_control.header();
    let plan = PublishPlan {
        prefix: settings.chunked_prefix.clone(),
        image_id: Some(rec.id.clone()),
        image_version: Some(rec.version.clone()),
        compute_version: ComputeVersion::None,
        publish_latest: true,
        cache_control: CacheControls {
            chunks: cache.to_string(),
            manifest: cache.to_string(),
            latest: match settings.image_cache_control {
                crate::settings::ImageCacheControl::PrivateNoStore => cache.to_string(),
                crate::settings::ImageCacheControl::PublicImmutable => {
                    LATEST_CACHE_CONTROL.to_string()
                }
            },
        },
        chunk_size: settings.chunk_size,
        checksum: Checksum::Sha256,
        concurrency: settings.conversion_concurrency,
        no_meta: false,
        original_filename: "disk.img".into(),
        // A re-conversion of the same image copies the chunks it already has.
        base: Base::Auto,
    };
    // The visibility object goes first, so `serve` never sees this image without one (it
    // would read a missing object as public); the current record decides its value.
    let current = gateway
        .db
        .get(&rec.id)
        .await
        .map_err(|e| format!("reading the record: {e}"))?
        .map_or(rec.visibility, |r| r.visibility);
    aero_access::visibility::write(&gateway.storage, &settings.chunked_prefix, &rec.id, current)
        .await
        .map_err(|e| format!("writing the visibility object: {e}"))?;
    let summary = publish(
        Arc::clone(&gateway.storage),
        opened.disk,
        plan,
        Arc::new(NoProgress),
    )
    .await
    .map_err(|e| format!("converting the {format} upload: {e}"))?;
    let report = verify(
        VerifySource::Storage {
            storage: Arc::clone(&gateway.storage),
            prefix: None,
            manifest_key: Some(summary.manifest_key.clone()),
        },
        &VerifyOptions {
            image_id: Some(rec.id.clone()),
            image_version: Some(rec.version.clone()),
            concurrency: settings.conversion_concurrency,
            retries: 3,
            max_chunks: MAX_CHUNKS,
            chunk_sample: None,
            chunk_sample_seed: None,
        },
    )
    .await
    .map_err(|e| format!("verifying the converted image: {e}"))?;
    if !report.ok() {
        return Err(format!(
            "verifying the converted image: {} bad chunks",
            report.bad_chunks.len()
        ));
    }
    let version_prefix = summary
        .manifest_key
        .strip_suffix("manifest.json")
        .unwrap_or(&summary.manifest_key)
        .to_string();
    Ok(Converted {
        format,
        disk_size,
        version_prefix,
        manifest_key: summary.manifest_key,
    })
}
