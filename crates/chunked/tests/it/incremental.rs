//! Incremental publish on real storages: unchanged chunks of the base version are hard links on
//! `fs` and server-side copies on S3 (s3s-fs on 127.0.0.1), with the right bytes and metadata;
//! a CopyObject that fails inside a `200 OK` fails the publish instead of leaving a hole.

use aero_chunked::progress::NoProgress;
use aero_chunked::publish::{publish, Base, Checksum, ComputeVersion, PublishPlan, PublishSummary};
use aero_chunked::store::{recorded_digest, CacheControls};
use aero_plugin_api::backend::{build_storage, Settings, Storage, StorageBackend};
use aero_plugin_api::{DiskInfo, Extent, ExtentKind, VirtualDisk};
use aero_test_support::{sha256, S3Server, ACCESS_KEY, BUCKET, SECRET_KEY};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CHUNK: u64 = 64 * 1024;
const CHUNKS: u64 = 8;
const CACHE_CONTROL: &str = "public, max-age=31536000, immutable, no-transform";

/// A raw disk in memory: chunk `i` is filled with `i + 1`, chunk 5 is zero.
struct MemDisk(Vec<u8>);

impl MemDisk {
    fn with_changes(changed: &[u64]) -> Arc<dyn VirtualDisk> {
        let mut bytes = vec![0u8; (CHUNK * CHUNKS) as usize];
        for i in (0..CHUNKS).filter(|&i| i != 5) {
            let start = (i * CHUNK) as usize;
            bytes[start..start + CHUNK as usize].fill(i as u8 + 1);
            if changed.contains(&i) {
                bytes[start] = 0xEE;
            }
        }
        Arc::new(MemDisk(bytes))
    }
}

impl VirtualDisk for MemDisk {
    fn capacity(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> aero_plugin_api::Result<()> {
        buf.copy_from_slice(&self.0[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }

    fn block_status(&self, offset: u64, length: u64) -> aero_plugin_api::Result<Vec<Extent>> {
        let zero = self.0[offset as usize..(offset + length) as usize]
            .iter()
            .all(|&b| b == 0);
        let kind = if zero {
            ExtentKind::Zero
        } else {
            ExtentKind::Data
        };
        Ok(vec![Extent::new(offset, length, kind)])
    }

    fn info(&self) -> DiskInfo {
        DiskInfo::default()
    }
}

fn plan(version: &str) -> PublishPlan {
    PublishPlan {
        prefix: "images/disk/".into(),
        image_id: None,
        image_version: Some(version.into()),
        compute_version: ComputeVersion::None,
        publish_latest: true,
        cache_control: CacheControls {
            chunks: CACHE_CONTROL.into(),
            manifest: CACHE_CONTROL.into(),
            latest: "public, max-age=60, no-transform".into(),
        },
        chunk_size: CHUNK,
        checksum: Checksum::Sha256,
        concurrency: 4,
        no_meta: false,
        original_filename: "disk.raw".into(),
        base: Base::Auto,
    }
}

fn storage(backend: &dyn StorageBackend, settings: &[(&str, &str)]) -> Arc<Storage> {
    let settings: Settings = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Arc::new(build_storage(backend, &settings).expect("building the storage"))
}

fn s3(endpoint: &str) -> Arc<Storage> {
    storage(
        &backend_s3::S3Backend,
        &[
            ("bucket", BUCKET),
            ("endpoint", endpoint),
            ("region", "us-east-1"),
            ("force_path_style", "true"),
            ("access_key_id", ACCESS_KEY),
            ("secret_access_key", SECRET_KEY),
        ],
    )
}

fn chunk_key(version: &str, index: u64) -> String {
    format!("images/disk/{version}/chunks/{index:08}.bin")
}

/// Publishes v1, then v2 with chunks 2 and 6 changed, and checks what v2 holds.
async fn publish_two_versions(s: &Arc<Storage>) -> PublishSummary {
    let run = |disk, version| publish(Arc::clone(s), disk, plan(version), Arc::new(NoProgress));
    let v1 = run(MemDisk::with_changes(&[]), "v1").await.unwrap();
    assert_eq!(v1.uploaded_chunks, 7);
    let changed = MemDisk::with_changes(&[2, 6]);
    let v2 = run(Arc::clone(&changed), "v2").await.unwrap();
    let what = &s.description;
    assert_eq!(v2.base_version.as_deref(), Some("v1"), "{what}");
    assert_eq!(
        (v2.copied_chunks, v2.bytes_copied),
        (5, 5 * CHUNK),
        "{what}"
    );
    assert_eq!(
        (v2.uploaded_chunks, v2.bytes_uploaded),
        (2, 2 * CHUNK),
        "{what}"
    );
    assert_eq!((v2.zero_chunks, v2.zero_bytes), (1, CHUNK), "{what}");
    for index in 0..CHUNKS {
        let mut want = vec![0u8; CHUNK as usize];
        changed.read_at(index * CHUNK, &mut want).unwrap();
        let key = chunk_key("v2", index);
        let got = s.operator.read(&key).await.unwrap().to_vec();
        assert!(got == want, "{what}: {key} holds other bytes");
        let meta = s.operator.stat(&key).await.unwrap();
        assert_eq!(recorded_digest(&meta), Some(sha256(&want)), "{what}: {key}");
    }
    v2
}

#[tokio::test]
async fn fs_links_unchanged_chunks_to_the_base() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let s = storage(
        &backend_fs::FsBackend,
        &[("root", dir.path().to_str().unwrap())],
    );
    publish_two_versions(&s).await;
    let inode = |version, index| {
        std::fs::metadata(dir.path().join(chunk_key(version, index)))
            .unwrap()
            .ino()
    };
    assert_eq!(inode("v1", 0), inode("v2", 0));
    assert_eq!(inode("v1", 7), inode("v2", 7));
    assert_ne!(inode("v1", 2), inode("v2", 2));
}

#[tokio::test]
async fn s3_copies_unchanged_chunks_with_their_metadata() {
    let server = S3Server::start();
    let s = s3(&server.endpoint());
    publish_two_versions(&s).await;
    // A real HEAD: the copy carries the chunk's headers.
    let head = server.head(&chunk_key("v2", 0)).expect("copied chunk");
    assert_eq!(head["CacheControl"], CACHE_CONTROL, "{head}");
    assert_eq!(head["ContentType"], "application/octet-stream", "{head}");
}

/// What the proxy answers to every CopyObject: S3's error inside a `200 OK`.
const COPY_ERROR: &str =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>\
<Message>Access Denied</Message><RequestId>1</RequestId></Error>";

/// A proxy in front of `upstream` that answers every CopyObject with [`COPY_ERROR`] in a
/// `200 OK` and passes every other request through (one request per connection).
async fn failing_copy_proxy(upstream: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(proxy_one(client, upstream));
        }
    });
    port
}

async fn proxy_one(mut client: TcpStream, upstream: u16) -> std::io::Result<()> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        if client.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    if text.contains("\r\nx-amz-copy-source:") {
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{COPY_ERROR}",
            COPY_ERROR.len()
        );
        return client.write_all(response.as_bytes()).await;
    }
    // One request per connection, so every request comes through here.
    head.truncate(head.len() - 2);
    head.extend_from_slice(b"connection: close\r\n\r\n");
    let mut server = TcpStream::connect(("127.0.0.1", upstream)).await?;
    server.write_all(&head).await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

#[tokio::test]
async fn an_s3_copy_failing_inside_a_200_fails_the_publish() {
    let server = S3Server::start();
    let direct = s3(&server.endpoint());
    publish(
        Arc::clone(&direct),
        MemDisk::with_changes(&[]),
        plan("v1"),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    let proxy = failing_copy_proxy(server.port).await;
    let faulty = s3(&format!("http://127.0.0.1:{proxy}"));
    let err = publish(
        faulty,
        MemDisk::with_changes(&[2]),
        plan("v2"),
        Arc::new(NoProgress),
    )
    .await
    .unwrap_err()
    .chain();
    assert!(
        err.contains("copying chunk images/disk/v1/chunks/") && err.contains("AccessDenied"),
        "{err}"
    );
    // Nothing names the version whose chunks could not be copied.
    assert!(server.head("images/disk/v2/manifest.json").is_none());
    let latest = direct
        .operator
        .read("images/disk/latest.json")
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&latest.to_vec()).contains("\"v1\""));
}
