//! The S3 calls the gateway needs beyond opendal's object reads and writes: multipart uploads
//! (create, list parts, complete, abort), presigned UploadPart URLs, and plain GET/HEAD whose
//! status and headers are passed through by the proxies. Requests are signed with SigV4 by
//! `reqsign-aws-v4`, the signer opendal itself uses.

use crate::settings::S3Settings;
use http::{HeaderMap, HeaderValue, Method, Uri};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqsign_aws_v4::{Credential, RequestSigner};
use reqsign_core::{Context, SignRequest};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Characters SigV4 leaves unencoded besides alphanumerics.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Errors of S3 calls.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The request could not be sent or its answer read.
    #[error("S3 {operation}: {message}")]
    Transport {
        /// What was being done.
        operation: &'static str,
        /// What failed.
        message: String,
    },
    /// S3 answered with an error.
    #[error("S3 {operation}: HTTP {status} {code}: {message}")]
    Status {
        /// What was being done.
        operation: &'static str,
        /// HTTP status.
        status: u16,
        /// S3's error code (`NoSuchUpload`, `InvalidPart`, …).
        code: String,
        /// S3's message.
        message: String,
    },
}

impl S3Error {
    /// S3's error code, when S3 answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            S3Error::Status { code, .. } => Some(code),
            S3Error::Transport { .. } => None,
        }
    }

    /// S3's HTTP status, when S3 answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            S3Error::Status { status, .. } => Some(*status),
            S3Error::Transport { .. } => None,
        }
    }
}

/// Result of an S3 call.
pub type S3Result<T> = std::result::Result<T, S3Error>;

/// One part S3 holds for a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Part number, 1..=10000.
    pub number: u32,
    /// Its ETag, when S3 lists it (s3s-fs does not).
    pub etag: Option<String>,
    /// Its size in bytes.
    pub size: u64,
}

/// What HEAD tells of an object.
#[derive(Debug, Clone, Default)]
pub struct ObjectHead {
    /// Content-Length.
    pub size: u64,
    /// ETag.
    pub etag: Option<String>,
    /// Last-Modified (HTTP date).
    pub last_modified: Option<String>,
}

/// A signing S3 client for one bucket.
#[derive(Debug, Clone)]
pub struct S3Client {
    http: reqwest::Client,
    signer: std::sync::Arc<RequestSigner>,
    credential: Credential,
    /// `scheme://host[:port]` of the bucket's requests.
    origin: String,
    /// `/bucket` with path-style addressing, else empty.
    bucket_path: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InitiateResult {
    upload_id: String,
}

#[derive(Deserialize)]
struct ListPartsResult {
    #[serde(rename = "Part", default)]
    parts: Vec<PartXml>,
    #[serde(rename = "IsTruncated", default)]
    is_truncated: bool,
    #[serde(rename = "NextPartNumberMarker", default)]
    next_marker: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PartXml {
    part_number: u32,
    #[serde(rename = "ETag", default)]
    etag: Option<String>,
    size: u64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ErrorXml {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Escapes `text` for an XML element.
fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl S3Client {
    /// A client for `settings`' bucket, endpoint and credentials.
    pub fn new(settings: &S3Settings) -> S3Result<Self> {
        let endpoint = settings
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", settings.region));
        let endpoint = endpoint.trim_end_matches('/');
        let (origin, bucket_path) = if settings.force_path_style {
            (endpoint.to_string(), format!("/{}", settings.bucket))
        } else {
            let (scheme, host) = endpoint.split_once("://").unwrap_or(("https", endpoint));
            (
                format!("{scheme}://{}.{host}", settings.bucket),
                String::new(),
            )
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| S3Error::Transport {
                operation: "client",
                message: e.to_string(),
            })?;
        Ok(S3Client {
            http,
            signer: std::sync::Arc::new(RequestSigner::new("s3", &settings.region)),
            credential: Credential {
                access_key_id: settings.access_key_id.clone(),
                secret_access_key: settings.secret_access_key.clone(),
                session_token: settings.session_token.clone(),
                expires_in: None,
            },
            origin,
            bucket_path,
        })
    }

    /// The URI of `key` (or of the bucket when `key` is empty) with `query` pairs.
    fn uri(&self, key: &str, query: &[(&str, &str)]) -> S3Result<Uri> {
        let path: Vec<String> = key
            .split('/')
            .map(|segment| utf8_percent_encode(segment, UNRESERVED).to_string())
            .collect();
        let mut uri = format!("{}{}/{}", self.origin, self.bucket_path, path.join("/"));
        for (i, (name, value)) in query.iter().enumerate() {
            uri.push(if i == 0 { '?' } else { '&' });
            uri.push_str(name);
            if !value.is_empty() || *name != "uploads" {
                uri.push('=');
                uri.push_str(&utf8_percent_encode(value, UNRESERVED).to_string());
            }
        }
        uri.parse().map_err(|e| S3Error::Transport {
            operation: "building a URL",
            message: format!("{uri}: {e}"),
        })
    }

    /// Signs a request (headers, or the query string when `presign` gives a lifetime).
    async fn sign(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        presign: Option<Duration>,
    ) -> S3Result<http::request::Parts> {
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (name, value) in &headers {
            builder = builder.header(name, value);
        }
        let (mut parts, ()) = builder
            .body(())
            .map_err(|e| S3Error::Transport {
                operation: "building a request",
                message: e.to_string(),
            })?
            .into_parts();
        self.signer
            .sign_request(&Context::new(), &mut parts, Some(&self.credential), presign)
            .await
            .map_err(|e| S3Error::Transport {
                operation: "signing",
                message: e.to_string(),
            })?;
        Ok(parts)
    }

    /// Sends a signed request and returns S3's answer, whatever its status.
    pub async fn send(
        &self,
        operation: &'static str,
        method: Method,
        key: &str,
        query: &[(&str, &str)],
        mut headers: HeaderMap,
        body: Vec<u8>,
    ) -> S3Result<reqwest::Response> {
        let digest = hex::encode(Sha256::digest(&body));
        headers.insert(
            "x-amz-content-sha256",
            HeaderValue::from_str(&digest).expect("hex is a header value"),
        );
        let parts = self
            .sign(method, self.uri(key, query)?, headers, None)
            .await?;
        let mut request = self
            .http
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers);
        if !body.is_empty() {
            request = request.body(body);
        }
        request.send().await.map_err(|e| S3Error::Transport {
            operation,
            message: e.to_string(),
        })
    }

    /// Sends a request and reads its whole (small) body; a non-2xx answer is an error.
    async fn call(
        &self,
        operation: &'static str,
        method: Method,
        key: &str,
        query: &[(&str, &str)],
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> S3Result<(reqwest::StatusCode, HeaderMap, String)> {
        let resp = self
            .send(operation, method, key, query, headers, body)
            .await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.map_err(|e| S3Error::Transport {
            operation,
            message: e.to_string(),
        })?;
        // CompleteMultipartUpload may answer 200 with an error document.
        if !status.is_success() || text.trim_start_matches("<?xml").contains("<Error>") {
            let error: ErrorXml = quick_xml::de::from_str(&text).unwrap_or_default();
            return Err(S3Error::Status {
                operation,
                status: if status.is_success() {
                    500
                } else {
                    status.as_u16()
                },
                code: error.code,
                message: error.message,
            });
        }
        Ok((status, headers, text))
    }

    fn parse<T: for<'de> Deserialize<'de>>(operation: &'static str, text: &str) -> S3Result<T> {
        quick_xml::de::from_str(text).map_err(|e| S3Error::Transport {
            operation,
            message: format!("unreadable reply: {e}"),
        })
    }

    /// CreateMultipartUpload with the SPEC 4.4 object headers; returns the upload id.
    pub async fn create_multipart(&self, key: &str, cache_control: &str) -> S3Result<String> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        headers.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_str(cache_control).map_err(|e| S3Error::Transport {
                operation: "CreateMultipartUpload",
                message: e.to_string(),
            })?,
        );
        headers.insert(
            http::header::CONTENT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        let op = "CreateMultipartUpload";
        let (_, _, text) = self
            .call(
                op,
                Method::POST,
                key,
                &[("uploads", "")],
                headers,
                Vec::new(),
            )
            .await?;
        let result: InitiateResult = Self::parse(op, &text)?;
        if result.upload_id.is_empty() {
            return Err(S3Error::Transport {
                operation: op,
                message: "S3 returned no UploadId".into(),
            });
        }
        Ok(result.upload_id)
    }

    /// A URL that lets its holder PUT exactly part `part` of upload `upload_id` of `key`, for
    /// `expiry`.
    pub async fn presign_upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part: u32,
        expiry: Duration,
    ) -> S3Result<String> {
        let number = part.to_string();
        let uri = self.uri(key, &[("partNumber", &number), ("uploadId", upload_id)])?;
        let parts = self
            .sign(Method::PUT, uri, HeaderMap::new(), Some(expiry))
            .await?;
        Ok(parts.uri.to_string())
    }

    /// ListParts, every page.
    pub async fn list_parts(&self, key: &str, upload_id: &str) -> S3Result<Vec<Part>> {
        let op = "ListParts";
        let mut parts = Vec::new();
        let mut marker = String::new();
        loop {
            let mut query = vec![("uploadId", upload_id)];
            if !marker.is_empty() {
                query.push(("part-number-marker", marker.as_str()));
            }
            let (_, _, text) = self
                .call(op, Method::GET, key, &query, HeaderMap::new(), Vec::new())
                .await?;
            let page: ListPartsResult = Self::parse(op, &text)?;
            parts.extend(page.parts.into_iter().map(|p| Part {
                number: p.part_number,
                etag: p.etag,
                size: p.size,
            }));
            match (page.is_truncated, page.next_marker) {
                (true, Some(next)) if next.to_string() != marker => marker = next.to_string(),
                _ => break,
            }
        }
        parts.sort_by_key(|p| p.number);
        Ok(parts)
    }

    /// CompleteMultipartUpload with `parts` (number, quoted ETag) in ascending order.
    pub async fn complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> S3Result<()> {
        let mut body = String::from("<CompleteMultipartUpload>");
        for (number, etag) in parts {
            body.push_str(&format!(
                "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag></Part>",
                xml_escape(etag)
            ));
        }
        body.push_str("</CompleteMultipartUpload>");
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        self.call(
            "CompleteMultipartUpload",
            Method::POST,
            key,
            &[("uploadId", upload_id)],
            headers,
            body.into_bytes(),
        )
        .await?;
        Ok(())
    }

    /// AbortMultipartUpload; an upload S3 no longer knows counts as aborted.
    pub async fn abort(&self, key: &str, upload_id: &str) -> S3Result<()> {
        match self
            .call(
                "AbortMultipartUpload",
                Method::DELETE,
                key,
                &[("uploadId", upload_id)],
                HeaderMap::new(),
                Vec::new(),
            )
            .await
        {
            Err(e) if e.status() == Some(404) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// HeadObject; `None` when the object does not exist.
    pub async fn head(&self, key: &str) -> S3Result<Option<ObjectHead>> {
        let resp = self
            .send(
                "HeadObject",
                Method::HEAD,
                key,
                &[],
                HeaderMap::new(),
                Vec::new(),
            )
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(S3Error::Status {
                operation: "HeadObject",
                status: resp.status().as_u16(),
                code: String::new(),
                message: String::new(),
            });
        }
        let h = resp.headers();
        let text = |name: http::HeaderName| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Ok(Some(ObjectHead {
            // Not `content_length()`: for a HEAD that is the (empty) body's length.
            size: text(http::header::CONTENT_LENGTH)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            etag: text(http::header::ETAG),
            last_modified: text(http::header::LAST_MODIFIED),
        }))
    }

    /// HeadBucket: whether the bucket answers.
    pub async fn head_bucket(&self) -> S3Result<()> {
        self.call(
            "HeadBucket",
            Method::HEAD,
            "",
            &[],
            HeaderMap::new(),
            Vec::new(),
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn presigned_urls_name_one_key_upload_and_part_with_a_bounded_expiry() {
        let client = S3Client::new(&S3Settings {
            bucket: "bkt".into(),
            region: "us-east-1".into(),
            endpoint: Some("http://127.0.0.1:9000".into()),
            force_path_style: true,
            access_key_id: "AKID".into(),
            secret_access_key: "secret".into(),
            session_token: None,
        })
        .unwrap();
        let url = client
            .presign_upload_part(
                "images/u/i/v/disk.img",
                "up/+=",
                7,
                Duration::from_secs(900),
            )
            .await
            .unwrap();
        assert!(
            url.starts_with("http://127.0.0.1:9000/bkt/images/u/i/v/disk.img?"),
            "{url}"
        );
        assert!(url.contains("partNumber=7"), "{url}");
        assert!(url.contains("uploadId=up%2F%2B%3D"), "{url}");
        assert!(url.contains("X-Amz-Expires=900"), "{url}");
        assert!(url.contains("X-Amz-Signature="), "{url}");
        assert!(!url.contains("secret"), "{url}");
    }
}
