//! Headless Chromium as a client: a page on one origin fetches the manifest and chunks of a
//! published image from `aero-host serve` on another origin (simple GETs, no preflight) and a
//! Range read (preflighted), checks sha256 with WebCrypto and posts its verdict back.

use crate::support::browser::chromium_verdict;
use crate::support::serve::*;
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
  const mr = await fetch(BASE + "/chunked/manifest.json");
  if (mr.status !== 200) throw new Error("manifest status " + mr.status);
  if (!(mr.headers.get("cache-control") || "").includes("no-transform")) throw new Error("manifest cache-control");
  const m = await mr.json();
  const width = m.chunkIndexWidth;
  for (const i of [0, 1, m.chunkCount - 1]) {
    const name = String(i).padStart(width, "0") + ".bin";
    const r = await fetch(BASE + "/chunked/chunks/" + name);
    if (r.status !== 200) throw new Error(name + " status " + r.status);
    const enc = r.headers.get("content-encoding");
    if (enc !== "identity") throw new Error(name + " content-encoding " + enc);
    const etag = r.headers.get("etag");
    const got = await hex(await r.arrayBuffer());
    if (got !== m.chunks[i].sha256) throw new Error(name + " sha256 " + got);
    if (etag !== '"' + got + '"') throw new Error(name + " etag " + etag);
    out.checks.push(name);
  }
  const rr = await fetch(BASE, {headers: {"Range": "bytes=" + RANGE[0] + "-" + RANGE[1], "If-None-Match": '"not-this"'}});
  if (rr.status !== 206) throw new Error("range status " + rr.status);
  const cr = rr.headers.get("content-range");
  if (!cr || !cr.startsWith("bytes " + RANGE[0] + "-" + RANGE[1] + "/")) throw new Error("content-range " + cr);
  const rh = await hex(await rr.arrayBuffer());
  if (rh !== RANGE_SHA) throw new Error("range sha256 " + rh);
  out.checks.push("range");
  return out;
}
main().then(o => ({ok: true, ...o}), e => ({ok: false, error: String(e)}))
  .then(v => fetch("/verdict", {method: "POST", body: JSON.stringify(v)}))
  .finally(() => { document.title = "done"; });
</script></body></html>"#;

#[test]
fn chromium_fetches_chunks_and_ranges_cross_origin() {
    let root = tempfile::tempdir().unwrap();
    let storage = format!("fs:{}", root.path().display());
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src.raw");
    let data = make_raw(&src, 3 * 1024 * 1024 + 2048);
    publish(&storage, &src, "web", 1024 * 1024, &[]);

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let page_origin = format!("http://{}", listener.local_addr().unwrap());
    let srv = Server::start(&storage, &["--cors-origin", &page_origin], &[]);
    let (start, end) = (1024 * 1024 - 100, 1024 * 1024 + 4000);
    let page = PAGE
        .replace("__BASE__", &srv.url("/v1/images/web"))
        .replace("__START__", &start.to_string())
        .replace("__END__", &end.to_string())
        .replace("__RANGE_SHA__", &sha256(&data[start..=end]));
    let v = chromium_verdict(listener, page, String::new());
    let verdict = v.to_string();
    assert_eq!(v["ok"], true, "page verdict: {verdict}");
    assert_eq!(v["checks"].as_array().unwrap().len(), 4, "{verdict}");

    // The chunk GETs were simple requests; only the Range read was preflighted.
    let (_, _, body) = curl(&[&srv.url("/metrics")]);
    let text = String::from_utf8(body).unwrap();
    let count = |needle: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(needle))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert_eq!(
        count("http_requests_total{route=\"/v1/images/:image_id\",method=\"OPTIONS\""),
        1,
        "{text}"
    );
    assert_eq!(
        count("http_requests_total{route=\"/v1/images/:image_id/chunked/chunks/:chunk_name\",method=\"OPTIONS\""),
        0
    );
    assert_eq!(
        count("http_requests_total{route=\"/v1/images/:image_id/chunked/chunks/:chunk_name\",method=\"GET\",status=\"200\""),
        3
    );
}
