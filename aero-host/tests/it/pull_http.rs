//! `aero-host pull` against real servers: nginx serving a published directory, `aero-host
//! serve`, s3s-fs, and a fault-injecting proxy; kill and resume; two pulls on one cache.

use crate::support::pull::{Fault, FaultProxy, Nginx};
use crate::support::serve::{publish, Server, S3};
use crate::support::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

const CHUNK: u64 = 64 * 1024;
const CHUNKS: u64 = 16;
/// The data chunks of the test image; the others are zeros.
const DATA: [u64; 6] = [0, 3, 4, 9, 14, 15];

/// A published image in an `fs` store: the store, the source file, the version.
struct Published {
    dir: tempfile::TempDir,
    image: PathBuf,
    version: String,
}

impl Published {
    fn new() -> Published {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.raw");
        patterned_image(&image, CHUNK * CHUNKS, CHUNK, &DATA);
        let version = publish(&storage(dir.path()), &image, "img", CHUNK, &[]);
        Published {
            dir,
            image,
            version,
        }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn manifest_path(&self) -> String {
        format!("/images/img/{}/manifest.json", self.version)
    }
}

fn storage(dir: &Path) -> String {
    format!("fs:{}", dir.join("store").display())
}

fn pull(args: &[&str]) -> Output {
    aero().arg("pull").args(args).output().unwrap()
}

fn pull_ok(args: &[&str]) -> serde_json::Value {
    json(&ok(pull(args)))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn same_bytes(a: &Path, b: &Path) {
    assert!(
        std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
        "{} and {} differ",
        a.display(),
        b.display()
    );
}

fn part(out: &Path) -> PathBuf {
    PathBuf::from(format!("{}.part", out.display()))
}

#[test]
fn pull_from_nginx_is_sparse_verified_cached_and_a_no_op_when_complete() {
    let p = Published::new();
    let nginx = Nginx::start(&p.store());
    let url = nginx.url(&p.manifest_path());
    let (out, cache) = (p.path("out.raw"), p.path("cache"));
    let args = ["-o", s(&out), "--cache-dir", s(&cache), "--json"];

    let dry = pull_ok(&[&[url.as_str(), "--dry-run"][..], &args].concat());
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["chunks_downloaded"], DATA.len());
    assert_eq!(dry["chunks_zero"], CHUNKS as usize - DATA.len());
    assert!(
        !out.exists() && !part(&out).exists(),
        "a dry run writes nothing"
    );

    let first = pull_ok(&[&[url.as_str()][..], &args].concat());
    for key in [
        "image_id",
        "version",
        "out",
        "total_size",
        "chunk_count",
        "chunks_downloaded",
        "bytes_downloaded",
        "chunks_reused",
        "bytes_reused",
        "chunks_zero",
        "seconds",
    ] {
        assert!(first.get(key).is_some(), "--json lacks {key}: {first}");
    }
    assert_eq!(first["image_id"], "img");
    assert_eq!(first["version"], p.version.as_str());
    assert_eq!(first["total_size"], CHUNK * CHUNKS);
    assert_eq!(first["chunk_count"], CHUNKS);
    assert_eq!(first["chunks_downloaded"], DATA.len());
    assert_eq!(first["bytes_downloaded"], DATA.len() as u64 * CHUNK);
    assert_eq!(first["chunks_zero"], CHUNKS as usize - DATA.len());
    assert_eq!(first["disk_digest_checked"], true);
    same_bytes(&out, &p.image);
    let allocated = std::fs::metadata(&out).unwrap().blocks() * 512;
    // The ten zero chunks would be 640 KiB; the file system may add a block or two.
    assert!(
        allocated <= (DATA.len() as u64 + 1) * CHUNK,
        "zero chunks are holes: {allocated} bytes allocated"
    );
    assert!(!part(&out).exists());

    let again = pull_ok(&[&[url.as_str()][..], &args].concat());
    assert_eq!(again["up_to_date"], true, "{again}");
    assert_eq!(again["chunks_downloaded"], 0);

    std::fs::remove_file(&out).unwrap();
    let dry = pull_ok(&[&[url.as_str(), "--dry-run"][..], &args].concat());
    assert_eq!(dry["chunks_reused"], DATA.len());
    assert_eq!(dry["chunks_downloaded"], 0);
    let cached = pull_ok(&[&[url.as_str()][..], &args].concat());
    assert_eq!(cached["chunks_reused"], DATA.len(), "{cached}");
    assert_eq!(cached["bytes_reused"], DATA.len() as u64 * CHUNK);
    assert_eq!(cached["chunks_downloaded"], 0);
    same_bytes(&out, &p.image);

    // A new version with one chunk changed downloads that chunk only.
    use std::os::unix::fs::FileExt;
    std::fs::File::options()
        .write(true)
        .open(&p.image)
        .unwrap()
        .write_all_at(b"changed", 9 * CHUNK + 100)
        .unwrap();
    let v2 = publish(&storage(p.dir.path()), &p.image, "img", CHUNK, &[]);
    assert_ne!(v2, p.version);
    let url2 = nginx.url(&format!("/images/img/{v2}/manifest.json"));
    let out2 = p.path("out2.raw");
    let second = pull_ok(&[
        url2.as_str(),
        "-o",
        s(&out2),
        "--cache-dir",
        s(&cache),
        "--json",
    ]);
    assert_eq!(second["chunks_downloaded"], 1, "{second}");
    assert_eq!(second["chunks_reused"], DATA.len() - 1);
    same_bytes(&out2, &p.image);
}

#[test]
fn pull_from_serve_copies_the_query_string_onto_chunk_urls() {
    let p = Published::new();
    let server = Server::start(&storage(p.dir.path()), &[], &[]);
    let proxy = FaultProxy::start(&server.addr);
    let url = proxy.url("/v1/images/img/chunked/manifest.json?sig=abc%2Fdef&exp=99");
    let out = p.path("out.raw");
    let summary = pull_ok(&[&url, "-o", s(&out), "--no-cache", "--json"]);
    assert_eq!(summary["chunks_downloaded"], DATA.len());
    same_bytes(&out, &p.image);
    let targets = proxy.targets();
    let chunk_requests: Vec<_> = targets.iter().filter(|t| t.contains("/chunks/")).collect();
    assert_eq!(
        chunk_requests.len(),
        DATA.len(),
        "zero chunks are never fetched: {targets:?}"
    );
    for t in chunk_requests {
        assert!(t.ends_with("?sig=abc%2Fdef&exp=99"), "{t}");
    }
}

#[test]
fn pull_from_s3_by_image_root_follows_latest() {
    let s3 = S3::start(aero_test_support::BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.raw");
    patterned_image(&image, CHUNK * CHUNKS, CHUNK, &DATA);
    let uri = s3.uri(aero_test_support::BUCKET);
    let version = publish(&uri, &image, "img", CHUNK, &S3::env());
    let out = dir.path().join("out.raw");
    let got = aero()
        .args([
            "--storage",
            &uri,
            "pull",
            "images/img/",
            "-o",
            s(&out),
            "--no-cache",
            "--json",
        ])
        .envs(S3::env())
        .output()
        .unwrap();
    let summary = json(&ok(got));
    assert_eq!(summary["version"], version.as_str());
    same_bytes(&out, &image);
}

/// Each fault, on every try: the pull fails naming the chunk, its URL and the problem, leaves
/// nothing under the final name and a part the next run resumes.
#[test]
fn faults_fail_naming_the_chunk_and_the_next_run_resumes() {
    let p = Published::new();
    let nginx = Nginx::start(&p.store());
    let proxy = FaultProxy::start(&nginx.base);
    let url = proxy.url(&p.manifest_path());
    let cases = [
        (Fault::BadDigest, "sha256 is"),
        (Fault::ShortBody, "size is"),
        (Fault::Truncated, "get "),
        (Fault::WrongRange, "206"),
        (Fault::NotFound, "not found"),
        (Fault::ServerError, "500"),
    ];
    for (i, (fault, problem)) in cases.into_iter().enumerate() {
        let out = p.path(&format!("out{i}.raw"));
        proxy.clear();
        proxy.fault("/chunks/00000015.bin", fault, usize::MAX);
        let args = [
            url.as_str(),
            "-o",
            s(&out),
            "--no-cache",
            "--concurrency",
            "1",
            "--retries",
            "2",
            "--json",
        ];
        let failed = pull(&args);
        let err = fails_with(&failed, &["chunk 15", "/chunks/00000015.bin", problem]);
        assert!(
            !out.exists(),
            "{fault:?}: nothing under the final name\n{err}"
        );
        assert!(
            part(&out).exists(),
            "{fault:?}: the part stays for the next run"
        );
        proxy.clear();
        let resumed = pull_ok(&args);
        assert_eq!(
            resumed["chunks_resumed"],
            DATA.len() - 1,
            "{fault:?}: {resumed}"
        );
        assert_eq!(resumed["chunks_downloaded"], 1);
        same_bytes(&out, &p.image);
    }
}

#[test]
fn a_passing_fault_is_retried() {
    let p = Published::new();
    let nginx = Nginx::start(&p.store());
    let proxy = FaultProxy::start(&nginx.base);
    proxy.fault("/chunks/00000003.bin", Fault::BadDigest, 1);
    proxy.fault("/chunks/00000004.bin", Fault::Truncated, 1);
    proxy.fault("/chunks/00000009.bin", Fault::ServerError, 1);
    let out = p.path("out.raw");
    pull_ok(&[
        &proxy.url(&p.manifest_path()),
        "-o",
        s(&out),
        "--no-cache",
        "--json",
    ]);
    same_bytes(&out, &p.image);
    for chunk in [3, 4, 9] {
        assert_eq!(
            proxy.hits(&format!("/chunks/{chunk:08}.bin")),
            2,
            "chunk {chunk}"
        );
    }
}

/// SIGKILL in the middle of a pull: what the state file names is in the part, and the next
/// run fetches only the rest and gives the right bytes.
#[test]
fn a_killed_pull_resumes_where_it_stopped() {
    let p = Published::new();
    let nginx = Nginx::start(&p.store());
    let proxy = FaultProxy::start(&nginx.base);
    for chunk in DATA {
        proxy.fault(&format!("/chunks/{chunk:08}.bin"), Fault::Delay(400), 1);
    }
    let out = p.path("out.raw");
    let url = proxy.url(&p.manifest_path());
    let args = [
        url.as_str(),
        "-o",
        s(&out),
        "--no-cache",
        "--concurrency",
        "1",
        "--json",
    ];
    let mut child = aero().arg("pull").args(args).spawn().unwrap();
    let state = PathBuf::from(format!("{}.part.state", out.display()));
    let deadline = Instant::now() + Duration::from_secs(30);
    // Header plus two written chunks.
    while std::fs::read_to_string(&state).map_or(0, |t| t.lines().count()) < 3 {
        assert!(Instant::now() < deadline, "the pull wrote nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.exists());
    // The state names only chunks whose bytes were written (and made durable) before it.
    let image = std::fs::read(&p.image).unwrap();
    let part_bytes = std::fs::read(part(&out)).unwrap();
    let listed: Vec<u64> = std::fs::read_to_string(&state)
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.parse().ok())
        .collect();
    assert!(listed.len() >= 2, "{listed:?}");
    for index in &listed {
        let range = (index * CHUNK) as usize..((index + 1) * CHUNK) as usize;
        assert!(
            part_bytes[range.clone()] == image[range],
            "chunk {index} is named by the state but its bytes are not in the part"
        );
    }
    let resumed = pull_ok(&args);
    let resumed_chunks = resumed["chunks_resumed"].as_u64().unwrap();
    assert!(resumed_chunks >= 2, "{resumed}");
    assert_eq!(
        resumed["chunks_downloaded"].as_u64().unwrap() + resumed_chunks,
        DATA.len() as u64
    );
    same_bytes(&out, &p.image);
}

#[test]
fn two_pulls_at_once_share_one_cache() {
    let p = Published::new();
    let nginx = Nginx::start(&p.store());
    let url = nginx.url(&p.manifest_path());
    let cache = p.path("cache");
    let children: Vec<_> = (0..2)
        .map(|i| {
            let out = p.path(&format!("out{i}.raw"));
            let child = aero()
                .args([
                    "pull",
                    &url,
                    "-o",
                    s(&out),
                    "--cache-dir",
                    s(&cache),
                    "--json",
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (out, child)
        })
        .collect();
    for (out, child) in children {
        ok(child.wait_with_output().unwrap());
        same_bytes(&out, &p.image);
    }
    // Two pulls of one output at once: the second is refused, not interleaved.
    let out = p.path("same.raw");
    std::fs::write(format!("{}.part.state", out.display()), b"").unwrap();
    let holder = std::fs::File::open(format!("{}.part.state", out.display())).unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(unsafe { libc_flock(&holder) }, 0);
    fails_with(
        &pull(&[&url, "-o", s(&out), "--no-cache"]),
        &["another pull is writing"],
    );
    assert!(!out.exists());
}

/// `flock(LOCK_EX)` through the shell's flock would need util-linux; the call is one line.
unsafe fn libc_flock(file: &std::fs::File) -> i32 {
    use std::os::fd::AsRawFd;
    extern "C" {
        fn flock(fd: i32, op: i32) -> i32;
    }
    flock(file.as_raw_fd(), 2 | 4)
}

#[test]
fn a_disk_that_does_not_match_its_sha256_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.raw");
    patterned_image(&image, CHUNK * 4, CHUNK, &[1, 2]);
    let wrong = format!("sha256-{}", "0".repeat(64));
    ok(aero()
        .args([
            "--storage",
            &storage(dir.path()),
            "publish",
            "--file",
            s(&image),
        ])
        .args(["--prefix", "images/img/", "--image-version", &wrong])
        .args(["--chunk-size", &CHUNK.to_string()])
        .output()
        .unwrap());
    let manifest = dir
        .path()
        .join(format!("store/images/img/{wrong}/manifest.json"));
    let out = dir.path().join("out.raw");
    fails_with(
        &pull(&[s(&manifest), "-o", s(&out), "--no-cache"]),
        &["the pulled disk's sha256 is", &wrong],
    );
    assert!(!out.exists() && !part(&out).exists());
}

#[test]
fn a_manifest_that_breaks_a_rule_is_refused() {
    let p = Published::new();
    let version_dir = p.store().join(format!("images/img/{}", p.version));
    let mut m = manifest(&version_dir.join("manifest.json"));
    m["totalSize"] = serde_json::json!(1u64 << 60);
    let bad = p.path("bad-manifest.json");
    std::fs::write(&bad, serde_json::to_vec(&m).unwrap()).unwrap();
    let out = p.path("out.raw");
    fails_with(
        &pull(&[s(&bad), "-o", s(&out), "--no-cache"]),
        &["manifest"],
    );
    assert!(!out.exists() && !part(&out).exists());
}

#[test]
fn pull_to_aerosparse_writes_that_format() {
    let p = Published::new();
    let manifest = p
        .store()
        .join(format!("images/img/{}/manifest.json", p.version));
    let out = p.path("out.aerosparse");
    let summary = pull_ok(&[
        s(&manifest),
        "-o",
        s(&out),
        "--to",
        "aerosparse",
        "--no-cache",
        "--json",
    ]);
    assert_eq!(summary["out"], s(&out));
    let back = p.path("back.raw");
    ok(run(&["convert", s(&out), s(&back)]));
    same_bytes(&back, &p.image);
    assert!(!p.path("out.aerosparse.pull.raw").exists());
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(bytes: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes}"),
                "tmpfs",
                s(dir.path()),
            ])
            .status()
            .unwrap();
        assert!(
            status.success(),
            "this test mounts a small tmpfs to fill a disk: run it as root (as CI does)"
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[test]
fn a_disk_too_small_for_the_data_is_refused_before_fetching() {
    let p = Published::new();
    let small = Tmpfs::mount(256 * 1024);
    let manifest = p
        .store()
        .join(format!("images/img/{}/manifest.json", p.version));
    let out = small.0.path().join("out.raw");
    fails_with(
        &pull(&[s(&manifest), "-o", s(&out), "--no-cache"]),
        &["needs", "bytes free"],
    );
    assert!(!out.exists());
}
