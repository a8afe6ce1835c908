//! Round trip of every qemu-made fixture with known bytes: publish to `fs` through the
//! binary, concatenate the chunks, and compare with qemu's sha256 of the guest-visible bytes.

use crate::support::*;

#[test]
fn every_fixture_round_trips_through_fs() {
    let set = fixture_set();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let storage = format!("fs:{}", store.display());
    let mut done = Vec::new();
    for (n, fx) in set.entries().iter().enumerate() {
        let Some(expected) = &fx.sha256 else { continue };
        // VMDK is a dynamic plugin, tested with the plugin suite.
        if fx.qemu_format == "vmdk" {
            continue;
        }
        let id = format!("fixture{n}");
        let mut args = vec![
            "--storage",
            &storage,
            "publish",
            "--file",
            fx.path.to_str().unwrap(),
            "--prefix",
            "images/",
            "--image-id",
            &id,
            "--compute-version",
            "sha256",
            "--chunk-size",
            "2097152",
            "--json",
        ];
        if fx.has_backing() {
            args.push("--allow-backing");
        }
        let out = run(&args);
        assert!(out.status.success(), "{}: {}", fx.name, text(&out));
        let summary = json(&out);
        let version = format!("sha256-{expected}");
        for key in [
            "image_id",
            "version",
            "manifest_key",
            "chunk_count",
            "bytes_read",
            "bytes_uploaded",
            "zero_chunks",
            "seconds",
        ] {
            assert!(
                summary.get(key).is_some(),
                "{}: summary lacks {key}: {summary}",
                fx.name
            );
        }
        assert_eq!(summary["image_id"], id.as_str(), "{}", fx.name);
        assert_eq!(summary["version"], version.as_str(), "{}", fx.name);
        let size = fx.virtual_size.unwrap();
        assert_eq!(
            summary["chunk_count"],
            size.div_ceil(2097152),
            "{}",
            fx.name
        );
        let manifest_key = format!("images/{id}/{version}/manifest.json");
        assert_eq!(
            summary["manifest_key"],
            manifest_key.as_str(),
            "{}",
            fx.name
        );
        let version_dir = store.join(format!("images/{id}/{version}"));
        let m = manifest(&version_dir.join("manifest.json"));
        assert_eq!(m["version"], version.as_str(), "{}", fx.name);
        assert_eq!(m["totalSize"], size, "{}", fx.name);
        assert_eq!(
            &concat_chunks_sha256(&version_dir),
            expected,
            "{}: chunks differ from qemu's bytes",
            fx.name
        );
        let uploaded = summary["bytes_uploaded"].as_u64().unwrap();
        let zero = summary["zero_chunks"].as_u64().unwrap();
        assert!(uploaded <= size, "{}: {summary}", fx.name);
        assert!(
            uploaded + zero * 2097152 >= size,
            "{}: only data chunks may be skipped: {summary}",
            fx.name
        );
        done.push(fx.name.clone());
    }
    for name in [
        "src.raw",
        "v3.qcow2",
        "overlay.qcow2",
        "dynamic.vhd",
        "src.aerosparse",
    ] {
        assert!(
            done.iter().any(|d| d == name),
            "{name} not covered: {done:?}"
        );
    }
}

#[test]
fn overlay_needs_allow_backing_and_says_how() {
    let work = tempfile::tempdir().unwrap();
    let storage = format!("fs:{}", work.path().join("store").display());
    let overlay = fixture("overlay.qcow2");
    let out = run(&[
        "--storage",
        &storage,
        "publish",
        "--file",
        overlay.to_str().unwrap(),
        "--prefix",
        "images/overlay/v1/",
    ]);
    fails_with(&out, &["backing", "--allow-backing"]);
    assert!(!work.path().join("store/images").exists());
}
