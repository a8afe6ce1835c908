//! Extraction of archives built here: a good one (placed, up to date, replaced), and one
//! archive per hostile entry, each refused with nothing under the final name.

use aero_archive::{extract, is_extracted, part_path, Limits, MARKER};
use std::io::Write;
use std::path::Path;
use tar::{EntryType, Header};

/// One entry to write, names taken as raw bytes (the tar writer itself refuses `..`).
enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Special(&'a str, EntryType),
}

fn header(name: &str, kind: EntryType, size: u64, link: &str) -> Header {
    let mut h = Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
    h.set_mtime(0);
    h.set_cksum();
    h
}

/// A `.tar.gz` of `entries` at `path`.
fn archive(path: &Path, entries: &[E]) {
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    for e in entries {
        let (h, data): (Header, &[u8]) = match e {
            E::Dir(n) => (header(n, EntryType::Directory, 0, ""), b""),
            E::File(n, d) => (header(n, EntryType::Regular, d.len() as u64, ""), d),
            E::Symlink(n, t) => (header(n, EntryType::Symlink, 0, t), b""),
            E::Hard(n, t) => (header(n, EntryType::Link, 0, t), b""),
            E::Special(n, k) => (header(n, *k, 0, ""), b""),
        };
        tar.append(&h, data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

#[test]
fn a_good_archive_is_placed_then_up_to_date_then_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let tgz = dir.path().join("a.tar.gz");
    let mut disk = vec![0u8; 1 << 20];
    disk[12345] = 7;
    archive(
        &tgz,
        &[
            E::Dir("./"),
            E::Dir("etc"),
            E::File("etc/hostname", b"guest\n"),
            E::File("disk.raw", &disk),
            E::Symlink("etc/link", "../disk.raw"),
            E::Symlink("dangling", "nowhere/../x"),
            E::Hard("hard", "etc/hostname"),
        ],
    );
    let out = dir.path().join("out");
    let done = extract(&tgz, "aa", &out, &Limits::default()).unwrap();
    assert!(!done.up_to_date && !done.replaced);
    assert_eq!(done.bytes, 6 + (1 << 20));
    assert_eq!(std::fs::read(out.join("etc/link")).unwrap(), disk);
    assert_eq!(std::fs::read(out.join("hard")).unwrap(), b"guest\n");
    assert_eq!(std::fs::read_to_string(out.join(MARKER)).unwrap(), "aa\n");
    // The zero blocks of disk.raw are holes.
    use std::os::unix::fs::MetadataExt;
    assert!(std::fs::metadata(out.join("disk.raw")).unwrap().blocks() * 512 < 1 << 20);
    assert!(is_extracted(&out, "AA") && !is_extracted(&out, "bb"));
    assert!(
        extract(&tgz, "aa", &out, &Limits::default())
            .unwrap()
            .up_to_date
    );

    // Another archive's sha256: the stale extraction is swapped out whole.
    let other = dir.path().join("b.tar.gz");
    archive(&other, &[E::File("new", b"n")]);
    let done = extract(&other, "bb", &out, &Limits::default()).unwrap();
    assert!(done.replaced);
    assert!(out.join("new").is_file() && !out.join("etc").exists());
    assert!(!part_path(&out).exists());

    // A directory that is not an extraction is never replaced.
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    let err = extract(&other, "bb", &mine, &Limits::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not an extraction"), "{err}");
}

/// Extracts `entries`, expects a refusal mentioning `expected`, and nothing left behind.
fn refused(entries: &[E], limits: Limits, expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let tgz = dir.path().join("x.tar.gz");
    archive(&tgz, entries);
    let out = dir.path().join("sub/out");
    let err = extract(&tgz, "cc", &out, &limits).unwrap_err().to_string();
    assert!(err.contains(expected), "expected '{expected}' in: {err}");
    assert!(!out.exists(), "{expected}: something under the final name");
    assert!(!part_path(&out).exists(), "{expected}: the part is left");
    let left: Vec<_> = std::fs::read_dir(dir.path().join("sub")).unwrap().collect();
    assert!(left.is_empty(), "{expected}: {left:?}");
    assert!(
        !dir.path().join("escaped").exists(),
        "{expected}: wrote outside"
    );
}

#[test]
fn hostile_entries_are_refused_and_nothing_is_left() {
    let l = Limits::default;
    refused(&[E::File("../../escaped", b"x")], l(), "contains '..'");
    refused(&[E::File("a/../../../escaped", b"x")], l(), "contains '..'");
    refused(&[E::File("/tmp/escaped-abs", b"x")], l(), "is absolute");
    refused(&[E::Symlink("l", "/etc")], l(), "absolute path '/etc'");
    refused(
        &[E::Symlink("a/l", "../../../escaped")],
        l(),
        "points outside",
    );
    // Each link is inside by its text; through `sub/up` (the root) `..` leaves it.
    refused(
        &[
            E::Dir("sub"),
            E::Symlink("sub/up", ".."),
            E::Symlink("x", "sub/up/../escaped"),
        ],
        l(),
        "resolves outside",
    );
    refused(&[E::Hard("h", "../../escaped")], l(), "contains '..'");
    refused(&[E::Hard("h", "/etc/passwd")], l(), "is absolute");
    refused(
        &[E::Symlink("l", "target"), E::Hard("h", "l")],
        l(),
        "symbolic link",
    );
    // A link inside, then a file through it: never followed.
    refused(
        &[E::Dir("d"), E::Symlink("l", "d"), E::File("l/f", b"x")],
        l(),
        "is a symbolic link, which is never followed",
    );
    refused(&[E::Special("null", EntryType::Char)], l(), "device files");
    refused(&[E::Special("sda", EntryType::Block)], l(), "device files");
    refused(&[E::Special("pipe", EntryType::Fifo)], l(), "FIFOs");
    refused(&[E::File(MARKER, b"x")], l(), "extraction marker");
    let small = Limits {
        max_bytes: 1000,
        ..Limits::default()
    };
    refused(
        &[E::File("a", &[1; 600]), E::File("b", &[1; 600])],
        small,
        "more than the limit of 1000 bytes",
    );
    let few = Limits {
        max_entries: 2,
        ..Limits::default()
    };
    refused(
        &[E::Dir("a"), E::Dir("b"), E::Dir("c")],
        few,
        "more than the limit of 2 entries",
    );
}

#[test]
fn a_file_that_is_not_gzip_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("x.tar.gz");
    std::fs::write(&bogus, b"plain text").unwrap();
    let out = dir.path().join("out");
    let err = extract(&bogus, "dd", &out, &Limits::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a gzip file"), "{err}");
    assert!(!out.exists() && !part_path(&out).exists());
}
