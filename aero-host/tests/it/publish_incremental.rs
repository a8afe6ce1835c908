//! Incremental publish through the binary on `fs`: a new version of an image with a
//! `latest.json` copies its unchanged chunks by default, `--base none` turns that off, an
//! unusable base is a warning, and the summary counts uploaded, copied and zero chunks.

use crate::support::*;
use std::path::Path;

const CHUNK: u64 = 64 * 1024;

fn publish(storage: &str, image: &Path, version: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "--storage",
        storage,
        "publish",
        "--file",
        image.to_str().unwrap(),
        "--prefix",
        "images/disk/",
        "--image-version",
        version,
        "--publish-latest",
        "--chunk-size",
        "65536",
        "--json",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn a_new_version_copies_unchanged_chunks_unless_told_not_to() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let storage = format!("fs:{}", root.display());
    // Eight chunks: data in 0, 1, 2, 5, 7; zeros elsewhere.
    let v1 = dir.path().join("v1.raw");
    patterned_image(&v1, 8 * CHUNK, CHUNK, &[0, 1, 2, 5, 7]);
    let first = json(&ok(publish(&storage, &v1, "v1", &[])));
    assert_eq!(first["copied_chunks"], 0, "{first}");
    assert_eq!(first["base_version"], serde_json::Value::Null);

    // v2: chunk 2 changed.
    let v2 = dir.path().join("v2.raw");
    patterned_image(&v2, 8 * CHUNK, CHUNK, &[0, 1, 2, 5, 7]);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&v2).unwrap();
        f.write_all_at(b"changed", 2 * CHUNK + 9).unwrap();
    }
    let second = json(&ok(publish(&storage, &v2, "v2", &[])));
    assert_eq!(second["base_version"], "v1", "{second}");
    assert_eq!(
        (&second["copied_chunks"], &second["bytes_copied"]),
        (&4.into(), &(4 * CHUNK).into()),
        "{second}"
    );
    assert_eq!(
        (&second["uploaded_chunks"], &second["bytes_uploaded"]),
        (&1.into(), &CHUNK.into())
    );
    assert_eq!(
        (&second["zero_chunks"], &second["zero_bytes"]),
        (&3.into(), &(3 * CHUNK).into())
    );
    // v2's chunks are v2's bytes; the copies are links to v1's files.
    assert_eq!(
        concat_chunks_sha256(&root.join("images/disk/v2")),
        sha256_file(&v2)
    );
    use std::os::unix::fs::MetadataExt;
    let inode = |v: &str| {
        std::fs::metadata(root.join(format!("images/disk/{v}/{}", chunk_name(7))))
            .unwrap()
            .ino()
    };
    assert_eq!(inode("v1"), inode("v2"));
    ok(run(&[
        "--storage",
        &storage,
        "verify",
        "--prefix",
        "images/disk/",
    ]));

    // --base none: everything uploaded.
    let third = json(&ok(publish(&storage, &v1, "v3", &["--base", "none"])));
    assert_eq!(
        (&third["copied_chunks"], &third["uploaded_chunks"]),
        (&0.into(), &5.into())
    );

    // A base that does not exist: a warning on stderr and in the summary, every chunk uploaded.
    let out = ok(publish(&storage, &v2, "v4", &["--base", "v9"]));
    let summary = json(&out);
    assert_eq!(summary["copied_chunks"], 0, "{summary}");
    assert!(
        stderr(&out).contains("warning: not using a base") && stderr(&out).contains("v9"),
        "{}",
        stderr(&out)
    );
    assert!(summary["warnings"][0].as_str().unwrap().contains("v9"));

    // The human summary says what was copied (v5 is latest now; v1 differs from it in chunk 2).
    ok(publish(&storage, &v2, "v5", &[]));
    let out = run(&[
        "--storage",
        &storage,
        "publish",
        "--file",
        v1.to_str().unwrap(),
        "--prefix",
        "images/disk/",
        "--image-version",
        "v6",
        "--chunk-size",
        "65536",
    ]);
    let line = stderr(&ok(out));
    assert!(
        line.contains("4 copied from base v5") && line.contains("1 uploaded"),
        "{line}"
    );
}
