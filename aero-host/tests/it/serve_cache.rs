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
    // The piece-cache counters of a running server, from /metrics.
    let counters = |srv: &Server| {
        let (status, _, body) = curl(&[&srv.url("/metrics")]);
        assert_eq!(status, 200);
        let text = String::from_utf8(body).unwrap();
        let value = |name: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
        };
        (
            value("aero_storage_piece_cache_hits_total"),
            value("aero_storage_piece_reads_total"),
        )
    };
    let read_three_times = |srv: &Server| {
        for _ in 0..3 {
            let (status, _, body) =
                curl(&["-H", "Range: bytes=0-511", &srv.url("/v1/images/disk")]);
            assert_eq!(status, 206);
            assert_eq!(body, vec![0x33u8; 512]);
        }
    };

    let on = Server::start(&storage, &[], &[]);
    let (hits, reads) = counters(&on);
    read_three_times(&on);
    assert_eq!(
        counters(&on),
        (hits + 2, reads + 1),
        "with the cache on, the repeated range is read from storage once"
    );

    let off = Server::start(&storage, &[], &[("AERO_STORAGE_CACHE_BYTES", "0")]);
    let (hits, reads) = counters(&off);
    assert_eq!(hits, 0);
    read_three_times(&off);
    assert_eq!(
        counters(&off),
        (0, reads + 3),
        "with the cache off, every range is read from storage"
    );
}
