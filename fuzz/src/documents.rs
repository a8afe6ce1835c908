//! The chunked-format documents (`manifest.json`, `meta.json`, `latest.json`, the catalog):
//! whatever a parser accepts obeys the SPEC rules, and serialising it and parsing the result
//! gives the same value.

use aero_chunked::format::{
    catalog, Latest, Manifest, ManifestLimits, Meta, LATEST_SCHEMA, MANIFEST_SCHEMA,
    MANIFEST_VERSION_PREFIX, MAX_CHUNK_SIZE,
};
use aero_chunked::layout;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::SystemTime;

/// An image root the pointer rules are checked against.
const ROOT: &str = "images/fuzz/";

/// A manifest the parser accepts keeps every rule of SPEC 1.4, names its chunks one to one,
/// and survives serialising and parsing unchanged.
pub fn check_manifest(data: &[u8]) {
    let limits = ManifestLimits::default();
    let Ok(m) = Manifest::parse(data, limits) else {
        return;
    };
    check_manifest_rules(&m, limits);
    let json = m.to_json();
    let again = Manifest::parse(&json, limits)
        .unwrap_or_else(|e| panic!("a serialised manifest is refused: {e}"));
    assert_eq!(again, m, "the manifest changed through serialising");
    assert_eq!(again.to_json(), json, "serialising is not stable");
}

fn check_manifest_rules(m: &Manifest, limits: ManifestLimits) {
    assert_eq!(m.schema, MANIFEST_SCHEMA);
    for (key, value) in [
        ("imageId", &m.image_id),
        ("version", &m.version),
        ("mimeType", &m.mime_type),
    ] {
        assert!(!value.trim().is_empty(), "{key} is blank");
    }
    assert!(m.total_size > 0 && m.total_size % 512 == 0, "totalSize");
    assert!(
        m.chunk_size > 0 && m.chunk_size % 512 == 0 && m.chunk_size <= MAX_CHUNK_SIZE,
        "chunkSize"
    );
    assert!(m.chunk_count > 0 && m.chunk_count <= limits.max_chunks);
    assert_eq!(m.chunk_count, m.total_size.div_ceil(m.chunk_size));
    let last = m.chunk_count - 1;
    assert!((1..=32).contains(&m.chunk_index_width));
    assert!(last.to_string().len() <= m.chunk_index_width as usize);
    // Rule 7: the derived sizes add up to totalSize.
    let last_len = m.chunk_len(last);
    assert!(
        (1..=m.chunk_size).contains(&last_len),
        "last chunk {last_len}"
    );
    assert_eq!(last * m.chunk_size + last_len, m.total_size);
    if let Some(chunks) = &m.chunks {
        assert_eq!(chunks.len() as u64, m.chunk_count);
        for (i, c) in chunks.iter().enumerate() {
            let i = i as u64;
            assert!(c.size.is_none_or(|s| s == m.chunk_len(i)), "chunk {i} size");
            if let Some(d) = &c.sha256 {
                assert!(d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()));
                assert_eq!(m.chunk_sha256(i), Some(d.to_ascii_lowercase()));
            }
        }
    }
    if m.version.starts_with(MANIFEST_VERSION_PREFIX) {
        let chunks = m
            .chunks
            .as_deref()
            .expect("an mh1- version has its chunk list");
        let version = aero_chunked::format::manifest_version(
            m.total_size,
            m.chunk_size,
            chunks.iter().enumerate().map(|(i, c)| {
                let digest = c
                    .sha256
                    .as_deref()
                    .expect("an mh1- version has every digest");
                (m.chunk_len(i as u64), digest)
            }),
        );
        assert_eq!(version, m.version, "an mh1- version that does not match");
    }
    // Chunk names and indexes map one to one, and no name reaches past the last chunk.
    for i in [0, last / 2, last] {
        let name = m.chunk_name(i);
        let file = name
            .strip_prefix(layout::CHUNKS_DIR)
            .expect("under chunks/");
        assert_eq!(m.chunk_index(file), Some(i), "{name}");
    }
    let past = layout::chunk_file_name(m.chunk_count, m.chunk_index_width);
    assert_eq!(m.chunk_index(&past), None, "{past} is past the last chunk");
}

/// A side-car the parser accepts survives serialising and parsing unchanged, and is checked
/// against a manifest of its own geometry without panicking.
pub fn check_meta(data: &[u8]) {
    let Ok(meta) = Meta::parse(data) else {
        return;
    };
    let json = meta.to_json();
    let again = Meta::parse(&json).unwrap_or_else(|e| panic!("a serialised meta is refused: {e}"));
    assert_eq!(again, meta, "meta.json changed through serialising");
    assert_eq!(again.to_json(), json, "serialising is not stable");
    let manifest = Manifest {
        schema: MANIFEST_SCHEMA.to_string(),
        image_id: "fuzz".to_string(),
        version: "v1".to_string(),
        mime_type: "application/octet-stream".to_string(),
        total_size: meta.total_size,
        chunk_size: meta.chunk_size,
        chunk_count: meta.chunk_count,
        chunk_index_width: 8,
        chunks: None,
    };
    meta.check_against(&manifest)
        .expect("meta agrees with a manifest of its own geometry");
    let mut other = manifest;
    other.chunk_count = other.chunk_count.wrapping_add(1);
    assert!(
        meta.check_against(&other).is_err(),
        "a chunkCount mismatch passes"
    );
}

/// A pointer the parser accepts keeps SPEC 1.6 rule 1 and non-blank ids, survives
/// serialising and parsing unchanged, and its location check agrees with the layout.
pub fn check_latest(data: &[u8]) {
    let Ok(latest) = Latest::parse(data) else {
        return;
    };
    assert_eq!(latest.schema, LATEST_SCHEMA);
    assert!(!latest.image_id.trim().is_empty() && !latest.version.trim().is_empty());
    let json = latest.to_json();
    let again =
        Latest::parse(&json).unwrap_or_else(|e| panic!("a serialised latest.json is refused: {e}"));
    assert_eq!(again, latest, "latest.json changed through serialising");
    assert_eq!(again.to_json(), json, "serialising is not stable");
    let expected = layout::manifest_key(&layout::version_prefix(ROOT, &latest.version));
    let located = latest.check_location(ROOT).is_ok();
    assert_eq!(
        located,
        layout::id_ok(&latest.version) && latest.manifest_key == expected,
        "check_location disagrees with the layout"
    );
    assert!(latest.check_image_id(&latest.image_id).is_ok());
    let rebuilt = Latest::new(&latest.image_id, &latest.version, &latest.manifest_key);
    assert_eq!(rebuilt, latest);
    if located {
        let manifest = Manifest::new(&latest.image_id, &latest.version, 512, 512, Vec::new());
        assert!(latest.check_against(ROOT, &expected, &manifest).is_ok());
        let moved = format!("{ROOT}{}-moved/manifest.json", latest.version);
        assert!(latest.check_against(ROOT, &moved, &manifest).is_err());
    }
}

/// A catalog the parser accepts holds valid, distinct ids, object keys that stay inside the
/// storage (relative, no `..`, no empty or `.` segment), quoted entity tags and valid versions;
/// written back as JSON, it parses to the same entries.
pub fn check_catalog(data: &[u8]) {
    let Ok(entries) = catalog::parse(data) else {
        return;
    };
    assert!(!entries.is_empty(), "an empty catalog is accepted");
    let mut ids = HashSet::new();
    for e in &entries {
        assert!(layout::id_ok(&e.id), "image id {:?}", e.id);
        assert!(ids.insert(e.id.as_str()), "image {} listed twice", e.id);
        if let Some(key) = &e.key {
            assert!(!key.starts_with('/') && !key.contains('\\') && !key.contains('\0'));
            assert!(
                key.split('/').all(|s| !matches!(s, "" | "." | "..")),
                "key {key:?} leaves or skips a directory"
            );
            assert_eq!(
                catalog::file_key(key).ok().as_ref(),
                Some(key),
                "key {key:?}"
            );
        }
        if let Some(etag) = &e.etag {
            assert!(
                catalog::valid_etag(etag) && etag.trim() == etag,
                "etag {etag:?}"
            );
        }
        if let Some(v) = &e.chunked_version {
            assert!(layout::id_ok(v), "chunked_version {v:?}");
        }
        if let Some(t) = e.last_modified {
            assert!(t >= SystemTime::UNIX_EPOCH, "last_modified before 1970");
        }
    }
    let written: Vec<Value> = entries.iter().map(entry_json).collect();
    for text in [json!({ "images": written }), Value::Array(written.clone())] {
        let again = catalog::parse(text.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("a written catalog is refused: {e}\n{text}"));
        assert_eq!(
            format!("{again:?}"),
            format!("{entries:?}"),
            "the catalog changed through writing it back"
        );
    }
}

/// The catalog entry `e` as the JSON object that describes it.
fn entry_json(e: &catalog::Entry) -> Value {
    let last_modified = e.last_modified.map(|t| {
        chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    });
    json!({
        "id": e.id,
        "file": e.key,
        "name": e.name,
        "description": e.description,
        "recommended_chunk_size_bytes": e.recommended_chunk_size_bytes,
        "chunked_version": e.chunked_version,
        "public": e.public,
        "etag": e.etag,
        "last_modified": last_modified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn seeds(target: &str) -> Vec<Vec<u8>> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(target);
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with("seed-")
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect()
    }

    /// The seeds are accepted documents, so the round trips and rule checks run on them.
    #[test]
    fn published_seeds_are_accepted() {
        for m in seeds("manifest") {
            let m = Manifest::parse(&m, ManifestLimits::default()).unwrap();
            check_manifest_rules(&m, ManifestLimits::default());
        }
        for m in seeds("meta") {
            Meta::parse(&m).unwrap();
        }
        for l in seeds("latest") {
            let l = Latest::parse(&l).unwrap();
            l.check_location(&format!("images/{}/", l.image_id))
                .unwrap();
        }
        for c in seeds("catalog") {
            catalog::parse(&c).unwrap();
        }
    }
}
