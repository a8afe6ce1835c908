//! The in-memory piece cache: repeated ranges come from memory, and a changed object is never
//! served from stale cache entries once its validators change.

use crate::support::serve::*;

#[test]
fn a_rewritten_raw_image_is_served_fresh_after_the_ttl() {
    let root = tempfile::tempdir().unwrap();
    let storage = format!("fs:{}", root.path().display());
    std::fs::write(root.path().join("disk.img"), vec![0x11u8; 64 * 1024]).unwrap();
    std::fs::write(
        root.path().join("manifest.json"),
        r#"[{"id":"disk","file":"disk.img","name":"Disk"}]"#,
    )
    .unwrap();
    let srv = Server::start(&storage, &["--cache-ttl-ms", "100"], &[]);
    let url = srv.url("/v1/images/disk");
    let range = "Range: bytes=4096-8191";
    for _ in 0..3 {
        let (status, _, body) = curl(&["-H", range, &url]);
        assert_eq!(status, 206);
        assert_eq!(body, vec![0x11u8; 4096]);
    }
    // Same size, new content and modification time.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(root.path().join("disk.img"), vec![0x22u8; 64 * 1024]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (status, _, body) = curl(&["-H", range, &url]);
    assert_eq!(status, 206);
    assert_eq!(
        body,
        vec![0x22u8; 4096],
        "stale bytes served after the object changed"
    );
}

#[test]
fn the_cache_can_be_turned_off() {
    let root = tempfile::tempdir().unwrap();
    let storage = format!("fs:{}", root.path().display());
    std::fs::write(root.path().join("disk.img"), vec![0x33u8; 8192]).unwrap();
    std::fs::write(
        root.path().join("manifest.json"),
        r#"[{"id":"disk","file":"disk.img","name":"Disk"}]"#,
    )
    .unwrap();
    let srv = Server::start(&storage, &[], &[("AERO_STORAGE_CACHE_BYTES", "0")]);
    let (status, _, body) = curl(&["-H", "Range: bytes=0-511", &srv.url("/v1/images/disk")]);
    assert_eq!(status, 206);
    assert_eq!(body, vec![0x33u8; 512]);
}
