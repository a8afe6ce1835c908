//! qemu-img's curl block driver as a client of `aero-host serve`: the bytes endpoint of a
//! published chunked image and of a catalog raw image must convert to the exact bytes.

use crate::support::serve::*;
use std::process::Command;

const INSTALL: &str = "the backports qemu-utils and qemu-block-extra (see TESTING.md): \
    echo 'deb <debian mirror> bookworm-backports main' > /etc/apt/sources.list.d/backports.list && \
    apt-get update && apt-get install -y --no-install-recommends -t bookworm-backports qemu-utils qemu-block-extra";

fn require_curl_driver() -> std::path::PathBuf {
    let qemu_img = require_tool("qemu-img", INSTALL);
    let out = Command::new(&qemu_img).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let has_curl = help.contains(" http ") || help.contains(" http\n");
    let module = [
        "/usr/lib/x86_64-linux-gnu/qemu/block-curl.so",
        "/usr/lib/aarch64-linux-gnu/qemu/block-curl.so",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).exists());
    assert!(
        has_curl || module,
        "qemu-img has no curl (http) block driver; install {INSTALL}"
    );
    qemu_img
}

#[test]
fn qemu_img_converts_served_images_byte_for_byte() {
    let qemu_img = require_curl_driver();
    let root = tempfile::tempdir().unwrap();
    let storage = format!("fs:{}", root.path().display());
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src.raw");
    // Not a multiple of the chunk size, so the last chunk is short.
    let data = make_raw(&src, 9 * 1024 * 1024 + 4096);
    publish(&storage, &src, "vm", 1024 * 1024, &[]);
    std::fs::create_dir_all(root.path().join("raw")).unwrap();
    std::fs::copy(&src, root.path().join("raw/disk.img")).unwrap();
    std::fs::write(
        root.path().join("manifest.json"),
        r#"[{"id":"plain","file":"raw/disk.img","name":"Plain raw"}]"#,
    )
    .unwrap();
    let srv = Server::start(&storage, &[], &[]);

    for id in ["vm", "plain"] {
        let url = srv.url(&format!("/v1/images/{id}"));
        let info = Command::new(&qemu_img)
            .args(["info", "--output=json", "-f", "raw", &url])
            .output()
            .unwrap();
        assert!(
            info.status.success(),
            "qemu-img info {url}: {}",
            String::from_utf8_lossy(&info.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(v["virtual-size"], data.len());

        let out = work.path().join(format!("{id}.raw"));
        // One coroutine (-m 1): qemu 10.0's curl driver sometimes stalls forever with several
        // requests in flight, against any server (nginx too). The deadline turns a stall into a
        // failure instead of a hung test.
        let conv = Command::new("timeout")
            .arg("120")
            .arg(&qemu_img)
            .args(["convert", "-m", "1", "-f", "raw", "-O", "raw", &url])
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            conv.status.success(),
            "qemu-img convert {url}: {}",
            String::from_utf8_lossy(&conv.stderr)
        );
        let got = std::fs::read(&out).unwrap();
        assert_eq!(got.len(), data.len(), "{id}");
        assert!(got == data, "{id}: converted bytes differ");
    }
}
