//! A real boot: a small Debian disk built by `bench/lib/make-boot-disk.sh` (cached under
//! `target/boot-disk`) is published, then booted with qemu-system-x86_64 (software emulation,
//! direct kernel boot) once from the file `pull` writes from `aero-host serve`, and once lazily
//! through `nbd` over nginx serving the published directory. The guest checks the sha256 of
//! every file under /usr/bin and /usr/sbin and prints `AERO-BOOT-OK` only when all match.

use crate::support::nbd::Nbd;
use crate::support::pull::Nginx;
use crate::support::serve::{publish, require_tool, Server};
use crate::support::{manifest, ok, run, sha256_file};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one boot may take (about 10 s on a quiet machine, much longer under load).
const BOOT_LIMIT: Duration = Duration::from_secs(300);
/// Small chunks, so that a boot reads only part of the image.
const CHUNK: u64 = 1024 * 1024;

/// The boot disk's directory: `disk.raw`, `vmlinuz`, `initrd.img`, `append`.
fn boot_disk() -> PathBuf {
    require_tool(
        "debootstrap",
        "apt-get install -y --no-install-recommends debootstrap",
    );
    require_tool("mkfs.ext4", "apt-get install -y e2fsprogs");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = root.join("target/boot-disk");
    let built = Command::new("bash")
        .arg(root.join("bench/lib/make-boot-disk.sh"))
        .arg(&out)
        .status()
        .unwrap();
    assert!(built.success(), "bench/lib/make-boot-disk.sh failed");
    out
}

/// Boots `disk`'s kernel with `drive` (a `-drive` value) as its root until the guest's
/// marker; panics with the console's tail when it reports a failure or does not get there.
fn boot(disk: &Path, drive: &str, console: &Path) -> Duration {
    let qemu = require_tool(
        "qemu-system-x86_64",
        "apt-get install -y --no-install-recommends -t bookworm-backports qemu-system-x86",
    );
    let append = std::fs::read_to_string(disk.join("append")).unwrap();
    let started = Instant::now();
    let mut child = Command::new(qemu)
        .args(["-machine", "pc,accel=tcg", "-m", "512", "-nodefaults"])
        .args(["-no-reboot", "-display", "none", "-serial"])
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(disk.join("vmlinuz"))
        .arg("-initrd")
        .arg(disk.join("initrd.img"))
        .args(["-append", append.trim(), "-drive", drive])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let has_line = |marker: &str| {
        let text = std::fs::read(console).unwrap_or_default();
        String::from_utf8_lossy(&text)
            .lines()
            .any(|l| l.starts_with(marker))
    };
    // Success is the marker line: a hung qemu ignores SIGTERM, so it is always killed.
    let reached = loop {
        if has_line("AERO-BOOT-OK") {
            break Some(started.elapsed());
        }
        let exited = child.try_wait().unwrap().is_some();
        if exited || has_line("AERO-BOOT-FAIL") || started.elapsed() > BOOT_LIMIT {
            break has_line("AERO-BOOT-OK").then(|| started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&std::fs::read(console).unwrap_or_default()).into_owned();
    let tail: String = text.lines().rev().take(30).collect::<Vec<_>>().join("\n");
    reached.unwrap_or_else(|| {
        panic!(
            "the guest did not print AERO-BOOT-OK within {BOOT_LIMIT:?} from {drive}; qemu: {}\nconsole (last lines, newest first):\n{tail}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn a_debian_disk_boots_from_a_pulled_file_and_lazily_through_nbd() {
    let disk = boot_disk();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let storage = format!("fs:{}", root.display());
    let image = disk.join("disk.raw");
    let version = publish(&storage, &image, "boot", CHUNK, &[]);

    // pull from aero-host serve's chunked endpoints gives the disk's bytes, and it boots.
    let mut server = Server::start(&storage, &[], &[]);
    let pulled = dir.path().join("pulled.raw");
    let url = server.url(&format!("/v1/images/boot/chunked/{version}/manifest.json"));
    let p = pulled.to_str().unwrap();
    ok(run(&["pull", &url, "-o", p, "--no-cache", "--json"]));
    assert_eq!(sha256_file(&pulled), sha256_file(&image));
    server.terminate();
    let drive = format!("file={p},format=raw,if=virtio,readonly=on");
    let took = boot(&disk, &drive, &dir.path().join("pulled.log"));
    eprintln!("booted the pulled file in {took:?}");

    // nbd over nginx serving the published directory: the guest boots before the image is
    // downloaded, every chunk it reads verified.
    let nginx = Nginx::start(&root);
    let manifest_url = nginx.url(&format!("/images/boot/{version}/manifest.json"));
    let socket = dir.path().join("nbd.sock");
    let nbd = Nbd::start(
        &[],
        &manifest_url,
        &["--unix", socket.to_str().unwrap(), "--cache-dir", "none"],
    );
    let drive = format!(
        "file=nbd+unix:///?socket={},format=raw,if=virtio,readonly=on",
        socket.display()
    );
    let took = boot(&disk, &drive, &dir.path().join("nbd.log"));
    eprintln!("booted through nbd in {took:?}");
    let summary = nbd.stop();
    assert_eq!(summary["verification_failures"], 0, "{summary}");
    assert_eq!(summary["request_errors"], 0, "{summary}");
    // Lazily: only some of the image's data chunks were fetched.
    let published = manifest(&root.join(format!("images/boot/{version}/manifest.json")));
    let chunks = published["chunks"].as_array().unwrap();
    let data_chunks = chunks.iter().filter(|c| c["zero"] != true).count() as u64;
    let fetched = summary["chunks_fetched"].as_u64().unwrap();
    assert!(
        fetched > 0 && fetched < data_chunks,
        "the boot fetched {fetched} of the {data_chunks} data chunks: {summary}"
    );
}
