//! The NBD server: accepts connections on TCP or a Unix socket up to a cap, runs the fixed
//! newstyle handshake, then answers requests of each connection concurrently (a bounded
//! number in flight, read buffers bounded across all connections), until the client
//! disconnects or the server shuts down. A misbehaving client loses its own connection only.

use crate::export::{check_range, Export, ExportError};
use crate::metrics::Metrics;
use crate::protocol::*;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Largest option the server reads; a longer one ends the connection.
pub const MAX_OPTION_BYTES: u32 = 64 * 1024;

/// The server's limits and names. [`Settings::default`] is the one table of defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The export's name (`""`, the default export, is accepted too).
    pub export_name: String,
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// Largest read or block status a request may ask for.
    pub max_request_bytes: u32,
    /// Requests of one connection answered at once.
    pub max_in_flight: usize,
    /// Bytes of read buffers alive at once across all connections.
    pub max_buffer_bytes: u64,
    /// Time a client has to finish the handshake.
    pub handshake_timeout: Duration,
    /// Time a reply may take to be written; a client that stops reading its replies loses
    /// its connection (and the read buffers it held) after it.
    pub send_timeout: Duration,
    /// Requests must be aligned to this (advertised as the minimum block size); 1 = any.
    pub min_block_size: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            export_name: String::new(),
            max_connections: 64,
            max_request_bytes: 32 * 1024 * 1024,
            max_in_flight: 16,
            max_buffer_bytes: 256 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(60),
            min_block_size: 1,
        }
    }
}

impl Settings {
    /// Checks the limits; the message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections == 0 || self.max_in_flight == 0 {
            return Err("max_connections and max_in_flight must be at least 1".into());
        }
        if !self.min_block_size.is_power_of_two() || self.min_block_size > 64 * 1024 {
            return Err(format!(
                "min_block_size {} must be a power of two up to 65536",
                self.min_block_size
            ));
        }
        if self.max_request_bytes < self.min_block_size.max(4096) {
            return Err(format!(
                "max_request_bytes {} must be at least 4096 and the minimum block size",
                self.max_request_bytes
            ));
        }
        if self.max_buffer_bytes < u64::from(self.max_request_bytes) {
            return Err("max_buffer_bytes must hold at least one largest request".into());
        }
        if self.export_name.len() > 4096 {
            return Err("the export name is longer than 4096 bytes".into());
        }
        Ok(())
    }
}

/// Where the server listens.
pub enum Listener {
    /// A TCP socket.
    Tcp(TcpListener),
    /// A Unix socket (its path, removed when the server ends).
    Unix(UnixListener, PathBuf),
}

/// An NBD server of one export.
pub struct Server {
    export: Arc<dyn Export>,
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    buffers: Arc<Semaphore>,
}

/// Why a connection ended early (logged, never sent: the connection is closed).
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("protocol violation: {0}")]
    Protocol(String),
}

/// What the handshake settled.
struct Session {
    structured: bool,
    base_allocation: bool,
}

impl Server {
    /// A server of `export`, counting into `metrics`.
    pub fn new(export: Arc<dyn Export>, settings: Settings, metrics: Arc<Metrics>) -> Self {
        let permits = buffer_permits(settings.max_buffer_bytes);
        Server {
            export,
            settings: Arc::new(settings),
            metrics,
            buffers: Arc::new(Semaphore::new(permits)),
        }
    }

    /// Serves until `shutdown` is cancelled, then ends every connection (answering the requests
    /// in flight) and returns.
    pub async fn run(self, listener: Listener, shutdown: CancellationToken) -> io::Result<()> {
        let this = Arc::new(self);
        let slots = Arc::new(Semaphore::new(this.settings.max_connections));
        let tracker = TaskTracker::new();
        loop {
            let stream: Box<dyn Stream> = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = accept(&listener) => match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("accepting a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                Metrics::add(&this.metrics.connections_refused, 1);
                tracing::warn!(
                    "connection refused: {} connections already served (max_connections)",
                    this.settings.max_connections
                );
                continue;
            };
            Metrics::add(&this.metrics.connections, 1);
            let server = Arc::clone(&this);
            let shutdown = shutdown.clone();
            tracker.spawn(async move {
                if let Err(e) = server.connection(stream, shutdown).await {
                    tracing::info!("connection closed: {e}");
                }
                drop(slot);
            });
        }
        tracker.close();
        tracker.wait().await;
        if let Listener::Unix(_, path) = &listener {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }

    async fn connection(
        self: Arc<Self>,
        stream: Box<dyn Stream>,
        shutdown: CancellationToken,
    ) -> Result<(), ConnError> {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let handshake = tokio::time::timeout(
            self.settings.handshake_timeout,
            self.handshake(&mut reader, &mut writer),
        );
        let session = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            result = handshake => match result {
                Ok(result) => result?,
                Err(_) => return Err(ConnError::Protocol("handshake timed out".into())),
            },
        };
        let Some(session) = session else {
            return Ok(());
        };
        let writer = Arc::new(Mutex::new(writer));
        self.transmission(reader, writer, Arc::new(session), shutdown)
            .await
    }

    /// The fixed newstyle handshake: `None` when the client aborted.
    async fn handshake<R, W>(&self, r: &mut R, w: &mut W) -> Result<Option<Session>, ConnError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut greeting = Vec::with_capacity(18);
        greeting.extend_from_slice(&NBD_MAGIC.to_be_bytes());
        greeting.extend_from_slice(&IHAVEOPT.to_be_bytes());
        greeting.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
        w.write_all(&greeting).await?;
        w.flush().await?;
        let client_flags = r.read_u32().await?;
        if client_flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0
            || client_flags & FLAG_C_FIXED_NEWSTYLE == 0
        {
            return Err(ConnError::Protocol(format!(
                "client flags {client_flags:#x}: not a fixed newstyle NBD client"
            )));
        }
        let no_zeroes = client_flags & FLAG_C_NO_ZEROES != 0;
        let mut session = Session {
            structured: false,
            base_allocation: false,
        };
        loop {
            let magic = r.read_u64().await?;
            if magic != IHAVEOPT {
                return Err(ConnError::Protocol(format!("option magic {magic:#x}")));
            }
            let option = r.read_u32().await?;
            let length = r.read_u32().await?;
            if length > MAX_OPTION_BYTES {
                return Err(ConnError::Protocol(format!(
                    "option {option} of {length} bytes (at most {MAX_OPTION_BYTES})"
                )));
            }
            let mut data = vec![0; length as usize];
            r.read_exact(&mut data).await?;
            let reply = |kind, data: &[u8]| option_reply(option, kind, data);
            let out = match option {
                OPT_EXPORT_NAME => {
                    if !self.is_ours(&data) {
                        return Err(ConnError::Protocol(
                            "NBD_OPT_EXPORT_NAME of an unknown export".into(),
                        ));
                    }
                    let mut out = self.export.size().to_be_bytes().to_vec();
                    out.extend_from_slice(&TRANSMISSION_FLAGS.to_be_bytes());
                    if !no_zeroes {
                        out.extend_from_slice(&[0; 124]);
                    }
                    w.write_all(&out).await?;
                    w.flush().await?;
                    return Ok(Some(session));
                }
                OPT_ABORT => {
                    // The client may already have closed; the ACK is a courtesy.
                    let _ = w.write_all(&reply(REP_ACK, &[])).await;
                    let _ = w.flush().await;
                    return Ok(None);
                }
                OPT_LIST if !data.is_empty() => {
                    reply(REP_ERR_INVALID, b"NBD_OPT_LIST takes no data")
                }
                OPT_LIST => {
                    let name = self.settings.export_name.as_bytes();
                    let mut entry = (name.len() as u32).to_be_bytes().to_vec();
                    entry.extend_from_slice(name);
                    [reply(REP_SERVER, &entry), reply(REP_ACK, &[])].concat()
                }
                OPT_INFO | OPT_GO => match self.info(&data) {
                    Err(out) => reply(out.0, out.1.as_bytes()),
                    Ok(infos) => {
                        let mut out: Vec<u8> =
                            infos.iter().flat_map(|i| reply(REP_INFO, i)).collect();
                        out.extend(reply(REP_ACK, &[]));
                        if option == OPT_GO {
                            w.write_all(&out).await?;
                            w.flush().await?;
                            return Ok(Some(session));
                        }
                        out
                    }
                },
                OPT_STRUCTURED_REPLY if !data.is_empty() => {
                    reply(REP_ERR_INVALID, b"NBD_OPT_STRUCTURED_REPLY takes no data")
                }
                OPT_STRUCTURED_REPLY => {
                    session.structured = true;
                    reply(REP_ACK, &[])
                }
                OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                    let set = option == OPT_SET_META_CONTEXT;
                    match self.meta_contexts(&data, set, session.structured) {
                        Err((kind, message)) => reply(kind, message.as_bytes()),
                        Ok(found) => {
                            if set {
                                session.base_allocation = found;
                            }
                            let mut out = Vec::new();
                            if found {
                                let mut context = BASE_ALLOCATION_ID.to_be_bytes().to_vec();
                                context.extend_from_slice(BASE_ALLOCATION.as_bytes());
                                out.extend(reply(REP_META_CONTEXT, &context));
                            }
                            out.extend(reply(REP_ACK, &[]));
                            out
                        }
                    }
                }
                _ => reply(REP_ERR_UNSUP, b"option not supported"),
            };
            w.write_all(&out).await?;
            w.flush().await?;
        }
    }

    /// Whether `name` names this export (`""` is the default export).
    fn is_ours(&self, name: &[u8]) -> bool {
        name.is_empty() || name == self.settings.export_name.as_bytes()
    }

    /// The `NBD_INFO_*` payloads for an `NBD_OPT_INFO`/`NBD_OPT_GO`, or the error reply.
    fn info(&self, data: &[u8]) -> Result<Vec<Vec<u8>>, (u32, String)> {
        let invalid = || {
            (
                REP_ERR_INVALID,
                "malformed NBD_OPT_INFO/NBD_OPT_GO".to_string(),
            )
        };
        let mut p = Parser(data);
        let name_len = p.u32().ok_or_else(invalid)? as usize;
        let name = p.take(name_len).ok_or_else(invalid)?;
        let count = p.u16().ok_or_else(invalid)?;
        let mut requests = Vec::new();
        for _ in 0..count {
            requests.push(p.u16().ok_or_else(invalid)?);
        }
        if !p.0.is_empty() {
            return Err(invalid());
        }
        if !self.is_ours(name) {
            return Err((REP_ERR_UNKNOWN, "no such export".to_string()));
        }
        let mut export = INFO_EXPORT.to_be_bytes().to_vec();
        export.extend_from_slice(&self.export.size().to_be_bytes());
        export.extend_from_slice(&TRANSMISSION_FLAGS.to_be_bytes());
        let mut block = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
        let min = self.settings.min_block_size;
        for size in [min, min.max(4096), self.settings.max_request_bytes] {
            block.extend_from_slice(&size.to_be_bytes());
        }
        let mut infos = vec![export, block];
        if requests.contains(&INFO_NAME) {
            let mut named = INFO_NAME.to_be_bytes().to_vec();
            named.extend_from_slice(self.settings.export_name.as_bytes());
            infos.push(named);
        }
        Ok(infos)
    }

    /// Whether a `LIST`/`SET_META_CONTEXT` selects `base:allocation`, or the error reply.
    fn meta_contexts(
        &self,
        data: &[u8],
        set: bool,
        structured: bool,
    ) -> Result<bool, (u32, String)> {
        let invalid = || (REP_ERR_INVALID, "malformed meta context option".to_string());
        if set && !structured {
            return Err((
                REP_ERR_INVALID,
                "NBD_OPT_SET_META_CONTEXT needs NBD_OPT_STRUCTURED_REPLY first".into(),
            ));
        }
        let mut p = Parser(data);
        let name_len = p.u32().ok_or_else(invalid)? as usize;
        let name = p.take(name_len).ok_or_else(invalid)?;
        let count = p.u32().ok_or_else(invalid)?;
        let mut found = !set && count == 0;
        for _ in 0..count {
            let len = p.u32().ok_or_else(invalid)? as usize;
            let query = p.take(len).ok_or_else(invalid)?;
            found |= query == BASE_ALLOCATION.as_bytes() || (!set && query == b"base:");
        }
        if !p.0.is_empty() {
            return Err(invalid());
        }
        if !self.is_ours(name) {
            return Err((REP_ERR_UNKNOWN, "no such export".to_string()));
        }
        Ok(found)
    }

    /// Reads requests and answers them, several at once, until the client disconnects or
    /// sends `NBD_CMD_DISC`, or the server shuts down; then waits for the answers in flight.
    /// A reply that cannot be written within the send timeout closes the connection.
    async fn transmission<R, W>(
        self: Arc<Self>,
        mut r: R,
        w: Arc<Mutex<W>>,
        session: Arc<Session>,
        shutdown: CancellationToken,
    ) -> Result<(), ConnError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let in_flight = Arc::new(Semaphore::new(self.settings.max_in_flight));
        let mut answers = JoinSet::new();
        let closing = CancellationToken::new();
        let result = loop {
            let mut header = [0u8; REQUEST_LEN];
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Ok(()),
                _ = closing.cancelled() => break Err(ConnError::Protocol("the client stopped reading its replies".into())),
                read = r.read_exact(&mut header) => match read {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break Ok(()),
                    Err(e) => break Err(e.into()),
                },
            }
            let Some(request) = Request::decode(&header) else {
                break Err(ConnError::Protocol("bad request magic".into()));
            };
            Metrics::add(&self.metrics.requests, 1);
            match request.command {
                CMD_DISC => break Ok(()),
                CMD_WRITE => {
                    // The payload must be read past; one larger than any request is refused
                    // by closing, since it cannot be skipped cheaply.
                    if request.length > self.settings.max_request_bytes {
                        break Err(ConnError::Protocol(format!(
                            "write of {} bytes (at most {})",
                            request.length, self.settings.max_request_bytes
                        )));
                    }
                    let skipped = tokio::io::copy(
                        &mut (&mut r).take(u64::from(request.length)),
                        &mut tokio::io::sink(),
                    )
                    .await?;
                    if skipped != u64::from(request.length) {
                        break Ok(());
                    }
                }
                _ => {}
            }
            while answers.try_join_next().is_some() {}
            let slot = tokio::select! {
                _ = closing.cancelled() => continue,
                slot = Arc::clone(&in_flight).acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break Ok(()),
                },
            };
            let server = Arc::clone(&self);
            let (w, session, closing) = (Arc::clone(&w), Arc::clone(&session), closing.clone());
            answers.spawn(async move {
                let reply = server.answer(request, &session).await;
                if reply.error != 0 {
                    Metrics::add(&server.metrics.request_errors, 1);
                }
                let served = reply.data.as_ref().map_or(0, |d| d.len() as u64);
                let send = async { reply.send(request, &session, &mut *w.lock().await).await };
                let sent = tokio::select! {
                    _ = closing.cancelled() => return,
                    sent = tokio::time::timeout(server.settings.send_timeout, send) => sent,
                };
                match sent {
                    Ok(Ok(())) => Metrics::add(&server.metrics.bytes_served, served),
                    Ok(Err(e)) => {
                        tracing::debug!("sending a reply: {e}");
                        closing.cancel();
                    }
                    Err(_) => {
                        tracing::warn!(
                            "a reply was not taken within the send timeout: closing the connection"
                        );
                        closing.cancel();
                    }
                }
                drop(slot);
            });
        };
        while answers.join_next().await.is_some() {}
        let _ = w.lock().await.shutdown().await;
        result
    }

    /// The answer to one request.
    async fn answer(&self, req: Request, session: &Session) -> Reply {
        let size = self.export.size();
        let length = u64::from(req.length);
        let min = u64::from(self.settings.min_block_size);
        let misaligned = req.offset % min != 0 || length % min != 0;
        let checks = || -> Result<(), String> {
            if length == 0 {
                return Err("zero-length request".into());
            }
            if req.length > self.settings.max_request_bytes {
                return Err(format!(
                    "request of {length} bytes is larger than the maximum of {}",
                    self.settings.max_request_bytes
                ));
            }
            if misaligned {
                return Err(format!(
                    "request {}+{length} is not aligned to {min}",
                    req.offset
                ));
            }
            check_range(req.offset, length, size).map_err(|e| e.to_string())
        };
        match req.command {
            CMD_READ => {
                if let Err(m) = checks() {
                    return Reply::error(EINVAL, m);
                }
                // Held until the reply is written: the budget bounds data waiting to be sent.
                let permits = buffer_permits(length) as u32;
                let Ok(buffer) = Arc::clone(&self.buffers).acquire_many_owned(permits).await else {
                    return Reply::error(ESHUTDOWN, "shutting down".into());
                };
                match self.export.read(req.offset, req.length as usize).await {
                    Ok(data) => Reply {
                        data: Some(data),
                        _buffer: Some(buffer),
                        ..Reply::ok()
                    },
                    Err(e) => Reply::export_error(e),
                }
            }
            CMD_BLOCK_STATUS => {
                if !session.base_allocation {
                    return Reply::error(EINVAL, "no metadata context was negotiated".into());
                }
                // Block status may ask past max_request_bytes: it returns no data.
                let checks = || -> Result<(), String> {
                    if length == 0 || misaligned {
                        return Err("zero-length or misaligned block status".into());
                    }
                    check_range(req.offset, length, size).map_err(|e| e.to_string())
                };
                if let Err(m) = checks() {
                    return Reply::error(EINVAL, m);
                }
                match self.export.block_status(req.offset, length).await {
                    Ok(extents) => {
                        let take = if req.flags & CMD_FLAG_REQ_ONE != 0 {
                            1
                        } else {
                            extents.len()
                        };
                        let mut payload = BASE_ALLOCATION_ID.to_be_bytes().to_vec();
                        for e in extents.iter().take(take) {
                            let flags = if crate::export::is_zero(e) {
                                STATE_HOLE | STATE_ZERO
                            } else {
                                0
                            };
                            payload.extend_from_slice(&(e.length as u32).to_be_bytes());
                            payload.extend_from_slice(&flags.to_be_bytes());
                        }
                        Reply {
                            status: Some(payload),
                            ..Reply::ok()
                        }
                    }
                    Err(e) => Reply::export_error(e),
                }
            }
            CMD_CACHE => {
                if let Err(m) = checks() {
                    return Reply::error(EINVAL, m);
                }
                self.export.prefetch(req.offset, length);
                Reply::ok()
            }
            CMD_WRITE | CMD_TRIM | CMD_WRITE_ZEROES => {
                Reply::error(EPERM, "the export is read-only".into())
            }
            other => Reply::error(EINVAL, format!("unknown command {other}")),
        }
    }
}

/// The transmission flags of the export.
const TRANSMISSION_FLAGS: u16 =
    FLAG_HAS_FLAGS | FLAG_READ_ONLY | FLAG_CAN_MULTI_CONN | FLAG_SEND_CACHE;

/// Read buffers are counted in KiB permits.
fn buffer_permits(bytes: u64) -> usize {
    bytes.div_ceil(1024) as usize
}

/// An answer, before it is encoded as a simple or structured reply.
struct Reply {
    error: u32,
    message: String,
    data: Option<Vec<u8>>,
    status: Option<Vec<u8>>,
    /// The share of the read buffer budget `data` holds.
    _buffer: Option<OwnedSemaphorePermit>,
}

impl Reply {
    fn ok() -> Self {
        Reply {
            error: 0,
            message: String::new(),
            data: None,
            status: None,
            _buffer: None,
        }
    }

    fn error(error: u32, message: String) -> Self {
        Reply {
            error,
            message,
            ..Reply::ok()
        }
    }

    fn export_error(e: ExportError) -> Self {
        let code = match e {
            ExportError::OutOfRange { .. } => EINVAL,
            ExportError::Read(_) => EIO,
        };
        tracing::warn!("request failed: {e}");
        Reply::error(code, e.to_string())
    }

    /// Writes the reply whole.
    async fn send<W: AsyncWrite + Unpin>(
        &self,
        req: Request,
        session: &Session,
        w: &mut W,
    ) -> io::Result<()> {
        if self.error != 0 {
            let out = if session.structured {
                structured_error(req.cookie, self.error, &self.message)
            } else {
                simple_reply(req.cookie, self.error)
            };
            w.write_all(&out).await?;
        } else if let Some(status) = &self.status {
            w.write_all(&structured_header(
                req.cookie,
                REPLY_FLAG_DONE,
                REPLY_TYPE_BLOCK_STATUS,
                status.len() as u32,
            ))
            .await?;
            w.write_all(status).await?;
        } else if session.structured {
            match &self.data {
                Some(data) => {
                    let mut head = structured_header(
                        req.cookie,
                        REPLY_FLAG_DONE,
                        REPLY_TYPE_OFFSET_DATA,
                        8 + data.len() as u32,
                    );
                    head.extend_from_slice(&req.offset.to_be_bytes());
                    w.write_all(&head).await?;
                    w.write_all(data).await?;
                }
                None => {
                    w.write_all(&structured_header(
                        req.cookie,
                        REPLY_FLAG_DONE,
                        REPLY_TYPE_NONE,
                        0,
                    ))
                    .await?
                }
            }
        } else {
            w.write_all(&simple_reply(req.cookie, 0)).await?;
            if let Some(data) = &self.data {
                w.write_all(data).await?;
            }
        }
        w.flush().await
    }
}

/// A connection's byte stream.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn accept(listener: &Listener) -> io::Result<Box<dyn Stream>> {
    Ok(match listener {
        Listener::Tcp(l) => {
            let (s, _) = l.accept().await?;
            s.set_nodelay(true)?;
            Box::new(s)
        }
        Listener::Unix(l, _) => Box::new(l.accept().await?.0),
    })
}

/// Reads big-endian fields off an option's data.
struct Parser<'a>(&'a [u8]);

impl<'a> Parser<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        (self.0.len() >= n).then(|| {
            let (head, tail) = self.0.split_at(n);
            self.0 = tail;
            head
        })
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}
