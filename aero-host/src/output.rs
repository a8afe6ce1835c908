//! What the commands print: lines on stdout (a closed stdout is [`StdoutClosed`]), publish
//! and pull summaries and verify reports (human or `--json`), and publish and pull progress on stderr (a bar when
//! stderr is a terminal, plain log lines otherwise).

use aero_chunked::progress::Progress;
use aero_chunked::publish::PublishSummary;
use aero_chunked::verify::VerifyReport;
use aero_pull::PullSummary;
use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Reports a publish's bytes and chunks done on stderr.
pub struct StderrProgress {
    inner: Arc<Inner>,
}

struct Inner {
    bar: Option<ProgressBar>,
    quiet: bool,
    total: AtomicU64,
    done: AtomicU64,
    chunks: AtomicU64,
    chunk_total: AtomicU64,
    phase: Mutex<(&'static str, Instant, Instant)>,
}

/// How often plain log lines are written.
const LOG_EVERY: Duration = Duration::from_secs(5);

impl StderrProgress {
    /// A bar when stderr is a terminal and `quiet` is false; log lines when not a terminal.
    pub fn new(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {prefix}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar
        });
        let now = Instant::now();
        StderrProgress {
            inner: Arc::new(Inner {
                bar,
                quiet,
                total: AtomicU64::new(0),
                done: AtomicU64::new(0),
                chunks: AtomicU64::new(0),
                chunk_total: AtomicU64::new(0),
                phase: Mutex::new(("", now, now)),
            }),
        }
    }

    fn start(&self, phase: &'static str, total: u64, chunk_total: u64) {
        let inner = &self.inner;
        inner.total.store(total, Ordering::Relaxed);
        inner.done.store(0, Ordering::Relaxed);
        inner.chunks.store(0, Ordering::Relaxed);
        inner.chunk_total.store(chunk_total, Ordering::Relaxed);
        let now = Instant::now();
        *inner.phase.lock().expect("progress poisoned") = (phase, now, now);
        if let Some(bar) = &inner.bar {
            bar.reset();
            bar.set_length(total);
            bar.set_message(phase);
        }
    }

    fn advance(&self, bytes: u64, chunks: u64) {
        let inner = &self.inner;
        let done = inner.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let chunks_done = inner.chunks.fetch_add(chunks, Ordering::Relaxed) + chunks;
        let chunk_total = inner.chunk_total.load(Ordering::Relaxed);
        if let Some(bar) = &inner.bar {
            bar.set_position(done);
            if chunk_total > 0 {
                bar.set_prefix(format!("{chunks_done}/{chunk_total} chunks"));
            }
            return;
        }
        let mut phase = inner.phase.lock().expect("progress poisoned");
        if phase.2.elapsed() >= LOG_EVERY {
            phase.2 = Instant::now();
            let total = inner.total.load(Ordering::Relaxed);
            let secs = phase.1.elapsed().as_secs_f64().max(1e-9);
            let rate = done as f64 / secs / 1e6;
            let name = phase.0;
            drop(phase);
            self.log(|| {
                format!("{name}: {done}/{total} bytes, {chunks_done}/{chunk_total} chunks, {rate:.1} MB/s")
            });
        }
    }

    fn log(&self, line: impl FnOnce() -> String) {
        if !self.inner.quiet {
            let line = line();
            match &self.inner.bar {
                Some(bar) => bar.println(line),
                None => eprintln!("{line}"),
            }
        }
    }
}

impl Progress for StderrProgress {
    fn start_hashing(&self, total: u64) {
        self.start("hashing", total, 0);
        self.log(|| format!("hashing {total} bytes to compute the version"));
    }

    fn hashed(&self, bytes: u64) {
        self.advance(bytes, 0);
    }

    fn start_upload(&self, total: u64, chunks: u64, prefix: &str, storage: &str) {
        self.start("publishing", total, chunks);
        self.log(|| {
            format!("publishing {total} bytes as {chunks} chunks to {storage} under {prefix}")
        });
    }

    fn chunk_done(&self, bytes: u64) {
        self.advance(bytes, 1);
    }

    fn finish_upload(&self) {
        if let Some(bar) = &self.inner.bar {
            bar.finish_and_clear();
        }
        let (_, started, _) = *self.inner.phase.lock().expect("progress poisoned");
        let secs = started.elapsed().as_secs_f64();
        let done = self.inner.done.load(Ordering::Relaxed);
        self.log(|| {
            format!(
                "stored {} chunks ({done} bytes) in {secs:.1}s",
                self.inner.chunks.load(Ordering::Relaxed)
            )
        });
    }
}

impl aero_pull::PullProgress for StderrProgress {
    fn start(&self, total: u64, chunks: u64) {
        StderrProgress::start(self, "pulling", total, chunks);
        self.log(|| format!("pulling {total} bytes in {chunks} chunks"));
    }

    fn chunk_done(&self, bytes: u64, _fate: aero_pull::ChunkFate) {
        self.advance(bytes, 1);
    }

    fn finishing(&self) {
        if let Some(bar) = &self.inner.bar {
            bar.finish_and_clear();
        }
        self.log(|| "flushing and checking the disk".to_string());
    }
}

/// Stdout was closed by its reader (`aero-host inspect IMG | head -1`).
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes one line to stdout; a closed stdout is a [`StdoutClosed`] error.
pub fn out(text: impl std::fmt::Display) -> Result<()> {
    use std::io::Write;
    writeln!(std::io::stdout().lock(), "{text}").map_err(|e| match e.kind() {
        std::io::ErrorKind::BrokenPipe => anyhow::Error::new(StdoutClosed),
        _ => anyhow::Error::new(e).context("writing to stdout"),
    })
}

/// A publish's summary: one JSON line on stdout, or a human line on stderr.
pub fn print_summary(summary: &PublishSummary, json: bool) -> Result<()> {
    for warning in &summary.warnings {
        eprintln!("warning: {warning}");
    }
    if json {
        out(serde_json::to_string(summary)?)?;
    } else {
        let base = match &summary.base_version {
            Some(version) => format!(" from base {version}"),
            None => String::new(),
        };
        eprintln!(
            "published {} version {} to {} ({} chunks: {} uploaded ({} bytes), {} copied{base} ({} bytes), {} zero ({} bytes), {} already stored; {} bytes read, {:.2}s)",
            summary.image_id,
            summary.version,
            summary.manifest_key,
            summary.chunk_count,
            summary.uploaded_chunks,
            summary.bytes_uploaded,
            summary.copied_chunks,
            summary.bytes_copied,
            summary.zero_chunks,
            summary.zero_bytes,
            summary.skipped_chunks,
            summary.bytes_read,
            summary.seconds
        );
    }
    Ok(())
}

/// A pull's summary: one JSON object on stdout, or a human line on stderr.
pub fn print_pull_summary(summary: &PullSummary, json: bool) -> Result<()> {
    if json {
        return out(serde_json::to_string(summary)?);
    }
    if summary.up_to_date {
        eprintln!(
            "{} already holds {} version {}",
            summary.out, summary.image_id, summary.version
        );
        return Ok(());
    }
    eprintln!(
        "{} {} version {} to {} ({} chunks: {} downloaded ({} bytes), {} from the cache ({} bytes), {} zero, {} resumed; {:.2}s)",
        if summary.dry_run { "would pull" } else { "pulled" },
        summary.image_id,
        summary.version,
        summary.out,
        summary.chunk_count,
        summary.chunks_downloaded,
        summary.bytes_downloaded,
        summary.chunks_reused,
        summary.bytes_reused,
        summary.chunks_zero,
        summary.chunks_resumed,
        summary.seconds
    );
    Ok(())
}

/// A verify report: one JSON line, or notes and bad chunks on stderr and the verdict on stdout.
pub fn print_report(report: &VerifyReport, json: bool) -> Result<()> {
    if json {
        out(serde_json::to_string(report)?)?;
        return Ok(());
    }
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    for bad in &report.bad_chunks {
        eprintln!("bad chunk {} ({}): {}", bad.index, bad.key, bad.problem);
    }
    if report.ok() {
        out(format_args!(
            "Verified {}/{} chunks ({} bytes) in {:.2}s",
            report.checked_chunks, report.total_chunks, report.checked_bytes, report.seconds
        ))?;
    } else {
        out(format_args!(
            "FAILED: {} bad chunk(s); {} of {} chunks checked good",
            report.bad_chunks.len(),
            report.checked_chunks,
            report.total_chunks
        ))?;
    }
    Ok(())
}
