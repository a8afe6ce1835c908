//! `aero-host gateway` as a process: its settings and token commands, and a browser upload
//! (headless Chromium: `File.slice` + `fetch` PUTs to the presigned URLs) that the gateway
//! converts, then reads back through the range proxy and the chunked routes — and that
//! `aero-host serve` on the same bucket streams by id.

use crate::support::browser::chromium_verdict_with;
use crate::support::serve::*;
use crate::support::{aero, fails_with, ok, sha256, text};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `aero-host gateway ARGS` with the SPEC variables of the test bucket (and none of the caller's).
pub(crate) fn gateway(s3: &S3, args: &[&str]) -> Command {
    let mut cmd = aero();
    for var in [
        "S3_BUCKET",
        "S3_ENDPOINT",
        "S3_FORCE_PATH_STYLE",
        "DATABASE_URL",
        "AUTH_MODE",
        "PORT",
        "MULTIPART_PART_SIZE_BYTES",
        "IMAGE_BASE_PATH",
        "IMAGE_CACHE_CONTROL",
        "CORS_ALLOW_ORIGIN",
        "CROSS_ORIGIN_RESOURCE_POLICY",
        "AERO_GATEWAY_LEASE_KEYS",
        "CLOUDFRONT_DOMAIN",
        "CLOUDFRONT_KEY_PAIR_ID",
        "CLOUDFRONT_PRIVATE_KEY_PEM",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("gateway")
        .args(args)
        .env("S3_BUCKET", aero_test_support::BUCKET)
        .env("AWS_REGION", "us-east-1")
        .env("S3_ENDPOINT", &s3.endpoint)
        .env("S3_FORCE_PATH_STYLE", "true")
        .env("AWS_ACCESS_KEY_ID", AK)
        .env("AWS_SECRET_ACCESS_KEY", SK);
    cmd
}

#[test]
fn gateway_settings_name_what_is_wrong() {
    let s3 = S3::start(aero_test_support::BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("g.sqlite").display());
    let out = gateway(&s3, &["--database", &db])
        .env_remove("S3_BUCKET")
        .output()
        .unwrap();
    fails_with(&out, &["S3_BUCKET"]);
    for (var, value, needle) in [
        (
            "MULTIPART_PART_SIZE_BYTES",
            "1024",
            "MULTIPART_PART_SIZE_BYTES",
        ),
        ("AUTH_MODE", "open", "AUTH_MODE"),
        (
            "CORS_ALLOW_ORIGIN",
            "https://a.example/x",
            "CORS_ALLOW_ORIGIN",
        ),
        ("IMAGE_CACHE_CONTROL", "forever", "IMAGE_CACHE_CONTROL"),
        (
            "AERO_GATEWAY_LEASE_KEYS",
            "/nonexistent/lease-keys.json",
            "lease-keys.json",
        ),
        (
            "AERO_GATEWAY_LEASE_TTL_SECONDS",
            "7200",
            "lease_ttl_seconds",
        ),
    ] {
        let out = gateway(&s3, &["--database", &db])
            .env(var, value)
            .output()
            .unwrap();
        fails_with(&out, &[needle]);
    }
    let out = gateway(&s3, &["--database", "mysql://x"]).output().unwrap();
    fails_with(&out, &["mysql://x"]);
}

#[test]
fn gateway_tokens_are_created_once_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("g.sqlite").display());
    let out = ok(aero()
        .args([
            "gateway",
            "token",
            "create",
            "--user",
            "alice",
            "--database",
            &db,
        ])
        .output()
        .unwrap());
    let token = String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .to_string();
    assert!(
        token.starts_with("agw_") && token.len() > 64,
        "{}",
        text(&out)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(&token),
        "the token is not logged"
    );
    // Only its hash is stored.
    let stored = std::fs::read(dir.path().join("g.sqlite")).unwrap();
    let secret = token.rsplit('_').next().unwrap();
    assert!(!stored.windows(secret.len()).any(|w| w == secret.as_bytes()));
    ok(aero()
        .args([
            "gateway",
            "token",
            "revoke",
            "--user",
            "alice",
            "--database",
            &db,
        ])
        .output()
        .unwrap());
    let out = aero()
        .args([
            "gateway",
            "token",
            "revoke",
            "--user",
            "alice",
            "--database",
            &db,
        ])
        .output()
        .unwrap();
    fails_with(&out, &["alice", "no live token"]);
}

/// A running `aero-host gateway`.
pub(crate) struct Gateway {
    child: Child,
    pub base: String,
}

impl Gateway {
    fn start(s3: &S3, db: &str) -> Gateway {
        Gateway::start_with(s3, db, &[], Stdio::inherit())
    }

    /// A gateway on `db` with 5 MiB parts, 1 MiB chunks, the extra `args`, its log to `log`.
    pub(crate) fn start_with(s3: &S3, db: &str, args: &[&str], log: Stdio) -> Gateway {
        let mut child = gateway(
            s3,
            &[
                "--listen-addr",
                "127.0.0.1:0",
                "--database",
                db,
                "--chunk-size",
                "1048576",
            ],
        )
        .args(args)
        .env("MULTIPART_PART_SIZE_BYTES", "5242880")
        .env("AERO_GATEWAY_JOB_POLL_INTERVAL_MS", "100")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from the gateway: {line:?}"))
            .to_string();
        Gateway { child, base }
    }
}

impl Gateway {
    /// Stops the gateway with SIGTERM and waits for it.
    pub(crate) fn terminate(&mut self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PAGE: &str = r#"<!doctype html><html><body><script>
const GW = "__GW__", SIZE = __SIZE__;
const H = {"X-User-Id": "alice", "Content-Type": "application/json"};
async function hex(buf) {
  const d = await crypto.subtle.digest("SHA-256", buf);
  return [...new Uint8Array(d)].map(b => b.toString(16).padStart(2, "0")).join("");
}
async function api(method, path, body) {
  const r = await fetch(GW + path, {method, headers: H, body: body && JSON.stringify(body)});
  if (!r.ok) throw new Error(method + " " + path + ": " + r.status + " " + await r.text());
  return r.json();
}
async function main() {
  // The disk: deterministic bytes, as a File the way a file input would give it.
  const bytes = new Uint8Array(SIZE);
  let x = 0x12345678;
  for (let i = 0; i < SIZE; i += 4) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; bytes[i] = x & 255; bytes[i + 1] = (x >>> 8) & 255; }
  const file = new File([bytes], "disk.img");
  const made = await api("POST", "/v1/images");
  const parts = [];
  for (let n = 1, off = 0; off < file.size; n++, off += made.partSize) {
    const {url} = await api("POST", `/v1/images/${made.imageId}/upload-url`, {uploadId: made.uploadId, partNumber: n});
    const put = await fetch(url, {method: "PUT", body: file.slice(off, off + made.partSize)});
    if (put.status !== 200) throw new Error("PUT part " + n + ": " + put.status);
    parts.push({partNumber: n, etag: put.headers.get("etag")});
  }
  await api("POST", `/v1/images/${made.imageId}/complete`, {uploadId: made.uploadId, parts});
  let rec;
  for (let i = 0; i < 600; i++) {
    rec = await api("GET", `/v1/images/${made.imageId}`);
    if (rec.state !== "processing") break;
    await new Promise(r => setTimeout(r, 100));
  }
  if (rec.state !== "ready") throw new Error("state " + JSON.stringify(rec));
  const stream = await api("GET", `/v1/images/${made.imageId}/stream-url`);
  const whole = await (await fetch(stream.url, {headers: {"X-User-Id": "alice"}})).arrayBuffer();
  const ranged = await fetch(stream.url, {headers: {"X-User-Id": "alice", "Range": "bytes=1000-1999"}});
  if (ranged.status !== 206) throw new Error("range status " + ranged.status);
  const manifest = await (await fetch(stream.chunked.manifestUrl, {headers: {"X-User-Id": "alice"}})).json();
  const chunks = [];
  for (let i = 0; i < manifest.chunkCount; i++) {
    const url = new URL(`chunks/${String(i).padStart(8, "0")}.bin`, stream.chunked.manifestUrl);
    chunks.push(new Uint8Array(await (await fetch(url, {headers: {"X-User-Id": "alice"}})).arrayBuffer()));
  }
  const joined = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  chunks.reduce((off, c) => (joined.set(c, off), off + c.length), 0);
  return {ok: true, imageId: made.imageId, upload: await hex(bytes), range: await hex(whole),
          chunked: await hex(joined), part: await hex(await ranged.arrayBuffer()),
          partWant: await hex(bytes.slice(1000, 2000))};
}
main().catch(e => ({ok: false, error: String(e)}))
  .then(v => fetch("/verdict", {method: "POST", body: JSON.stringify(v)}));
</script></body></html>"#;

#[test]
fn a_browser_upload_is_converted_and_streamed_by_gateway_and_serve() {
    let s3 = S3::start(aero_test_support::BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        &s3,
        &format!("sqlite:{}", dir.path().join("g.sqlite").display()),
    );

    let size = 11 * 1024 * 1024 + 512;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let page = PAGE
        .replace("__GW__", &gw.base)
        .replace("__SIZE__", &size.to_string());
    // The gateway answers CORS itself (preflights included). s3s-fs sends no CORS headers, so
    // the PUTs to its presigned URLs (and reading their ETag) need this browser's web security
    // off; against AWS S3 a bucket CORS rule (PUT allowed, ETag exposed) does the same.
    let v = chromium_verdict_with(
        listener,
        page,
        String::new(),
        &["--disable-web-security"],
        Duration::from_secs(180),
    );
    let verdict = v.to_string();
    assert_eq!(v["ok"], true, "page verdict: {verdict}");
    assert_eq!(v["range"], v["upload"], "range proxy bytes: {verdict}");
    assert_eq!(v["chunked"], v["upload"], "chunked bytes: {verdict}");
    assert_eq!(v["part"], v["partWant"], "a 206 part: {verdict}");

    // `aero-host serve` on the same bucket refuses the image while it is private (the
    // gateway's default; serve has no lease keys here) and streams it by id once its owner
    // makes it public.
    let id = v["imageId"].as_str().unwrap();
    let srv = Server::on_gateway_bucket(&s3, &[]);
    assert_eq!(curl(&[&srv.url(&format!("/v1/images/{id}"))]).0, 403);
    let (status, _, _) = curl(&[
        "-X",
        "PATCH",
        "-H",
        "X-User-Id: alice",
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"visibility":"public"}"#,
        &format!("{}/v1/images/{id}", gw.base),
    ]);
    assert_eq!(status, 200);
    let body = crate::gateway_access::answers(&[&srv.url(&format!("/v1/images/{id}"))], 200);
    assert_eq!(sha256(&body), v["upload"].as_str().unwrap());
}

#[test]
fn every_gateway_setting_is_documented_and_in_the_example_config() {
    let out = ok(aero().args(["gateway", "--help"]).output().unwrap());
    let help = String::from_utf8(out.stdout).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let docs = std::fs::read_to_string(root.join("docs/gateway.md")).unwrap();
    let example = std::fs::read_to_string(root.join("config.example.toml")).unwrap();
    let keys: Vec<String> = help
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .map(|l| l.split([' ', '=']).next().unwrap().replace('-', "_"))
        .filter(|k| k != "help" && k != "log_level" && k != "storage" && k != "plugin")
        .collect();
    assert!(keys.len() >= 27, "{keys:?}");
    for key in keys {
        assert!(
            docs.contains(&format!("| `{key}` |")),
            "docs/gateway.md lacks {key}"
        );
        assert!(
            example.contains(&format!("# {key} = ")),
            "config.example.toml lacks {key}"
        );
    }
}

#[test]
fn the_gateway_table_of_run_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[storage]\ntype = \"memory\"\n\n[gateway]\ns3_bucket = \"b\"\naws_region = \"r\"\n\
         aws_access_key_id = \"k\"\naws_secret_access_key = \"s\"\nauth_mode = \"open\"\n",
    )
    .unwrap();
    let out = aero()
        .arg("run")
        .arg(&config)
        .env_remove("AUTH_MODE")
        .output()
        .unwrap();
    fails_with(&out, &["AUTH_MODE", "open"]);
    std::fs::write(
        &config,
        "[storage]\ntype = \"memory\"\n\n[gateway]\nno_such_key = 1\n",
    )
    .unwrap();
    let out = aero().arg("run").arg(&config).output().unwrap();
    fails_with(&out, &["no_such_key"]);
}
