//! Prometheus metrics (SPEC 3.12), rendered in the text exposition format.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Label of ids beyond the cap.
pub const OTHER: &str = "__other__";

#[derive(Default)]
struct Histogram {
    counts: [u64; 13],
    count: u64,
    sum: f64,
}

/// Kinds of storage errors.
#[derive(Debug, Clone, Copy)]
pub enum StoreErrorKind {
    /// Stat / metadata.
    Meta,
    /// Reading a range.
    OpenRange,
    /// Catalog, pointer or manifest.
    Manifest,
}

/// All metric families.
pub struct Metrics {
    version: String,
    max_ids: usize,
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    durations: Mutex<BTreeMap<(String, String), Histogram>>,
    bytes: Mutex<(BTreeMap<String, u64>, HashSet<String>)>,
    range_valid: AtomicU64,
    range_invalid: AtomicU64,
    store_errors: [AtomicU64; 3],
    piece_hits: AtomicU64,
    piece_misses: AtomicU64,
    piece_reads: AtomicU64,
}

impl Metrics {
    /// Metrics with the pre-created series.
    pub fn new(version: &str, max_ids: usize) -> Self {
        let m = Metrics {
            version: version.to_string(),
            max_ids,
            requests: Mutex::default(),
            durations: Mutex::default(),
            bytes: Mutex::default(),
            range_valid: AtomicU64::new(0),
            range_invalid: AtomicU64::new(0),
            store_errors: Default::default(),
            piece_hits: AtomicU64::new(0),
            piece_misses: AtomicU64::new(0),
            piece_reads: AtomicU64::new(0),
        };
        {
            let mut r = m.requests.lock().unwrap();
            let mut d = m.durations.lock().unwrap();
            for route in ["/metrics", "/v1/images/:image_id"] {
                r.insert((route.into(), "GET".into(), 200), 0);
                d.insert((route.into(), "GET".into()), Histogram::default());
            }
        }
        m.bytes.lock().unwrap().0.insert(OTHER.into(), 0);
        m
    }

    /// Counts one finished request.
    pub fn request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .unwrap()
            .entry((route.to_string(), method.to_string(), status))
            .or_default() += 1;
        let secs = elapsed.as_secs_f64();
        let mut d = self.durations.lock().unwrap();
        let h = d
            .entry((route.to_string(), method.to_string()))
            .or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// Counts bytes served for an image.
    pub fn bytes_served(&self, image_id: &str, n: u64) {
        if n == 0 {
            return;
        }
        let mut guard = self.bytes.lock().unwrap();
        let (map, ids) = &mut *guard;
        let label = if image_id.len() <= 128 && (ids.contains(image_id) || ids.len() < self.max_ids)
        {
            ids.insert(image_id.to_string());
            image_id
        } else {
            OTHER
        };
        *map.entry(label.to_string()).or_default() += n;
    }

    /// Counts a Range header outcome.
    pub fn range(&self, valid: bool) {
        if valid {
            self.range_valid.fetch_add(1, Ordering::Relaxed);
        } else {
            self.range_invalid.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a storage error.
    pub fn store_error(&self, kind: StoreErrorKind) {
        self.store_errors[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a piece-cache lookup.
    pub fn piece_cache(&self, hit: bool) {
        let counter = if hit {
            &self.piece_hits
        } else {
            &self.piece_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a piece read from storage.
    pub fn piece_read(&self) {
        self.piece_reads.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition; `cached_bytes` is what the piece cache holds now.
    pub fn render(&self, cached_bytes: u64) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP aero_storage_server_build_info Build information."
        );
        let _ = writeln!(out, "# TYPE aero_storage_server_build_info gauge");
        let _ = writeln!(
            out,
            "aero_storage_server_build_info{{version=\"{}\"}} 1",
            escape(&self.version)
        );
        let _ = writeln!(
            out,
            "# HELP http_requests_total HTTP requests by route, method and status."
        );
        let _ = writeln!(out, "# TYPE http_requests_total counter");
        for ((route, method, status), n) in self.requests.lock().unwrap().iter() {
            let _ = writeln!(
                out,
                "http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                escape(route),
                escape(method)
            );
        }
        let _ = writeln!(
            out,
            "# HELP http_request_duration_seconds Time to the response head, by route and method."
        );
        let _ = writeln!(out, "# TYPE http_request_duration_seconds histogram");
        for ((route, method), h) in self.durations.lock().unwrap().iter() {
            let labels = format!("route=\"{}\",method=\"{}\"", escape(route), escape(method));
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP image_bytes_served_total Image bytes sent, by image id."
        );
        let _ = writeln!(out, "# TYPE image_bytes_served_total counter");
        for (id, n) in self.bytes.lock().unwrap().0.iter() {
            let _ = writeln!(
                out,
                "image_bytes_served_total{{image_id=\"{}\"}} {n}",
                escape(id)
            );
        }
        let _ = writeln!(
            out,
            "# HELP range_requests_total Range headers seen, by outcome."
        );
        let _ = writeln!(out, "# TYPE range_requests_total counter");
        for (result, v) in [
            ("invalid", &self.range_invalid),
            ("valid", &self.range_valid),
        ] {
            let _ = writeln!(
                out,
                "range_requests_total{{result=\"{result}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP store_errors_total Storage errors, by kind.");
        let _ = writeln!(out, "# TYPE store_errors_total counter");
        for (i, kind) in ["meta", "open_range", "manifest"].iter().enumerate() {
            let _ = writeln!(
                out,
                "store_errors_total{{kind=\"{kind}\"}} {}",
                self.store_errors[i].load(Ordering::Relaxed)
            );
        }
        for (name, kind, help, value) in [
            (
                "aero_storage_piece_cache_hits_total",
                "counter",
                "Pieces answered from the piece cache.",
                self.piece_hits.load(Ordering::Relaxed),
            ),
            (
                "aero_storage_piece_cache_misses_total",
                "counter",
                "Piece-cache lookups that had to read storage.",
                self.piece_misses.load(Ordering::Relaxed),
            ),
            (
                "aero_storage_piece_cache_bytes",
                "gauge",
                "Bytes the piece cache holds.",
                cached_bytes,
            ),
            (
                "aero_storage_piece_reads_total",
                "counter",
                "Pieces read from storage, cached or not.",
                self.piece_reads.load(Ordering::Relaxed),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_and_caps_ids() {
        let m = Metrics::new("1.0", 1);
        m.bytes_served("a", 5);
        m.bytes_served("b", 7);
        m.range(true);
        m.store_error(StoreErrorKind::Manifest);
        m.request("/v1/images/:image_id", "GET", 206, Duration::from_millis(3));
        m.piece_cache(true);
        m.piece_read();
        let text = m.render(42);
        assert!(text.contains("image_bytes_served_total{image_id=\"a\"} 5"));
        assert!(text.contains("image_bytes_served_total{image_id=\"__other__\"} 7"));
        assert!(text.contains("range_requests_total{result=\"valid\"} 1"));
        assert!(text.contains("store_errors_total{kind=\"manifest\"} 1"));
        assert!(text
            .contains("http_requests_total{route=\"/metrics\",method=\"GET\",status=\"200\"} 0"));
        assert!(text.contains("le=\"0.005\"} 1"));
        assert!(text.contains("aero_storage_piece_cache_hits_total 1\n"));
        assert!(text.contains("aero_storage_piece_cache_misses_total 0\n"));
        assert!(text.contains("aero_storage_piece_cache_bytes 42\n"));
        assert!(text.contains("aero_storage_piece_reads_total 1\n"));
    }
}
