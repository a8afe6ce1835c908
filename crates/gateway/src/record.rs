//! An image record (SPEC 4.1 and 5.2) and its JSON view.

use aero_access::Visibility;
use serde_json::{json, Value};

/// Where an image is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Parts are being uploaded.
    Uploading,
    /// The upload is complete; the conversion is queued or running.
    Processing,
    /// Converted, verified and streamable.
    Ready,
    /// The upload was aborted or the conversion failed (`failure_reason` says why).
    Failed,
    /// Deleted by its owner; its objects are gone.
    Deleted,
}

impl State {
    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Uploading => "uploading",
            State::Processing => "processing",
            State::Ready => "ready",
            State::Failed => "failed",
            State::Deleted => "deleted",
        }
    }

    /// Parses a stored name.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "uploading" => State::Uploading,
            "processing" => State::Processing,
            "ready" => State::Ready,
            "failed" => State::Failed,
            "deleted" => State::Deleted,
            _ => return None,
        })
    }
}

/// Where the conversion job of a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// No conversion wanted yet.
    None,
    /// Waiting for an instance to claim it (or to take it over after a lapsed claim).
    Queued,
    /// Finished (the record's state says how).
    Done,
}

impl JobState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::None => "none",
            JobState::Queued => "queued",
            JobState::Done => "done",
        }
    }

    /// Parses a stored name.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "none" => JobState::None,
            "queued" => JobState::Queued,
            "done" => JobState::Done,
            _ => return None,
        })
    }
}

/// One image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    /// Image id (a UUID).
    pub id: String,
    /// The owner's user id.
    pub owner_id: String,
    /// `disk` or `iso`.
    pub kind: String,
    /// Life state.
    pub state: State,
    /// Why the image failed.
    pub failure_reason: Option<String>,
    /// Upload version (a UUID; also the converted image's version).
    pub version: String,
    /// The S3 multipart upload id while uploading.
    pub upload_id: Option<String>,
    /// Key of the uploaded object.
    pub source_key: String,
    /// Size of the uploaded object.
    pub size_bytes: Option<i64>,
    /// ETag of the uploaded object (quoted).
    pub etag: Option<String>,
    /// Last-Modified of the uploaded object (ISO 8601).
    pub last_modified: Option<String>,
    /// The detected format of the upload.
    pub disk_format: Option<String>,
    /// Guest-visible size of the converted disk.
    pub disk_size: Option<i64>,
    /// Version directory of the converted image (`images/<id>/<version>/`).
    pub chunked_prefix: Option<String>,
    /// Key of the converted image's `manifest.json`.
    pub chunked_manifest_key: Option<String>,
    /// Conversion job state.
    pub job_state: JobState,
    /// The instance holding the conversion.
    pub job_owner: Option<String>,
    /// Until when (ms since the epoch) that claim holds.
    pub job_lease_until: Option<i64>,
    /// Conversion attempts so far.
    pub job_attempts: i64,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
    /// Last change, ms since the epoch.
    pub updated_at: i64,
    /// Optimistic-concurrency revision, advanced by every write.
    pub revision: i64,
    /// Who may read it besides its owner (`private` for new images).
    pub visibility: Visibility,
}

/// ISO 8601 (UTC, milliseconds) of ms since the epoch.
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl ImageRecord {
    /// The record as the API shows it (no upload id: it is returned to the owner at creation
    /// and by `GET …/upload`).
    pub fn to_json(&self) -> Value {
        json!({
            "imageId": self.id,
            "ownerId": self.owner_id,
            "kind": self.kind,
            "state": self.state.as_str(),
            "visibility": self.visibility.as_str(),
            "failureReason": self.failure_reason,
            "version": self.version,
            "sizeBytes": self.size_bytes,
            "etag": self.etag,
            "lastModified": self.last_modified,
            "format": self.disk_format,
            "diskSizeBytes": self.disk_size,
            "sourceObjectKey": self.source_key,
            "chunkedPrefix": self.chunked_prefix,
            "chunkedManifestKey": self.chunked_manifest_key,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
        })
    }
}
