//! What the `nbd_*` tests share: a running `aero-host nbd`, and a small NBD client speaking
//! the wire protocol itself, for the requests real clients never send.

use super::serve::BIN;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `aero-host nbd`.
pub struct Nbd {
    child: Child,
    /// `nbd://127.0.0.1:PORT` or `nbd+unix:///?socket=PATH`.
    pub uri: String,
    /// The export's size from the first line.
    pub size: u64,
    /// Everything it wrote to stderr after the first line.
    pub log: Arc<Mutex<String>>,
}

impl Nbd {
    /// Starts `aero-host [GLOBAL...] nbd SOURCE --json ARGS...` (on 127.0.0.1:0 unless ARGS
    /// give `--unix`) and waits until it listens.
    pub fn start(global: &[&str], source: &str, args: &[&str]) -> Nbd {
        let mut cmd = Command::new(BIN);
        cmd.args(global).args(["nbd", source, "--json"]);
        if !args.contains(&"--unix") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .args(args)
            .env("RUST_LOG", "warn,opendal=error")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let uri = line
            .trim()
            .rsplit_once(" on ")
            .map(|(_, uri)| uri.to_string())
            .unwrap_or_else(|| panic!("unexpected first line from nbd: {line:?}"));
        let size = line
            .split_once("' (")
            .and_then(|(_, rest)| rest.split_once(' '))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or_else(|| panic!("no size in {line:?}"));
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut rest = String::new();
            for line in stderr.lines().map_while(Result::ok) {
                rest.push_str(&line);
                rest.push('\n');
                *sink.lock().unwrap() = rest.clone();
            }
        });
        Nbd {
            child,
            uri,
            size,
            log,
        }
    }

    /// `host:port` of a TCP export.
    pub fn addr(&self) -> &str {
        self.uri.trim_start_matches("nbd://")
    }

    /// Sends SIGTERM, checks the exit status is success and returns the `--json` summary.
    pub fn stop(mut self) -> serde_json::Value {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "nbd did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        assert!(status.success(), "nbd exited with {status}: {stdout}");
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout:?}"))
    }
}

impl Drop for Nbd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_CACHE: u16 = 5;
pub const CMD_BLOCK_STATUS: u16 = 7;
pub const EPERM: u32 = 1;
pub const EIO: u32 = 5;
pub const EINVAL: u32 = 22;

/// A hand-written NBD client (simple replies, or structured with [`Client::structured`]).
pub struct Client {
    pub stream: TcpStream,
    cookie: u64,
    structured: bool,
}

/// A reply: its error and, for a successful read, the data.
#[derive(Debug)]
pub struct Reply {
    pub error: u32,
    pub data: Vec<u8>,
}

impl Client {
    /// Connects and reads the greeting.
    pub fn connect(addr: &str) -> Client {
        Client::try_connect(addr).unwrap()
    }

    /// Connects and reads the greeting; an error when the server closes the connection first
    /// (as it does over its connection cap).
    pub fn try_connect(addr: &str) -> std::io::Result<Client> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut greeting = [0u8; 18];
        stream.read_exact(&mut greeting)?;
        assert_eq!(&greeting[..8], b"NBDMAGIC");
        assert_eq!(&greeting[8..16], b"IHAVEOPT");
        stream.write_all(&3u32.to_be_bytes())?;
        Ok(Client {
            stream,
            cookie: 0,
            structured: false,
        })
    }

    /// Sends an option and returns its replies (type, data) up to the ACK or an error.
    pub fn option(&mut self, option: u32, data: &[u8]) -> Vec<(u32, Vec<u8>)> {
        let mut out = b"IHAVEOPT".to_vec();
        out.extend_from_slice(&option.to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(data);
        self.stream.write_all(&out).unwrap();
        let mut replies = Vec::new();
        loop {
            let mut head = [0u8; 20];
            self.stream.read_exact(&mut head).unwrap();
            assert_eq!(
                u64::from_be_bytes(head[..8].try_into().unwrap()),
                0x3e889045565a9
            );
            let kind = u32::from_be_bytes(head[12..16].try_into().unwrap());
            let len = u32::from_be_bytes(head[16..20].try_into().unwrap());
            let mut data = vec![0; len as usize];
            self.stream.read_exact(&mut data).unwrap();
            replies.push((kind, data));
            if kind == 1 || kind & (1 << 31) != 0 {
                return replies;
            }
        }
    }

    /// Negotiates structured replies and `base:allocation`.
    pub fn structured(&mut self) {
        assert_eq!(self.option(8, &[]).last().unwrap().0, 1);
        let mut data = 0u32.to_be_bytes().to_vec();
        data.extend_from_slice(&1u32.to_be_bytes());
        data.extend_from_slice(&15u32.to_be_bytes());
        data.extend_from_slice(b"base:allocation");
        let replies = self.option(10, &data);
        assert_eq!(replies.len(), 2, "{replies:?}");
        self.structured = true;
    }

    /// `NBD_OPT_GO` of the default export; returns its size.
    pub fn go(&mut self) -> u64 {
        let mut data = 0u32.to_be_bytes().to_vec();
        data.extend_from_slice(&0u16.to_be_bytes());
        let replies = self.option(7, &data);
        assert_eq!(replies.last().unwrap().0, 1, "{replies:?}");
        let export = replies
            .iter()
            .find(|(k, d)| *k == 3 && d[..2] == [0, 0])
            .unwrap();
        u64::from_be_bytes(export.1[2..10].try_into().unwrap())
    }

    /// Sends a request header.
    pub fn send(&mut self, command: u16, flags: u16, offset: u64, length: u32) {
        self.cookie += 1;
        let mut out = 0x25609513u32.to_be_bytes().to_vec();
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&command.to_be_bytes());
        out.extend_from_slice(&self.cookie.to_be_bytes());
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(&length.to_be_bytes());
        self.stream.write_all(&out).unwrap();
    }

    /// Sends a request and reads its reply (`read_len` bytes of data for a successful simple
    /// read; a structured reply's chunks are gathered until the last).
    pub fn request(&mut self, command: u16, offset: u64, length: u32) -> Reply {
        self.send(command, 0, offset, length);
        self.reply(if command == CMD_READ { length } else { 0 })
    }

    /// Reads one reply.
    pub fn reply(&mut self, read_len: u32) -> Reply {
        if !self.structured {
            let mut head = [0u8; 16];
            self.stream.read_exact(&mut head).unwrap();
            assert_eq!(
                u32::from_be_bytes(head[..4].try_into().unwrap()),
                0x67446698
            );
            assert_eq!(
                u64::from_be_bytes(head[8..16].try_into().unwrap()),
                self.cookie
            );
            let error = u32::from_be_bytes(head[4..8].try_into().unwrap());
            let mut data = vec![0; if error == 0 { read_len as usize } else { 0 }];
            self.stream.read_exact(&mut data).unwrap();
            return Reply { error, data };
        }
        let mut reply = Reply {
            error: 0,
            data: Vec::new(),
        };
        loop {
            let mut head = [0u8; 20];
            self.stream.read_exact(&mut head).unwrap();
            assert_eq!(
                u32::from_be_bytes(head[..4].try_into().unwrap()),
                0x668e33ef
            );
            let flags = u16::from_be_bytes([head[4], head[5]]);
            let kind = u16::from_be_bytes([head[6], head[7]]);
            let len = u32::from_be_bytes(head[16..20].try_into().unwrap());
            let mut payload = vec![0; len as usize];
            self.stream.read_exact(&mut payload).unwrap();
            match kind {
                1 => reply.data.extend_from_slice(&payload[8..]),
                5 => reply.data.extend_from_slice(&payload[4..]),
                k if k & 0x8000 != 0 => {
                    reply.error = u32::from_be_bytes(payload[..4].try_into().unwrap())
                }
                _ => {}
            }
            if flags & 1 != 0 {
                return reply;
            }
        }
    }

    /// Whether the server closed the connection (a read sees EOF or a reset).
    pub fn closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte), Ok(0) | Err(_))
    }
}
