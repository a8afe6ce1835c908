//! A published version never changes: re-running the same publish completes or repairs it,
//! publishing other bytes under the same version is refused before anything is overwritten.

use crate::support::*;

fn publish(store: &std::path::Path, image: &std::path::Path) -> std::process::Output {
    aero()
        .arg("--storage")
        .arg(format!("fs:{}", store.display()))
        .args(["publish", "--file"])
        .arg(image)
        .args([
            "--prefix",
            "images/",
            "--image-id",
            "disk",
            "--image-version",
            "v1",
            "--chunk-size",
            "65536",
            "--json",
        ])
        .output()
        .unwrap()
}

#[test]
fn other_bytes_under_a_published_version_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let first = work.path().join("first.raw");
    let second = work.path().join("second.raw");
    patterned_image(&first, 1 << 20, 65536, &[0, 3, 9]);
    patterned_image(&second, 1 << 20, 65536, &[0, 4, 9]);
    ok(publish(&store, &first));
    let version_dir = store.join("images/disk/v1");
    let before = concat_chunks_sha256(&version_dir);

    // The same image again: nothing to do, nothing refused.
    let again = json(&ok(publish(&store, &first)));
    assert_eq!(again["skipped_chunks"], 16);

    // Other bytes: refused, naming the version, and the published chunks are untouched.
    let out = publish(&store, &second);
    fails_with(&out, &["v1", "immutable", "--image-version"]);
    assert_eq!(concat_chunks_sha256(&version_dir), before);

    // Another size: refused up front.
    let bigger = work.path().join("bigger.raw");
    patterned_image(&bigger, 2 << 20, 65536, &[0]);
    fails_with(
        &publish(&store, &bigger),
        &["already published", "immutable"],
    );
    assert_eq!(concat_chunks_sha256(&version_dir), before);
}
