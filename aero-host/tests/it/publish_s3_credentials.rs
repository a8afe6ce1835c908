//! S3 credentials from the standard chain's shared files and named profiles (the environment
//! and explicit keys are covered by the other S3 tests), against a real S3 server.

use crate::support::*;

#[test]
fn a_named_profile_in_the_shared_credentials_file_is_used() {
    let s3 = S3Server::start();
    let work = tempfile::tempdir().unwrap();
    let credentials = work.path().join("credentials");
    std::fs::write(
        &credentials,
        format!(
            "[default]\naws_access_key_id = nobody\naws_secret_access_key = wrong\n\n\
             [aero]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        ),
    )
    .unwrap();
    let config_file = work.path().join("config");
    std::fs::write(&config_file, "[profile aero]\nregion = us-east-1\n").unwrap();
    let image = work.path().join("disk.raw");
    patterned_image(&image, 256 * 1024, 65536, &[1]);
    let publish = |profile: &str| {
        aero()
            .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
            .env("AWS_CONFIG_FILE", &config_file)
            .arg("--storage")
            .arg(format!("{}&profile={profile}", s3.storage()))
            .args(["publish", "--file"])
            .arg(&image)
            .args([
                "--prefix",
                &format!("images/{profile}/"),
                "--image-version",
                "v1",
                "--chunk-size",
                "65536",
                "--retries",
                "1",
                "--json",
            ])
            .output()
            .unwrap()
    };

    let summary = json(&ok(publish("aero")));
    assert_eq!(summary["chunk_count"], 4);
    assert!(s3
        .bucket_dir()
        .join("images/aero/v1/manifest.json")
        .is_file());

    // The default profile's keys are wrong: refused, nothing written.
    let out = publish("default");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!s3.bucket_dir().join("images/default").exists());
}
