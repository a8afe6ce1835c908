//! `aero-host nbd` read by real clients (qemu-img, nbdinfo, nbdcopy): the guest bytes exactly,
//! zero chunks as holes, the shared chunk cache, and a tampered chunk that fails the read.

use crate::support::nbd::{Client, Nbd, CMD_READ, EIO};
use crate::support::pull::Nginx;
use crate::support::serve::{publish, require_tool, Server};
use crate::support::{fails_with, patterned_image, qcow2_of, qemu_img_binary, run, sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MIB: u64 = 1024 * 1024;
/// 8 chunks of 1 MiB and a short ninth; chunks 1, 4, 6 and 7 are zeros.
const SIZE: u64 = 8 * MIB + 64 * 1024;
const DATA_CHUNKS: [u64; 5] = [0, 2, 3, 5, 8];
const ZERO_CHUNKS: [u64; 4] = [1, 4, 6, 7];

/// A published qcow2 image: its directory, the store, the version, the guest bytes.
struct Published {
    dir: tempfile::TempDir,
    version: String,
    guest: Vec<u8>,
}

impl Published {
    fn new() -> Published {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        patterned_image(&raw, SIZE, MIB, &DATA_CHUNKS);
        let qcow2 = dir.path().join("disk.qcow2");
        qcow2_of(&raw, &qcow2);
        // The reference bytes are qemu-img's reading of the image.
        let expected = dir.path().join("expected.raw");
        qemu_img(&[
            "convert",
            "-f",
            "qcow2",
            "-O",
            "raw",
            path(&qcow2),
            path(&expected),
        ]);
        let version = publish(&self_storage(dir.path()), &qcow2, "disk", MIB, &[]);
        let guest = std::fs::read(&expected).unwrap();
        Published {
            dir,
            version,
            guest,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn storage(&self) -> String {
        self_storage(self.dir.path())
    }

    fn version_dir(&self) -> PathBuf {
        self.path("store/images/disk").join(&self.version)
    }
}

fn self_storage(dir: &Path) -> String {
    format!("fs:{}", dir.join("store").display())
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn qemu_img(args: &[&str]) -> Output {
    let out = Command::new(qemu_img_binary()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `qemu-img convert` of the export to a raw file, compared with the guest bytes, and
/// `qemu-img compare` against the reference file.
fn assert_guest_bytes(p: &Published, uri: &str, out: &str) {
    let out = p.path(out);
    qemu_img(&["convert", "-f", "raw", "-O", "raw", uri, path(&out)]);
    assert!(
        std::fs::read(&out).unwrap() == p.guest,
        "bytes over {uri} differ"
    );
    qemu_img(&[
        "compare",
        "-f",
        "raw",
        "-F",
        "raw",
        path(&p.path("expected.raw")),
        uri,
    ]);
}

/// `qemu-img map` over NBD: the zero chunks are holes reading as zeros, the rest data.
fn assert_map_holes(uri: &str, holes: &[u64]) {
    let out = qemu_img(&["map", "--output=json", "-f", "raw", uri]);
    let map: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut covered = 0;
    for entry in &map {
        let (start, length) = (
            entry["start"].as_u64().unwrap(),
            entry["length"].as_u64().unwrap(),
        );
        assert_eq!(start, covered, "{map:?}");
        covered += length;
        for chunk in start / MIB..(start + length).div_ceil(MIB) {
            let hole = holes.contains(&chunk);
            assert_eq!(entry["data"], !hole, "chunk {chunk}: {entry}");
            assert_eq!(entry["zero"], hole, "chunk {chunk}: {entry}");
        }
    }
    assert_eq!(covered, SIZE);
}

#[test]
fn a_published_directory_over_a_unix_socket_gives_the_guest_bytes_and_holes() {
    let p = Published::new();
    let socket = p.path("nbd.sock");
    let nbd = Nbd::start(
        &[],
        path(&p.version_dir()),
        &["--unix", path(&socket), "--cache-dir", "none"],
    );
    assert_eq!(nbd.uri, format!("nbd+unix:///?socket={}", socket.display()));
    assert_eq!(nbd.size, SIZE);
    assert_guest_bytes(&p, &nbd.uri, "unix.raw");
    assert_map_holes(&nbd.uri, &ZERO_CHUNKS);
    let summary = nbd.stop();
    // Each data chunk was fetched once however often it was read; zero chunks never (qemu
    // skips the holes block status shows).
    assert_eq!(summary["chunks_fetched"], DATA_CHUNKS.len(), "{summary}");
    assert_eq!(summary["verification_failures"], 0);
    // convert and compare each read every data byte.
    let data_bytes = summary["bytes_fetched"].as_u64().unwrap();
    assert_eq!(data_bytes, 4 * MIB + 64 * 1024);
    assert!(
        summary["bytes_served"].as_u64().unwrap() >= 2 * data_bytes,
        "{summary}"
    );
    assert!(!socket.exists(), "the socket is removed on exit");
}

#[test]
fn a_storage_prefix_over_tcp_with_nbd_tools_and_the_shared_chunk_cache() {
    let nbdinfo = require_tool("nbdinfo", "apt-get install libnbd-bin");
    let nbdcopy = require_tool("nbdcopy", "apt-get install libnbd-bin");
    let p = Published::new();
    let cache = p.path("cache");
    let args = ["--cache-dir", path(&cache)];
    let storage = p.storage();
    let nbd = Nbd::start(&["--storage", &storage], "images/disk/", &args);
    let uri = format!("{}/disk", nbd.uri);
    let info = Command::new(&nbdinfo)
        .args(["--json", &uri])
        .output()
        .unwrap();
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let export = &info["exports"][0];
    assert_eq!(export["export-size"], SIZE);
    assert_eq!(export["is_read_only"], true);
    assert_eq!(export["export-name"], "disk");
    assert!(export["contexts"]
        .as_array()
        .unwrap()
        .contains(&"base:allocation".into()));
    let copy = p.path("copy.raw");
    let status = Command::new(&nbdcopy)
        .args([&uri, path(&copy)])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(std::fs::read(&copy).unwrap() == p.guest);
    assert_guest_bytes(&p, &nbd.uri, "tcp.raw");
    let cold = nbd.stop();
    assert_eq!(cold["chunks_fetched"], DATA_CHUNKS.len(), "{cold}");

    // A second export of the same image fetches nothing: every chunk is in the cache.
    let nbd = Nbd::start(&["--storage", &storage], "images/disk/", &args);
    assert_guest_bytes(&p, &nbd.uri, "warm.raw");
    let warm = nbd.stop();
    assert_eq!(warm["chunks_fetched"], 0, "{warm}");
    assert_eq!(warm["disk_cache_hits"], DATA_CHUNKS.len(), "{warm}");

    // A new version with one chunk changed: only that chunk is fetched.
    let mut changed = p.guest.clone();
    changed[5 * MIB as usize + 10] ^= 0xff;
    let raw = p.path("v2.raw");
    std::fs::write(&raw, &changed).unwrap();
    let v2 = publish(&storage, &raw, "disk", MIB, &[]);
    assert_ne!(v2, p.version);
    let nbd = Nbd::start(&["--storage", &storage], "images/disk/", &args);
    let out = p.path("v2-copy.raw");
    qemu_img(&["convert", "-f", "raw", "-O", "raw", &nbd.uri, path(&out)]);
    assert!(std::fs::read(&out).unwrap() == changed);
    let new = nbd.stop();
    assert_eq!(new["chunks_fetched"], 1, "{new}");
    assert_eq!(new["disk_cache_hits"], DATA_CHUNKS.len() - 1, "{new}");
}

#[test]
fn aero_host_serve_chunked_endpoints_and_a_local_image_as_sources() {
    let p = Published::new();
    let mut server = Server::start(&p.storage(), &[], &[]);
    let url = server.url(&format!(
        "/v1/images/disk/chunked/{}/manifest.json",
        p.version
    ));
    let nbd = Nbd::start(&[], &url, &["--cache-dir", "none"]);
    assert_guest_bytes(&p, &nbd.uri, "http.raw");
    assert_map_holes(&nbd.uri, &ZERO_CHUNKS);
    let summary = nbd.stop();
    assert_eq!(summary["chunks_fetched"], DATA_CHUNKS.len(), "{summary}");
    server.terminate();

    // The qcow2 itself: its unallocated clusters are holes.
    let nbd = Nbd::start(&[], path(&p.path("disk.qcow2")), &[]);
    assert_eq!(nbd.size, SIZE);
    assert_guest_bytes(&p, &nbd.uri, "local.raw");
    assert_map_holes(&nbd.uri, &ZERO_CHUNKS);
    nbd.stop();
}

#[test]
fn a_tampered_chunk_fails_the_read_and_never_reaches_the_client() {
    let p = Published::new();
    let chunk = p.version_dir().join("chunks/00000002.bin");
    let mut bytes = std::fs::read(&chunk).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&chunk, &bytes).unwrap();
    let nbd = Nbd::start(
        &[],
        path(&p.version_dir()),
        &["--cache-dir", "none", "--retries", "2", "--readahead", "0"],
    );
    let out = Command::new(qemu_img_binary())
        .args([
            "convert",
            "-f",
            "raw",
            "-O",
            "raw",
            &nbd.uri,
            path(&p.path("bad.raw")),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "qemu-img read a tampered chunk");

    let mut client = Client::connect(nbd.addr());
    client.go();
    let bad = client.request(CMD_READ, 2 * MIB + 512, 4096);
    assert_eq!(bad.error, EIO);
    assert!(bad.data.is_empty());
    let good = client.request(CMD_READ, 3 * MIB, 4096);
    assert_eq!(good.error, 0);
    assert!(good.data[..] == p.guest[3 * MIB as usize..][..4096]);
    let log = nbd.log.lock().unwrap().clone();
    assert!(log.contains("chunk 2") && log.contains("sha256"), "{log}");
    let summary = nbd.stop();
    assert!(
        summary["verification_failures"].as_u64().unwrap() >= 4,
        "{summary}"
    );
    assert!(
        summary["request_errors"].as_u64().unwrap() >= 1,
        "{summary}"
    );
}

#[test]
fn a_catalog_reference_exports_the_published_image_it_names() {
    let p = Published::new();
    let root = p.path("store");
    let nginx = Nginx::start(&root);
    let manifest = nginx.url(&format!("/images/disk/{}/manifest.json", p.version));
    std::fs::copy(p.path("disk.qcow2"), root.join("disk.qcow2")).unwrap();
    let qcow_sha = sha256(&std::fs::read(root.join("disk.qcow2")).unwrap());
    let registry = root.join("registry.toml");
    std::fs::write(
        &registry,
        format!(
            "[[images]]\nname = \"deb\"\nversion = \"1\"\nreleased_at = \"2024-01-01\"\narch = \"x86_64\"\n\
             manifest = \"{}\"\n\n\
             [[images]]\nname = \"deb\"\nversion = \"2\"\nreleased_at = \"2024-02-01\"\narch = \"x86_64\"\n\
             manifest = \"{manifest}\"\n\n\
             [[images]]\nname = \"deb\"\nversion = \"3\"\nreleased_at = \"2024-03-01\"\narch = \"aarch64\"\n\
             manifest = \"{}\"\n\n\
             [[images]]\nname = \"plain\"\nversion = \"1\"\narch = \"x86_64\"\nurl = \"{}\"\n\
             format = \"qcow2\"\nsha256 = \"{qcow_sha}\"\n",
            nginx.url("/images/disk/missing/manifest.json"),
            nginx.url("/images/disk/missing/manifest.json"),
            nginx.url("/disk.qcow2"),
        ),
    )
    .unwrap();
    let catalog_dir = p.path("catalog");
    let catalog = [
        "--registry",
        path(&registry),
        "--arch",
        "x86_64",
        "--catalog-dir",
        path(&catalog_dir),
        "--cache-dir",
        "none",
    ];

    // `deb` is its latest x86_64 version (2), read lazily from nginx; `deb:2` the same.
    for reference in ["deb", "deb:2"] {
        let nbd = Nbd::start(&[], reference, &catalog);
        assert_eq!(nbd.size, SIZE);
        assert_guest_bytes(&p, &nbd.uri, "catalog.raw");
        assert_map_holes(&nbd.uri, &ZERO_CHUNKS);
        let summary = nbd.stop();
        assert_eq!(summary["export"], "disk", "{summary}");
        assert_eq!(summary["chunks_fetched"], DATA_CHUNKS.len(), "{summary}");
    }

    let refused = |reference: &str, needles: &[&str]| {
        let out = run(&[&["nbd", reference, "--listen", "127.0.0.1:0"][..], &catalog].concat());
        fails_with(&out, needles);
    };
    // Version 1's manifest is not there: the resolution fails naming it.
    refused("deb:1", &["missing/manifest.json"]);
    refused("deb:9", &["deb:9"]);
    refused("nothing", &["nothing"]);
    // A plain disk file cannot be exported lazily.
    refused("plain", &["plain:1", "plain disk file", "pull"]);
    let out = run(&["nbd", "deb", "--registry", path(&p.path("absent.toml"))]);
    fails_with(&out, &["absent.toml"]);
}
