//! One storage behaviour suite, run against fs, memory and a real S3 server (s3s-fs on
//! 127.0.0.1): put with metadata, stat, the bounded read, zero objects and not-found.

use aero_chunked::layout::ObjectKind;
use aero_chunked::store::{
    put, read_limited, recorded_digest, stat, CacheControls, ChunkMismatch, ExpectedChunk,
};
use aero_plugin_api::backend::{build_storage, ObjectMeta, Settings, Storage, StorageBackend};
use aero_test_support::{sha256, S3Server, ACCESS_KEY, BUCKET, SECRET_KEY};

fn controls() -> CacheControls {
    CacheControls {
        chunks: "public, max-age=31536000, immutable, no-transform".into(),
        manifest: "public, max-age=31536000, immutable, no-transform".into(),
        latest: "public, max-age=60, no-transform".into(),
    }
}

fn storage(backend: &dyn StorageBackend, settings: &[(&str, &str)]) -> Storage {
    let settings: Settings = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    build_storage(backend, &settings).expect("building the storage")
}

/// The behaviour every backend must show; `has_metadata` when it keeps HTTP and user metadata.
async fn behaves(storage: &Storage, has_metadata: bool) {
    let what = &storage.description;
    let capability = storage.operator.info().capability();
    assert_eq!(capability.write_with_user_metadata, has_metadata, "{what}");
    // Not found, for stat, the bounded read and the error kind.
    assert!(
        stat(storage, "nothing/here").await.unwrap().is_none(),
        "{what}"
    );
    assert!(read_limited(storage, "nothing/here", 10)
        .await
        .unwrap()
        .is_none());
    let e = storage.operator.read("nothing/here").await.unwrap_err();
    assert!(aero_chunked::store::is_not_found(&e), "{what}: {e}");

    // Put with metadata, then stat and read back.
    let bytes = b"0123456789abcdef".to_vec();
    let digest = sha256(&bytes);
    let meta = ObjectMeta {
        sha256: Some(digest.clone()),
        ..controls().meta(ObjectKind::Chunk)
    };
    put(storage, "v1/chunks/00000000.bin", bytes.clone(), &meta)
        .await
        .unwrap();
    let found = stat(storage, "v1/chunks/00000000.bin")
        .await
        .unwrap()
        .expect("stored object");
    assert_eq!(found.content_length(), 16, "{what}");
    if has_metadata {
        assert_eq!(
            recorded_digest(&found).as_deref(),
            Some(digest.as_str()),
            "{what}"
        );
    }
    if capability.write_with_content_type && capability.write_with_cache_control {
        assert_eq!(
            found.content_type(),
            Some("application/octet-stream"),
            "{what}"
        );
        assert_eq!(
            found.cache_control(),
            Some("public, max-age=31536000, immutable, no-transform"),
            "{what}"
        );
    }
    let read = read_limited(storage, "v1/chunks/00000000.bin", 16)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&read[..], &bytes[..], "{what}");

    // The bounded read refuses a larger object before reading it.
    let err = read_limited(storage, "v1/chunks/00000000.bin", 15)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("16 bytes, more than the 15 bytes allowed"),
        "{what}: {err}"
    );

    // Whether the object holds a chunk: by recorded digest, or by reading it back.
    let right = ExpectedChunk {
        len: 16,
        sha256: Some(&digest),
    };
    assert!(right
        .held_by(storage, "v1/chunks/00000000.bin", &found, true)
        .await
        .unwrap());
    assert_eq!(
        right
            .held_by(storage, "v1/chunks/00000000.bin", &found, false)
            .await
            .unwrap(),
        has_metadata,
        "{what}: without read-back, only a recorded digest counts"
    );
    let other = sha256(b"something else");
    let wrong = ExpectedChunk {
        len: 16,
        sha256: Some(&other),
    };
    assert!(!wrong
        .held_by(storage, "v1/chunks/00000000.bin", &found, true)
        .await
        .unwrap());
    let short = ExpectedChunk {
        len: 8,
        sha256: Some(&digest),
    };
    assert!(!short
        .held_by(storage, "v1/chunks/00000000.bin", &found, true)
        .await
        .unwrap());
    assert_eq!(
        wrong.check(&bytes),
        Err(ChunkMismatch::Digest {
            got: digest.clone(),
            expected: other.clone()
        })
    );
    assert_eq!(
        short.check(&bytes),
        Err(ChunkMismatch::Size {
            got: 16,
            expected: 8
        })
    );

    // Zero objects, through the backend's cheap path when it has one.
    let zero_meta = ObjectMeta {
        sha256: Some(sha256(&[0u8; 4096])),
        ..controls().meta(ObjectKind::Chunk)
    };
    match &storage.zero_objects {
        Some(zero) => zero
            .write_zero(
                &storage.operator,
                "v1/chunks/00000001.bin",
                4096,
                &zero_meta,
            )
            .await
            .unwrap(),
        None => put(
            storage,
            "v1/chunks/00000001.bin",
            vec![0u8; 4096],
            &zero_meta,
        )
        .await
        .unwrap(),
    }
    let zeros = read_limited(storage, "v1/chunks/00000001.bin", 4096)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(zeros.len(), 4096, "{what}");
    assert!(zeros.iter().all(|&b| b == 0), "{what}");
    let zero_stat = stat(storage, "v1/chunks/00000001.bin")
        .await
        .unwrap()
        .unwrap();
    let zero_chunk = ExpectedChunk {
        len: 4096,
        sha256: zero_meta.sha256.as_deref(),
    };
    assert!(zero_chunk
        .held_by(storage, "v1/chunks/00000001.bin", &zero_stat, true)
        .await
        .unwrap());
}

#[tokio::test]
async fn fs_storage() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    behaves(&storage(&backend_fs::FsBackend, &[("root", root)]), true).await;
}

#[tokio::test]
async fn memory_storage() {
    let memory = storage(&backend_memory::MemoryBackend, &[]);
    let has_metadata = memory.operator.info().capability().write_with_user_metadata;
    behaves(&memory, has_metadata).await;
}

#[tokio::test]
async fn s3_storage() {
    let server = S3Server::start();
    let endpoint = server.endpoint();
    let s3 = storage(
        &backend_s3::S3Backend,
        &[
            ("bucket", BUCKET),
            ("endpoint", &endpoint),
            ("region", "us-east-1"),
            ("force_path_style", "true"),
            ("access_key_id", ACCESS_KEY),
            ("secret_access_key", SECRET_KEY),
        ],
    );
    let capability = s3.operator.info().capability();
    assert!(capability.write_with_content_type && capability.write_with_cache_control);
    behaves(&s3, true).await;
}
