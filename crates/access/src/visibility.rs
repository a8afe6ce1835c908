//! The visibility object: `<images prefix><id>/access.json`, beside `latest.json`, holding
//! `{"visibility": "private" | "shared" | "public"}`. The gateway writes it; `serve` reads it
//! (and nothing else) to decide whether a request needs a lease. A missing object means
//! public: images published without a gateway are served as they always were.

use aero_chunked::layout::image_root;
use aero_chunked::store::{put_durable, read_limited};
use aero_plugin_api::backend::{ObjectMeta, Storage};
use serde::{Deserialize, Serialize};

/// The object's name inside an image's directory.
pub const ACCESS_OBJECT: &str = "access.json";
/// The largest visibility object read.
pub const MAX_ACCESS_BYTES: u64 = 4096;
/// The Cache-Control the object is written with: nobody should cache who may read what.
pub const ACCESS_CACHE_CONTROL: &str = "no-store, no-transform";

/// Who may read an image's bytes without being its owner (SPEC 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// The owner only (the default of new images).
    Private,
    /// The owner, the users of the image's ACL and share-link holders.
    Shared,
    /// Anyone.
    Public,
}

impl Visibility {
    /// Its JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Shared => "shared",
            Visibility::Public => "public",
        }
    }

    /// The visibility named `name` (`private`, `shared` or `public`).
    pub fn from_name(name: &str) -> Option<Self> {
        [Visibility::Private, Visibility::Shared, Visibility::Public]
            .into_iter()
            .find(|v| v.as_str() == name)
    }
}

#[derive(Serialize, Deserialize)]
struct AccessObject {
    visibility: Visibility,
}

/// The key of the visibility object of `id` under `images_prefix` (e.g. `images/`).
pub fn access_key(images_prefix: &str, id: &str) -> String {
    format!("{}{ACCESS_OBJECT}", image_root(images_prefix, id))
}

/// Parses a visibility object.
pub fn parse(bytes: &[u8]) -> Result<Visibility, String> {
    serde_json::from_slice::<AccessObject>(bytes)
        .map(|o| o.visibility)
        .map_err(|e| {
            format!("{e} (expected {{\"visibility\": \"private\"|\"shared\"|\"public\"}})")
        })
}

/// The visibility object's bytes for `v`.
pub fn to_json(v: Visibility) -> Vec<u8> {
    serde_json::to_vec(&AccessObject { visibility: v }).expect("serialises")
}

/// Reads the visibility of `id`: `None` when it has no visibility object.
pub async fn read(
    storage: &Storage,
    images_prefix: &str,
    id: &str,
) -> aero_chunked::Result<Option<Visibility>> {
    let key = access_key(images_prefix, id);
    match read_limited(storage, &key, MAX_ACCESS_BYTES).await? {
        None => Ok(None),
        Some(bytes) => parse(&bytes)
            .map(Some)
            .map_err(|e| aero_chunked::Error::invalid(format!("visibility object {key}: {e}"))),
    }
}

/// Writes the visibility of `id`, durably (one PUT: readers see the old or the new object).
pub async fn write(
    storage: &Storage,
    images_prefix: &str,
    id: &str,
    v: Visibility,
) -> aero_chunked::Result<()> {
    let meta = ObjectMeta {
        content_type: "application/json".into(),
        cache_control: ACCESS_CACHE_CONTROL.into(),
        content_encoding: "identity".into(),
        sha256: None,
    };
    put_durable(storage, &access_key(images_prefix, id), to_json(v), &meta).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use aero_plugin_api::backend::{build_storage, Settings};

    #[test]
    fn parses_the_three_values_and_names_bad_ones() {
        for v in [Visibility::Private, Visibility::Shared, Visibility::Public] {
            assert_eq!(parse(&to_json(v)), Ok(v));
            assert_eq!(Visibility::from_name(v.as_str()), Some(v));
            assert_eq!(
                String::from_utf8(to_json(v)).unwrap(),
                format!("{{\"visibility\":\"{}\"}}", v.as_str())
            );
        }
        assert!(parse(br#"{"visibility":"secret"}"#)
            .unwrap_err()
            .contains("unknown variant"));
        assert!(parse(b"{}").unwrap_err().contains("missing field"));
        assert_eq!(Visibility::from_name("Private"), None);
        assert_eq!(access_key("images/", "win7"), "images/win7/access.json");
    }

    #[tokio::test]
    async fn written_objects_read_back_and_missing_ones_are_none() {
        let storage = build_storage(&backend_memory::MemoryBackend, &Settings::new()).unwrap();
        assert_eq!(read(&storage, "images/", "a").await.unwrap(), None);
        write(&storage, "images/", "a", Visibility::Private)
            .await
            .unwrap();
        assert_eq!(
            read(&storage, "images/", "a").await.unwrap(),
            Some(Visibility::Private)
        );
        write(&storage, "images/", "a", Visibility::Public)
            .await
            .unwrap();
        assert_eq!(
            read(&storage, "images/", "a").await.unwrap(),
            Some(Visibility::Public)
        );
        storage
            .operator
            .write("images/b/access.json", "{\"visibility\":1}")
            .await
            .unwrap();
        let err = read(&storage, "images/", "b")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("images/b/access.json"), "{err}");
    }
}
