//! `aero-host images` and `pull NAME[:VERSION]` against a registry served by nginx.

use crate::support::pull::Nginx;
use crate::support::serve::publish;
use crate::support::*;
use std::path::Path;

const CHUNK: u64 = 64 * 1024;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn catalog_images_list_sync_and_pull_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let image = dir.path().join("disk.raw");
    patterned_image(&image, CHUNK * 8, CHUNK, &[0, 5]);
    let version = publish(
        &format!("fs:{}", root.display()),
        &image,
        "debian",
        CHUNK,
        &[],
    );
    let disk_sha = sha256(&std::fs::read(&image).unwrap());
    qcow2_of(&image, &root.join("alpine.qcow2"));
    let qcow_sha = sha256(&std::fs::read(root.join("alpine.qcow2")).unwrap());
    let nginx = Nginx::start(&root);
    let manifest = nginx.url(&format!("/images/debian/{version}/manifest.json"));
    std::fs::write(
        root.join("registry.toml"),
        format!(
            "[[images]]\nname = \"debian\"\nversion = \"12.4\"\nreleased_at = \"2024-01-01\"\narch = \"x86_64\"\n\
             manifest = \"{manifest}\"\nsha256 = \"{}\"\n\n\
             [[images]]\nname = \"debian\"\nversion = \"12.5\"\nreleased_at = \"2024-02-10\"\narch = \"x86_64\"\n\
             manifest = \"{manifest}\"\nsha256 = \"{disk_sha}\"\n\n\
             [[includes]]\nurl = \"more.toml\"\n",
            "0".repeat(64)
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("more.toml"),
        format!(
            "[[images]]\nname = \"alpine\"\nversion = \"3.19\"\nurl = \"{}\"\nformat = \"qcow2\"\nsha256 = \"{qcow_sha}\"\n",
            nginx.url("/alpine.qcow2")
        ),
    )
    .unwrap();
    let registry = nginx.url("/registry.toml");
    let catalog_dir = dir.path().join("catalog");
    let cat = ["--catalog-dir", s(&catalog_dir)];

    let listed: serde_json::Value = serde_json::from_slice(
        &ok(run(&[
            &[
                "images",
                "ls",
                "--registry",
                &registry,
                "--arch",
                "x86_64",
                "--json",
            ][..],
            &cat,
        ]
        .concat()))
        .stdout,
    )
    .unwrap();
    let refs: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}:{}",
                i["name"].as_str().unwrap(),
                i["version"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(refs, ["debian:12.4", "debian:12.5", "alpine:3.19"]);

    // Without a registry or a local copy: a clear error.
    fails_with(
        &run(&[&["images", "ls"][..], &cat].concat()),
        &["no registry", "images sync"],
    );
    ok(run(&[
        &["images", "sync", "--registry", &registry][..],
        &cat,
    ]
    .concat()));
    assert!(catalog_dir.join("registry.toml").is_file());
    // A failed sync keeps the last good copy and says so.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[images]\n").unwrap();
    fails_with(
        &run(&[&["images", "sync", "--registry", s(&bad)][..], &cat].concat()),
        &["is invalid", "last good copy"],
    );
    let text = String::from_utf8(ok(run(&[&["images", "ls"][..], &cat].concat())).stdout).unwrap();
    assert!(text.contains("alpine:3.19"), "{text}");

    // The latest debian (12.5) from the local copy, checked against the catalog's digest.
    let out = dir.path().join("debian.raw");
    let summary = json(&ok(run(&[
        &[
            "pull",
            "debian",
            "--arch",
            "x86_64",
            "-o",
            s(&out),
            "--no-cache",
            "--json",
        ][..],
        &cat,
    ]
    .concat())));
    assert_eq!(summary["disk_digest_checked"], true);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&image).unwrap());

    // 12.4's catalog digest is wrong: refused, nothing under the final name.
    let out = dir.path().join("old.raw");
    fails_with(
        &run(&[
            &[
                "pull",
                "debian:12.4",
                "--arch",
                "x86_64",
                "-o",
                s(&out),
                "--no-cache",
            ][..],
            &cat,
        ]
        .concat()),
        &["sha256 is", "the catalog says"],
    );
    assert!(!out.exists());

    // A qcow2 disk file, converted natively to raw.
    let out = dir.path().join("alpine.raw");
    ok(run(&[
        &[
            "pull",
            "alpine:3.19",
            "-o",
            s(&out),
            "--registry",
            &registry,
        ][..],
        &cat,
    ]
    .concat()));
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&image).unwrap());

    // An unknown name.
    fails_with(
        &run(&[
            &["pull", "fedora", "-o", s(&out), "--registry", &registry][..],
            &cat,
        ]
        .concat()),
        &["no image fedora"],
    );
    // A registry that includes itself.
    let selfish = dir.path().join("self.toml");
    std::fs::write(&selfish, "[[includes]]\nurl = \"self.toml\"\n").unwrap();
    fails_with(
        &run(&["images", "ls", "--registry", s(&selfish)]),
        &["includes itself"],
    );
}

#[test]
fn run_pull_jobs_with_a_catalog_table() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let image = dir.path().join("disk.raw");
    patterned_image(&image, CHUNK * 6, CHUNK, &[1, 4]);
    let version = publish(&format!("fs:{}", root.display()), &image, "deb", CHUNK, &[]);
    let nginx = Nginx::start(&root);
    let manifest = nginx.url(&format!("/images/deb/{version}/manifest.json"));
    std::fs::write(
        root.join("registry.toml"),
        format!("[[images]]\nname = \"deb\"\nversion = \"1\"\nmanifest = \"{manifest}\"\n"),
    )
    .unwrap();
    let config = write_config(
        dir.path(),
        "pulls.toml",
        &format!(
            "[catalog]\nregistry = \"{}\"\nfallback_registries = [\"missing.toml\"]\ndir = \"catalog\"\n\n\
             [[pull]]\nsource = \"deb:1\"\nout = \"by-name.raw\"\nno_cache = true\n\n\
             [[pull]]\nsource = \"{manifest}\"\nout = \"by-url.raw\"\ncache_dir = \"cache\"\n",
            nginx.url("/registry.toml")
        ),
    );
    let out = ok(run(&["run", s(&config), "--json"]));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2, "{}", text(&out));
    assert_eq!(lines[0]["image_id"], "deb");
    for name in ["by-name.raw", "by-url.raw"] {
        assert_eq!(
            std::fs::read(dir.path().join(name)).unwrap(),
            std::fs::read(&image).unwrap(),
            "{name}"
        );
    }
    assert!(
        dir.path().join("catalog/registry.toml").is_file(),
        "auto-synced"
    );
    assert!(dir.path().join("cache/objects").is_dir());
}
