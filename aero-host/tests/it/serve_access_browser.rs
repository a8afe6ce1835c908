//! Headless Chromium reads a private image through `serve` from another origin: the page's
//! origin sets the lease cookie (as a gateway on the same site would), and credentialed
//! fetches through the CORS allowlist get exactly the image's bytes; the same fetches without
//! credentials get 401 with a readable JSON error and no image bytes.

use crate::support::browser::chromium_verdict;
use crate::support::lease::Keys;
use crate::support::serve::*;
use aero_access::visibility::{access_key, to_json};
use aero_access::Visibility;
use std::net::TcpListener;

const PAGE: &str = r#"<!doctype html><html><head><title>running</title></head><body><script>
const BASE = "__BASE__";
const RANGE = [__START__, __END__];
const RANGE_SHA = "__RANGE_SHA__";
async function hex(buf) {
  const d = await crypto.subtle.digest("SHA-256", buf);
  return [...new Uint8Array(d)].map(b => b.toString(16).padStart(2, "0")).join("");
}
async function main() {
  const out = {checks: []};
  const range = {"Range": "bytes=" + RANGE[0] + "-" + RANGE[1]};
  const rr = await fetch(BASE, {credentials: "include", headers: range});
  if (rr.status !== 206) throw new Error("with the cookie: range status " + rr.status);
  if (!(rr.headers.get("cache-control") || "").includes("no-store, no-transform")) throw new Error("cache-control " + rr.headers.get("cache-control"));
  const rh = await hex(await rr.arrayBuffer());
  if (rh !== RANGE_SHA) throw new Error("range sha256 " + rh);
  out.checks.push("range");
  const mr = await fetch(BASE + "/chunked/manifest.json", {credentials: "include"});
  if (mr.status !== 200) throw new Error("manifest status " + mr.status);
  const m = await mr.json();
  const cr = await fetch(BASE + "/chunked/chunks/" + "0".repeat(m.chunkIndexWidth) + ".bin", {credentials: "include"});
  const ch = await hex(await cr.arrayBuffer());
  if (cr.status !== 200 || ch !== m.chunks[0].sha256) throw new Error("chunk " + cr.status + " " + ch);
  out.checks.push("chunk");
  for (const url of [BASE, BASE + "/chunked/manifest.json"]) {
    const nr = await fetch(url, {credentials: "omit", headers: range});
    if (nr.status !== 401) throw new Error("without the cookie: status " + nr.status);
    const body = await nr.text();
    const e = JSON.parse(body);
    if (e.error.code !== "unauthorized") throw new Error("error code " + e.error.code);
    if (body.length > 512) throw new Error("refusal body of " + body.length + " bytes");
    out.checks.push("refused");
  }
  return out;
}
main().then(o => ({ok: true, ...o}), e => ({ok: false, error: String(e)}))
  .then(v => fetch("/verdict", {method: "POST", body: JSON.stringify(v)}))
  .finally(() => { document.title = "done"; });
</script></body></html>"#;

#[test]
fn chromium_reads_a_private_image_with_a_lease_cookie_cross_origin() {
    let root = tempfile::tempdir().unwrap();
    let storage = format!("fs:{}", root.path().display());
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src.raw");
    let data = make_raw(&src, 2 * 1024 * 1024 + 1024);
    publish(&storage, &src, "secret", 1024 * 1024, &[]);
    std::fs::write(
        root.path().join(access_key("images/", "secret")),
        to_json(Visibility::Private),
    )
    .unwrap();
    let keys = Keys::write(work.path(), "keys.json", "k1", &[("k1", "5e")]);

    // The page and the server share a host (one site) on different ports (two origins).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let page_origin = format!("http://{}", listener.local_addr().unwrap());
    let srv = Server::start(
        &storage,
        &["--cors-origin", &page_origin, "--lease-keys", &keys.arg()],
        &[],
    );
    let (start, end) = (1024 * 1024 - 300, 1024 * 1024 + 5000);
    let page = PAGE
        .replace("__BASE__", &srv.url("/v1/images/secret"))
        .replace("__START__", &start.to_string())
        .replace("__END__", &end.to_string())
        .replace("__RANGE_SHA__", &sha256(&data[start..=end]));
    let cookie = format!(
        "set-cookie: aero_lease={}; Path=/; HttpOnly; SameSite=Lax\r\n",
        keys.mint("secret", None)
    );
    let v = chromium_verdict(listener, page, cookie);
    assert_eq!(v["ok"], true, "page verdict: {v}");
    assert_eq!(
        v["checks"],
        serde_json::json!(["range", "chunk", "refused", "refused"]),
        "{v}"
    );
}
