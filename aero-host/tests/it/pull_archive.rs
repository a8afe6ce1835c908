//! Catalog archives (`.tar.gz`) and `SHA256SUMS` checksum lists, pulled from nginx: an
//! archive extracted, up to date, replaced; hostile archives refused with nothing under the
//! final name; a download resumed; the archive limits as flags and `[catalog]` keys.

use crate::support::pull::{Fault, FaultProxy, Nginx};
use crate::support::serve::require_tool;
use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `tar -czf ARCHIVE [FLAGS…] -C DIR NAMES…` with the system's tar.
fn tar(archive: &Path, flags: &[&str], dir: &Path, names: &[&str]) {
    let tar = require_tool("tar", "apt-get install -y tar");
    let status = Command::new(tar)
        .arg("-czf")
        .arg(archive)
        .args(flags)
        .arg("-C")
        .arg(dir)
        .args(names)
        .status()
        .unwrap();
    assert!(status.success(), "tar failed for {}", archive.display());
}

fn sha_of(path: &Path) -> String {
    sha256(&std::fs::read(path).unwrap())
}

/// Nothing at `out`, `out.part` or `out.download`.
#[track_caller]
fn nothing_at(out: &Path) {
    for suffix in ["", ".part", ".download"] {
        let p = PathBuf::from(format!("{}{suffix}", out.display()));
        assert!(!p.exists(), "{} exists", p.display());
    }
}

/// A store served by nginx with archives, a disk file and checksum lists, and its registry.
struct Catalog {
    dir: tempfile::TempDir,
    nginx: Nginx,
    image: PathBuf,
    registry: String,
}

impl Catalog {
    fn new() -> Catalog {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        std::fs::create_dir_all(&store).unwrap();
        // Version 1: a small root file system tree with a link inside it.
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("etc/hostname"), "guest\n").unwrap();
        let image = dir.path().join("disk.raw");
        patterned_image(&image, 64 * 1024 * 8, 64 * 1024, &[0, 5]);
        std::fs::copy(&image, tree.join("disk.raw")).unwrap();
        std::os::unix::fs::symlink("../disk.raw", tree.join("etc/disk")).unwrap();
        tar(&store.join("rootfs.tar.gz"), &[], &tree, &["."]);
        // Version 2: another tree.
        let tree2 = dir.path().join("tree2");
        std::fs::create_dir_all(&tree2).unwrap();
        std::fs::write(tree2.join("v2"), "two\n").unwrap();
        tar(&store.join("rootfs2.tar.gz"), &[], &tree2, &["."]);
        // Hostile: a `..` entry (kept by -P), a link to an absolute path, a FIFO.
        let evil = dir.path().join("evil");
        std::fs::create_dir_all(evil.join("a")).unwrap();
        std::fs::write(dir.path().join("escaped"), "x").unwrap();
        tar(
            &store.join("dotdot.tar.gz"),
            &["-P"],
            &evil.join("a"),
            &["../../escaped"],
        );
        std::os::unix::fs::symlink("/etc/passwd", evil.join("passwd")).unwrap();
        tar(&store.join("abslink.tar.gz"), &[], &evil, &["passwd"]);
        let fifo = std::ffi::CString::new(s(&evil.join("pipe"))).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        tar(&store.join("fifo.tar.gz"), &[], &evil, &["pipe"]);
        std::fs::remove_file(dir.path().join("escaped")).unwrap();

        qcow2_of(&image, &store.join("disk.qcow2"));
        let sums = format!(
            "{}  rootfs.tar.gz\n{} *disk.qcow2\n",
            sha_of(&store.join("rootfs.tar.gz")),
            sha_of(&store.join("disk.qcow2"))
        );
        std::fs::write(store.join("SHA256SUMS"), sums).unwrap();
        std::fs::write(store.join("BADSUMS"), "this is not a checksum list\n").unwrap();
        let nginx = Nginx::start(&store);
        let url = |name: &str| nginx.url(&format!("/{name}"));
        let sha = |name: &str| sha_of(&store.join(name));
        let entry = |name: &str, file: &str, checksum: String| {
            format!(
                "[[images]]\nname = \"{name}\"\nversion = \"1\"\nurl = \"{}\"\n{checksum}\n",
                url(file)
            )
        };
        let mut registry = entry(
            "rootfs",
            "rootfs.tar.gz",
            "sha256sums = \"SHA256SUMS\"".into(),
        );
        registry += &format!(
            "[[images]]\nname = \"rootfs\"\nversion = \"2\"\nurl = \"{}\"\nsha256 = \"{}\"\n",
            url("rootfs2.tar.gz"),
            sha("rootfs2.tar.gz")
        );
        for name in ["dotdot", "abslink", "fifo"] {
            let file = format!("{name}.tar.gz");
            registry += &entry(name, &file, format!("sha256 = \"{}\"", sha(&file)));
        }
        registry += &entry(
            "disk",
            "disk.qcow2",
            format!("format = \"qcow2\"\nsha256sums = \"{}\"", url("SHA256SUMS")),
        );
        registry += &entry(
            "unlisted",
            "rootfs2.tar.gz",
            "sha256sums = \"SHA256SUMS\"".into(),
        );
        registry += &entry(
            "badlist",
            "rootfs.tar.gz",
            "sha256sums = \"BADSUMS\"".into(),
        );
        std::fs::write(store.join("registry.toml"), registry).unwrap();
        let registry = nginx.url("/registry.toml");
        Catalog {
            dir,
            nginx,
            image,
            registry,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn pull(&self, reference: &str, out: &Path, extra: &[&str]) -> std::process::Output {
        let args = [
            &[
                "pull",
                reference,
                "-o",
                s(out),
                "--registry",
                &self.registry,
                "--json",
            ][..],
            extra,
        ]
        .concat();
        run(&args)
    }
}

#[test]
fn archives_are_extracted_up_to_date_replaced_and_hostile_ones_refused() {
    let c = Catalog::new();
    let out = c.path("out/rootfs");
    let first = json(&ok(c.pull("rootfs:1", &out, &[])));
    assert!(first["bytes_downloaded"].as_u64().unwrap() > 0, "{first}");
    assert_eq!(first["up_to_date"], false);
    assert_eq!(
        std::fs::read_to_string(out.join("etc/hostname")).unwrap(),
        "guest\n"
    );
    // The link inside the archive resolves inside the extraction.
    assert_eq!(
        std::fs::read(out.join("etc/disk")).unwrap(),
        std::fs::read(&c.image).unwrap()
    );
    let marker = std::fs::read_to_string(out.join(".aero-archive.sha256")).unwrap();
    assert_eq!(
        marker.trim(),
        sha_of(&c.dir.path().join("store/rootfs.tar.gz"))
    );
    assert!(!c.path("out/rootfs.download").exists() && !c.path("out/rootfs.part").exists());

    // Up to date: nothing downloaded.
    let again = json(&ok(c.pull("rootfs:1", &out, &[])));
    assert_eq!(again["up_to_date"], true, "{again}");
    assert_eq!(again["bytes_downloaded"], 0);

    // Another version into the same directory: the stale extraction is replaced whole.
    let second = json(&ok(c.pull("rootfs:2", &out, &[])));
    assert_eq!(second["up_to_date"], false);
    assert_eq!(std::fs::read_to_string(out.join("v2")).unwrap(), "two\n");
    assert!(!out.join("etc").exists());

    // Hostile archives: refused, naming the entry and the rule; nothing under the final name.
    for (name, expected) in [
        ("dotdot", &["escaped", "contains '..'"][..]),
        ("abslink", &["passwd", "absolute path '/etc/passwd'"][..]),
        ("fifo", &["pipe", "FIFOs are not extracted"][..]),
    ] {
        let out = c.path(&format!("out/{name}"));
        fails_with(&c.pull(name, &out, &[]), expected);
        nothing_at(&out);
    }
    assert!(!c.path("escaped").exists(), "an entry was written outside");

    // The size limit, as a flag.
    let small = c.path("out/small");
    fails_with(
        &c.pull("rootfs:1", &small, &["--max-archive-bytes", "100"]),
        &["more than the limit of 100 bytes"],
    );
    nothing_at(&small);
    let few = c.path("out/few");
    fails_with(
        &c.pull("rootfs:1", &few, &["--max-archive-entries", "2"]),
        &["more than the limit of 2 entries"],
    );
    nothing_at(&few);
    // A directory that is not an extraction is never replaced.
    let mine = c.path("out/mine");
    std::fs::create_dir_all(&mine).unwrap();
    fails_with(&c.pull("rootfs:1", &mine, &[]), &["is not an extraction"]);
}

#[test]
fn checksum_lists_give_the_digest_and_missing_names_or_bad_lists_are_errors() {
    let c = Catalog::new();
    let out = c.path("disk.raw");
    json(&ok(c.pull("disk", &out, &[])));
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&c.image).unwrap()
    );
    let unlisted = c.path("unlisted");
    fails_with(
        &c.pull("unlisted", &unlisted, &[]),
        &["SHA256SUMS", "'rootfs2.tar.gz' is not listed"],
    );
    nothing_at(&unlisted);
    let bad = c.path("bad");
    fails_with(&c.pull("badlist", &bad, &[]), &["BADSUMS", "line 1 is not"]);
    nothing_at(&bad);
}

#[test]
fn an_interrupted_archive_download_resumes() {
    let c = Catalog::new();
    let archive = std::fs::read(c.dir.path().join("store/rootfs.tar.gz")).unwrap();
    // A truncated body fails the pull and keeps what arrived.
    let proxy = FaultProxy::start(&c.nginx.base);
    proxy.fault("/rootfs.tar.gz", Fault::Truncated, 1);
    let registry = c.path("proxied.toml");
    std::fs::write(
        &registry,
        format!(
            "[[images]]\nname = \"rootfs\"\nversion = \"1\"\nurl = \"{}\"\nsha256 = \"{}\"\n",
            proxy.url("/rootfs.tar.gz"),
            sha256(&archive)
        ),
    )
    .unwrap();
    let out = c.path("resumed");
    let pull = |registry: &str| {
        run(&[
            "pull",
            "rootfs:1",
            "-o",
            s(&out),
            "--registry",
            registry,
            "--json",
        ])
    };
    fails_with(&pull(s(&registry)), &["the next pull resumes"]);
    assert!(!out.exists());
    let kept = std::fs::metadata(c.path("resumed.download")).unwrap().len();
    assert!(kept > 0 && kept < archive.len() as u64, "{kept}");
    // nginx answers the Range request: only the rest is fetched.
    let done = json(&ok(pull(&c.registry)));
    assert_eq!(done["bytes_resumed"], kept, "{done}");
    assert_eq!(done["bytes_downloaded"], archive.len() as u64 - kept);
    assert_eq!(
        std::fs::read_to_string(out.join("etc/hostname")).unwrap(),
        "guest\n"
    );
    assert!(!c.path("resumed.download").exists());
}

#[test]
fn run_pulls_archives_under_the_catalog_limits() {
    let c = Catalog::new();
    let limited = write_config(
        c.dir.path(),
        "limited.toml",
        &format!(
            "[catalog]\nregistry = \"{}\"\ndir = \"catalog\"\nmax_archive_bytes = 100\n\n\
             [[pull]]\nsource = \"rootfs:1\"\nout = \"limited\"\n",
            c.registry
        ),
    );
    fails_with(
        &run(&["run", s(&limited)]),
        &["more than the limit of 100 bytes"],
    );
    nothing_at(&c.path("limited"));
    let config = write_config(
        c.dir.path(),
        "pulls.toml",
        &format!(
            "[catalog]\nregistry = \"{}\"\ndir = \"catalog\"\nmax_archive_bytes = 100\n\n\
             [[pull]]\nsource = \"rootfs:1\"\nout = \"rootfs\"\nmax_archive_bytes = 10000000\n",
            c.registry
        ),
    );
    let lines = json_lines(&ok(run(&["run", s(&config), "--json"])));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["image_id"], "rootfs");
    assert_eq!(
        std::fs::read_to_string(c.path("rootfs/etc/hostname")).unwrap(),
        "guest\n"
    );
}
