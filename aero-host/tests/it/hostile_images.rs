//! Images carrying a format's magic but damaged headers, built here from qemu-made images by
//! patching header fields: `convert` and `inspect` refuse each with that format's error (never
//! falling back to raw), `--format raw` still reads one as raw, and a closed stdout ends
//! `inspect` quietly.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs a qemu tool in `dir`; a missing tool fails the test with an install hint.
fn qemu(dir: &Path, tool: &str, args: &[&str]) {
    let path = require_tool(
        tool,
        None,
        "it builds the test images; install it with `apt-get install -y qemu-utils`",
    );
    let out = Command::new(&path)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", path.display()));
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A qemu-made image of `size` with some data written, as bytes.
fn made_by_qemu(dir: &Path, name: &str, format: &str, options: &str, size: &str) -> Vec<u8> {
    qemu(
        dir,
        "qemu-img",
        &["create", "-q", "-f", format, "-o", options, name, size],
    );
    qemu(
        dir,
        "qemu-io",
        &["-f", format, "-c", "write -P 0x5a 0 64k", name],
    );
    std::fs::read(dir.join(name)).unwrap()
}

fn put_be32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn put_be64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Rewrites the VHD checksum (one's complement of the byte sum) stored at `at` in `block`.
fn vhd_checksum(block: &mut [u8], at: usize) {
    block[at..at + 4].fill(0);
    let sum = block
        .iter()
        .fold(0u32, |acc, &b| acc.wrapping_add(u32::from(b)));
    put_be32(block, at, !sum);
}

/// Applies `edit` to both footer copies (offset 0 and the end) of a dynamic VHD.
fn edit_vhd_footers(image: &[u8], edit: impl Fn(&mut [u8])) -> Vec<u8> {
    let mut b = image.to_vec();
    let end = b.len() - 512;
    for at in [0, end] {
        edit(&mut b[at..at + 512]);
        vhd_checksum(&mut b[at..at + 512], 64);
    }
    b
}

/// Applies `edit` to the dynamic header of a dynamic VHD.
fn edit_vhd_header(image: &[u8], edit: impl Fn(&mut [u8])) -> Vec<u8> {
    let mut b = image.to_vec();
    let at = be64(&b, 16) as usize;
    edit(&mut b[at..at + 1024]);
    vhd_checksum(&mut b[at..at + 1024], 36);
    b
}

struct Hostile {
    name: &'static str,
    bytes: Vec<u8>,
    /// The file is extended (sparsely) to this length after writing, when larger.
    sparse_len: u64,
    needles: Vec<String>,
}

fn case(name: &'static str, bytes: Vec<u8>, needles: &[&str]) -> Hostile {
    Hostile {
        name,
        bytes,
        sparse_len: 0,
        needles: needles.iter().map(|s| s.to_string()).collect(),
    }
}

fn vhd_cases(dir: &Path) -> Vec<Hostile> {
    let dynamic = made_by_qemu(dir, "d.vhd", "vpc", "subformat=dynamic,force_size=on", "4M");
    let len = dynamic.len() as u64;
    let at_offset = |offset: u64| edit_vhd_footers(&dynamic, |f| put_be64(f, 16, offset));
    let fixed = made_by_qemu(dir, "f.vhd", "vpc", "subformat=fixed,force_size=on", "4M");
    let fixed_footer = fixed.len() - 512;
    let mut fixed_larger = fixed.clone();
    put_be64(&mut fixed_larger[fixed_footer..], 48, 8 << 20);
    vhd_checksum(&mut fixed_larger[fixed_footer..], 64);
    vec![
        case(
            "header-offset-0.vhd",
            at_offset(0),
            &["VHD dynamic header offset 0 is not"],
        ),
        case(
            "header-at-footer.vhd",
            at_offset(len - 512),
            &[&format!("VHD dynamic header offset {} is not", len - 512)],
        ),
        case(
            "header-past-end.vhd",
            at_offset(len + 4096),
            &[&format!("VHD dynamic header offset {} is not", len + 4096)],
        ),
        case(
            "size-not-sectors.vhd",
            edit_vhd_footers(&dynamic, |f| put_be64(f, 48, (4 << 20) + 100)),
            &[
                "VHD footer",
                "current size 4194404 is not a non-zero multiple of 512",
            ],
        ),
        case(
            "block-size-3m.vhd",
            edit_vhd_header(&dynamic, |h| put_be32(h, 32, 3 << 20)),
            &[
                "VHD dynamic header",
                "block size 3145728 (offset 32) is not a power of two",
            ],
        ),
        case(
            "bat-past-end.vhd",
            edit_vhd_header(&dynamic, |h| put_be64(h, 16, len * 4)),
            &[
                &format!("VHD block allocation table at offset {}", len * 4),
                "lies past the footer",
            ],
        ),
        case(
            "fixed-larger-than-file.vhd",
            fixed_larger,
            &["fixed VHD of 8388608 bytes does not fit in the file"],
        ),
        case(
            "fixed-odd-length.vhd",
            fixed[100..].to_vec(),
            &["not a multiple of 512", "VHD footer"],
        ),
    ]
}

fn qcow2_cases(dir: &Path) -> Vec<Hostile> {
    let image = made_by_qemu(dir, "q.qcow2", "qcow2", "cluster_size=65536", "1M");
    let edited = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut b = image.clone();
        edit(&mut b);
        b
    };
    vec![
        case(
            "l1-size-max.qcow2",
            edited(&|b| put_be32(b, 36, 0x7fff_ffff)),
            &["qcow2", "l1_size 2147483647 (offset 36)", "too large"],
        ),
        // A 128 MiB L1 table in a 200 MiB sparse file: refused before anything is allocated.
        Hostile {
            sparse_len: 200 << 20,
            ..case(
                "l1-128m-sparse.qcow2",
                edited(&|b| {
                    put_be32(b, 36, 16 << 20);
                    put_be64(b, 24, (16u64 << 20) << 29);
                }),
                &[
                    "qcow2",
                    "l1_size 16777216 (offset 36)",
                    "too large (134217728 bytes",
                ],
            )
        },
        case(
            "refcount-table-huge.qcow2",
            edited(&|b| put_be32(b, 56, 0x10000)),
            &[
                "qcow2",
                "refcount_table_clusters 65536 (offset 56)",
                "too large",
            ],
        ),
        case(
            "snapshots-too-many.qcow2",
            edited(&|b| put_be32(b, 60, 0x20000)),
            &[
                "qcow2",
                "nb_snapshots 131072 (offset 60): too many snapshots",
            ],
        ),
        case(
            "version-4.qcow2",
            edited(&|b| put_be32(b, 4, 4)),
            &["qcow2", "version 4 (offset 4) is not supported"],
        ),
    ]
}

fn aerosparse_cases(dir: &Path) -> Vec<Hostile> {
    let raw = dir.join("src.raw");
    made_by_qemu(dir, "src.raw", "raw", "preallocation=off", "4M");
    let sparse = dir.join("a.aerosparse");
    ok(run(&[
        "convert",
        raw.to_str().unwrap(),
        sparse.to_str().unwrap(),
        "--to",
        "aerosparse",
    ]));
    let mut bytes = std::fs::read(&sparse).unwrap();
    bytes[8] = 2;
    vec![case(
        "version-2.aerosparse",
        bytes,
        &["aerosparse", "version 2"],
    )]
}

fn vmdk_cases(dir: &Path) -> Vec<Hostile> {
    let image = made_by_qemu(dir, "v.vmdk", "vmdk", "subformat=monolithicSparse", "4M");
    let len = image.len() as u64;
    let edited = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut b = image.clone();
        edit(&mut b);
        b
    };
    let gd_sector = le64(&image, 56);
    assert!(gd_sector * 512 < len);
    vec![
        case(
            "version-9.vmdk",
            edited(&|b| b[4] = 9),
            &["VMDK sparse extent version 9 is not supported"],
        ),
        case(
            "gd-past-end.vmdk",
            edited(&|b| b[56..64].copy_from_slice(&(len / 512 + 8).to_le_bytes())),
            &["vmdk:", "grain directory", "lies outside the file"],
        ),
        case(
            "truncated.vmdk",
            edited(&|b| b.truncate(16384)),
            &[
                "vmdk:",
                "file truncated",
                "past the end of the file (16384 bytes)",
            ],
        ),
    ]
}

fn vmdk_library() -> PathBuf {
    aero_plugin_testkit::build_plugin_library(env!("CARGO_MANIFEST_DIR"), "format-vmdk")
        .expect("building the VMDK plugin library")
}

/// `convert` and `inspect` refuse `image` naming it and every needle; nothing is written.
#[track_caller]
fn refused(image: &Path, needles: &[String], extra: &[&str]) {
    let out = image.with_extension("out");
    let file = image.file_name().unwrap().to_str().unwrap();
    let mut all: Vec<&str> = vec![file];
    all.extend(needles.iter().map(String::as_str));
    let mut convert = aero();
    convert.args(extra).arg("convert").arg(image).arg(&out);
    fails_with(&convert.output().unwrap(), &all);
    let left: Vec<_> = std::fs::read_dir(image.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n != file)
        .collect();
    assert!(left.is_empty(), "{file}: convert left {left:?}");
    let mut inspect = aero();
    inspect.args(extra).arg("inspect").arg(image);
    fails_with(&inspect.output().unwrap(), &all);
}

#[test]
fn damaged_headers_are_refused_as_their_format() {
    let dir = tempfile::tempdir().unwrap();
    let make = dir.path().join("make");
    std::fs::create_dir(&make).unwrap();
    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    let library = vmdk_library();
    let library = library.to_str().unwrap();
    let groups = [
        (vhd_cases(&make), vec![]),
        (qcow2_cases(&make), vec![]),
        (aerosparse_cases(&make), vec![]),
        (vmdk_cases(&make), vec!["--plugin", library]),
    ];
    for (cases, extra) in &groups {
        for c in cases {
            let path = bad.join(c.name);
            std::fs::write(&path, &c.bytes).unwrap();
            if c.sparse_len > c.bytes.len() as u64 {
                let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                file.set_len(c.sparse_len).unwrap();
            }
            refused(&path, &c.needles, extra);
            std::fs::remove_file(&path).unwrap();
        }
    }
}

#[test]
fn format_raw_still_reads_a_damaged_image_as_raw() {
    let dir = tempfile::tempdir().unwrap();
    let dynamic = made_by_qemu(
        dir.path(),
        "d.vhd",
        "vpc",
        "subformat=dynamic,force_size=on",
        "4M",
    );
    let damaged = edit_vhd_footers(&dynamic, |f| put_be64(f, 16, 0));
    let image = dir.path().join("damaged.vhd");
    std::fs::write(&image, &damaged).unwrap();
    let out = dir.path().join("out.raw");
    ok(run(&[
        "convert",
        "--format",
        "raw",
        image.to_str().unwrap(),
        out.to_str().unwrap(),
    ]));
    assert!(std::fs::read(&out).unwrap() == damaged);
    let info = ok(run(&[
        "inspect",
        "--format",
        "raw",
        image.to_str().unwrap(),
        "--json",
    ]));
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format"], "raw");
}

#[test]
fn a_closed_stdout_ends_inspect_quietly() {
    let image = fixture("v3.qcow2");
    // stdout is a socket whose reader is already gone: the first write fails with EPIPE.
    let (writer, reader) = std::os::unix::net::UnixStream::pair().unwrap();
    drop(reader);
    let out = aero()
        .args(["inspect", image.to_str().unwrap(), "--json"])
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(writer)))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(141), "{}", text(&out));
    assert!(out.stderr.is_empty(), "{}", text(&out));

    // The shell form: a reader that takes one byte and leaves.
    let out = Command::new("sh")
        .args([
            "-c",
            "\"$0\" inspect \"$1\" --json | head -c1",
            env!("CARGO_BIN_EXE_aero-host"),
            image.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"{", "{}", text(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", text(&out));
}
