//! The gateway under test: a real s3s-fs bucket, a real SQLite file or PostgreSQL database,
//! the gateway on a real socket, and a real HTTP client.

#![allow(dead_code)]

use aero_gateway::{Db, Gateway, S3Settings, Settings};
use aero_plugin_host::storage::{open_storage, StoragePolicy, StorageSpec};
use aero_plugin_host::PluginSet;
use aero_test_support::{S3Server, ACCESS_KEY, BUCKET, REGION, SECRET_KEY};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

// Link the plugins the gateway detects and stores with (they register through inventory).
use backend_s3 as _;
use format_qcow2 as _;
use format_raw as _;

/// The part size the tests upload with (S3's smallest but last).
pub const PART: usize = 5 * 1024 * 1024;
/// How long a test waits for a conversion to settle.
pub const WAIT: Duration = Duration::from_secs(120);

/// Runs each named scenario once per database.
#[allow(unused_macros)] // not every test file runs scenarios on both
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::Database::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::Database::Postgres).await })*
        }
    };
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server the tests use: `AERO_TEST_POSTGRES_URL` (`.ci/run` starts a private
/// cluster and sets it). Unset, the test fails with how to get one.
fn postgres_admin_url() -> String {
    std::env::var("AERO_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "AERO_TEST_POSTGRES_URL is not set: the PostgreSQL tests need a server. `bash .ci/run` \
             installs PostgreSQL (apt-get install postgresql), starts a private cluster and sets it; \
             or start one as TESTING.md shows and export \
             AERO_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:PORT/postgres"
        )
    })
}

/// A fresh, empty database URL of `kind` (a new PostgreSQL database per call).
pub async fn fresh_database(kind: Database, dir: &Path) -> String {
    match kind {
        Database::Sqlite => format!("sqlite:{}", dir.join("gateway.sqlite").display()),
        Database::Postgres => {
            let admin = postgres_admin_url();
            let name = format!("gw_{}", uuid::Uuid::new_v4().simple());
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&admin).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
            let (base, _) = admin.rsplit_once('/').unwrap();
            format!("{base}/{name}")
        }
    }
}

/// The bucket's settings for the gateway.
pub fn s3_settings(s3: &S3Server) -> S3Settings {
    S3Settings {
        bucket: BUCKET.into(),
        region: REGION.into(),
        endpoint: Some(s3.endpoint()),
        force_path_style: true,
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: SECRET_KEY.into(),
        session_token: None,
    }
}

/// Test settings: 5 MiB parts, 1 MiB chunks, fast job polling.
pub fn settings(s3: &S3Server, database: &str) -> Settings {
    let mut s = Settings::new(s3_settings(s3));
    s.database = database.into();
    s.part_size = 5 * 1024 * 1024;
    s.chunk_size = 1024 * 1024;
    s.job_poll_interval = Duration::from_millis(100);
    s
}

/// A running gateway; stopped when dropped.
pub struct Running {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The bucket of `s3` as a storage, through the s3 backend plugin.
pub fn storage_of(s3: &S3Settings) -> Arc<aero_plugin_api::backend::Storage> {
    let plugins = PluginSet::builtin().unwrap();
    let mut spec = StorageSpec::parse_uri(&format!(
        "s3://{}?endpoint={}&region={}&force_path_style=true",
        s3.bucket,
        s3.endpoint.as_deref().unwrap(),
        s3.region
    ))
    .unwrap();
    spec.settings
        .insert("access_key_id".into(), s3.access_key_id.clone());
    spec.settings
        .insert("secret_access_key".into(), s3.secret_access_key.clone());
    Arc::new(open_storage(&plugins, &spec, StoragePolicy::default()).unwrap())
}

/// Starts a gateway with `settings` on an ephemeral port of 127.0.0.1.
pub async fn start(_s3: &S3Server, settings: Settings) -> Running {
    start_with_storage(settings).await
}

/// Starts a gateway with `settings` (whose bucket it opens) on an ephemeral port of 127.0.0.1.
pub async fn start_with_storage(settings: Settings) -> Running {
    let storage = storage_of(&settings.s3);
    let db = Db::open(&settings.database, settings.db_max_connections)
        .await
        .unwrap();
    let formats = PluginSet::builtin().unwrap().formats().clone();
    let gateway = Gateway::new(settings, db, storage, formats).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(aero_gateway::serve(listener, gateway, async move {
        let _ = stopped.await;
    }));
    Running {
        url,
        stop: Some(stop),
        task: Some(task),
    }
}

/// A client of the gateway as user `user` (dev mode).
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub user: String,
}

impl Client {
    pub fn new(base: &str, user: &str) -> Self {
        Client {
            http: reqwest::Client::new(),
            base: base.into(),
            user: user.into(),
        }
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("x-user-id", &self.user)
    }

    /// Sends and returns (status, JSON body or Null).
    pub async fn call(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(self.req(reqwest::Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(self.req(reqwest::Method::POST, path).json(&body))
            .await
    }

    /// Creates an image: (id, upload id).
    pub async fn create(&self) -> (String, String) {
        let (status, body) = self
            .call(self.req(reqwest::Method::POST, "/v1/images"))
            .await;
        assert_eq!(status, 200, "{body}");
        (
            body["imageId"].as_str().unwrap().into(),
            body["uploadId"].as_str().unwrap().into(),
        )
    }

    /// Uploads `data` in `part_size` parts through presigned URLs; returns the parts list.
    pub async fn upload_parts(
        &self,
        id: &str,
        upload_id: &str,
        data: &[u8],
        part_size: usize,
    ) -> Value {
        let mut parts = Vec::new();
        for (i, piece) in data.chunks(part_size).enumerate() {
            let number = i + 1;
            let (status, body) = self
                .post(
                    &format!("/v1/images/{id}/upload-url"),
                    json!({"uploadId": upload_id, "partNumber": number}),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            let url = body["url"].as_str().unwrap();
            let resp = self
                .http
                .put(url)
                .body(piece.to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 200, "PUT part {number}");
            let etag = resp.headers()["etag"].to_str().unwrap().to_string();
            parts.push(json!({"partNumber": number, "etag": etag}));
        }
        Value::Array(parts)
    }

    /// Creates, uploads and completes; returns the image id.
    pub async fn upload(&self, data: &[u8], part_size: usize) -> String {
        let (id, upload_id) = self.create().await;
        let parts = self.upload_parts(&id, &upload_id, data, part_size).await;
        let (status, body) = self
            .post(
                &format!("/v1/images/{id}/complete"),
                json!({"uploadId": upload_id, "parts": parts}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["state"], "processing");
        id
    }

    /// Waits until the image leaves `processing`; returns the record.
    pub async fn settled(&self, id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, rec) = self.get(&format!("/v1/images/{id}")).await;
            assert_eq!(status, 200, "{rec}");
            if rec["state"] != "processing" {
                return rec;
            }
            assert!(
                Instant::now() < deadline,
                "image {id} still processing: {rec}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// GET `path` and return (status, headers, bytes).
    pub async fn bytes(
        &self,
        req: reqwest::RequestBuilder,
    ) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.bytes().await.unwrap().to_vec())
    }
}

/// Deterministic pseudo-random bytes with some zero runs (a disk with holes).
pub fn disk_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = vec![0u8; len];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        // Every fourth MiB stays zero.
        if (i * 8 / (1024 * 1024)) % 4 == 3 {
            continue;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    out
}

/// `qemu-img convert -O qcow2 raw out`.
pub fn qcow2_of(raw: &Path, out: &Path) {
    let qemu_img = aero_test_support::qemu_img_binary();
    let status = Command::new(qemu_img)
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(raw)
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success());
}

/// A temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
