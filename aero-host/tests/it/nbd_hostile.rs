//! `aero-host nbd` against clients that break the protocol or its limits: each gets the
//! protocol's error or a closed connection, and the server goes on serving the others.

use crate::support::fails_with;
use crate::support::nbd::*;
use crate::support::serve::make_raw;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A 1 MiB raw image exported with small limits.
fn start(dir: &std::path::Path) -> (Nbd, Vec<u8>) {
    let raw = dir.join("disk.raw");
    let bytes = make_raw(&raw, 1024 * 1024);
    let nbd = Nbd::start(
        &[],
        raw.to_str().unwrap(),
        &[
            "--min-block-size",
            "512",
            "--max-request-bytes",
            "65536",
            "--max-connections",
            "3",
            "--handshake-timeout-secs",
            "2",
        ],
    );
    (nbd, bytes)
}

/// A client, once the server has a connection slot for it (within 10 s).
fn connect_when_a_slot_is_free(addr: &str) -> Client {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Client::try_connect(addr) {
            Ok(client) => return client,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("no connection slot was freed within 10 s: {e}"),
        }
    }
}

/// A well-behaved client still reads the right bytes.
fn assert_serving(nbd: &Nbd, bytes: &[u8]) {
    let mut client = Client::connect(nbd.addr());
    assert_eq!(client.go(), bytes.len() as u64);
    let reply = client.request(CMD_READ, 4096, 8192);
    assert_eq!(reply.error, 0);
    assert!(reply.data[..] == bytes[4096..12288]);
    client.send(CMD_DISC, 0, 0, 0);
    assert!(client.closed());
}

#[test]
fn bad_requests_get_protocol_errors_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (nbd, bytes) = start(dir.path());
    let mut c = Client::connect(nbd.addr());
    let size = c.go();
    assert_eq!(
        c.request(CMD_READ, 1, 512).error,
        EINVAL,
        "misaligned offset"
    );
    assert_eq!(
        c.request(CMD_READ, 0, 100).error,
        EINVAL,
        "misaligned length"
    );
    assert_eq!(c.request(CMD_READ, 0, 131072).error, EINVAL, "oversized");
    assert_eq!(
        c.request(CMD_READ, size - 512, 1024).error,
        EINVAL,
        "past the end"
    );
    assert_eq!(
        c.request(CMD_READ, u64::MAX - 511, 512).error,
        EINVAL,
        "offset overflow"
    );
    assert_eq!(c.request(CMD_READ, 0, 0).error, EINVAL, "zero length");
    assert_eq!(c.request(42, 0, 512).error, EINVAL, "unknown command");
    assert_eq!(
        c.request(CMD_BLOCK_STATUS, 0, 512).error,
        EINVAL,
        "no meta context"
    );
    assert_eq!(c.request(CMD_CACHE, 0, 65536).error, 0);
    // A write is refused after its payload is read past.
    c.send(CMD_WRITE, 0, 0, 512);
    c.stream.write_all(&[0xaa; 512]).unwrap();
    assert_eq!(c.reply(0).error, EPERM);
    let reply = c.request(CMD_READ, 512, 1024);
    assert_eq!(reply.error, 0);
    assert!(reply.data[..] == bytes[512..1536]);

    // Structured replies: errors carry a message, block status answers.
    let mut s = Client::connect(nbd.addr());
    s.structured();
    s.go();
    assert_eq!(s.request(CMD_READ, size, 512).error, EINVAL);
    let status = s.request(CMD_BLOCK_STATUS, 0, size as u32);
    assert_eq!(status.error, 0);
    let total: u64 = status
        .data
        .chunks(8)
        .map(|d| u64::from(u32::from_be_bytes(d[..4].try_into().unwrap())))
        .sum();
    assert_eq!(total, size);
    let read = s.request(CMD_READ, 65536, 65536);
    assert!(read.data[..] == bytes[65536..131072]);
    drop((c, s));
    let summary = nbd.stop();
    assert!(
        summary["request_errors"].as_u64().unwrap() >= 10,
        "{summary}"
    );
}

#[test]
fn broken_clients_lose_their_own_connection_only() {
    let dir = tempfile::tempdir().unwrap();
    let (nbd, bytes) = start(dir.path());

    // Another protocol: an HTTP request where the client flags belong.
    let mut http = TcpStream::connect(nbd.addr()).unwrap();
    http.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut greeting = [0u8; 18];
    http.read_exact(&mut greeting).unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let _ = http.read_to_end(&mut rest);
    assert!(rest.is_empty(), "an HTTP client got {rest:?}");

    // A wrong option magic, and an absurd option length.
    for option in [
        b"NOTOPTS!".to_vec(),
        [
            b"IHAVEOPT".as_slice(),
            &7u32.to_be_bytes(),
            &u32::MAX.to_be_bytes(),
        ]
        .concat(),
    ] {
        let mut c = Client::connect(nbd.addr());
        c.stream.write_all(&option).unwrap();
        assert!(c.closed());
    }

    // A wrong request magic ends the connection.
    let mut c = Client::connect(nbd.addr());
    c.go();
    c.stream.write_all(&[0x55; 28]).unwrap();
    assert!(c.closed());

    // Clients that vanish in the middle of their replies. The server frees a vanished client's
    // slot once its writes fail, which a loaded machine can take a moment to see, so each new
    // client waits for a slot under the cap of 3.
    for _ in 0..20 {
        let mut c = connect_when_a_slot_is_free(nbd.addr());
        c.go();
        for i in 0..8 {
            c.send(CMD_READ, 0, i * 65536, 65536);
        }
        drop(c);
    }
    assert_serving(&nbd, &bytes);
    nbd.stop();
}

#[test]
fn the_connection_cap_and_the_handshake_timeout_hold() {
    let dir = tempfile::tempdir().unwrap();
    let (nbd, bytes) = start(dir.path());
    let mut held: Vec<Client> = (0..3).map(|_| Client::connect(nbd.addr())).collect();
    for c in &mut held {
        c.go();
    }
    // Over the cap of 3: closed at once, before any greeting.
    let mut over = TcpStream::connect(nbd.addr()).unwrap();
    over.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let _ = over.read_to_end(&mut buf);
    assert!(buf.is_empty());
    drop(held);
    std::thread::sleep(Duration::from_millis(300));

    // A silent client is dropped after the 2 s handshake timeout.
    let started = Instant::now();
    let mut silent = TcpStream::connect(nbd.addr()).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut greeting = [0u8; 18];
    silent.read_exact(&mut greeting).unwrap();
    let _ = silent.read_to_end(&mut buf);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    assert_serving(&nbd, &bytes);
    let summary = nbd.stop();
    assert!(
        summary["connections_refused"].as_u64().unwrap() >= 1,
        "{summary}"
    );
}

#[test]
fn a_client_that_stops_reading_loses_its_connection_and_its_buffers() {
    const MIB: u32 = 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    let bytes = make_raw(&raw, 8 * MIB as usize);
    let nbd = Nbd::start(
        &[],
        raw.to_str().unwrap(),
        &[
            "--max-request-bytes",
            "4194304",
            "--max-buffer-bytes",
            "8388608",
            "--send-timeout-secs",
            "2",
        ],
    );
    // 64 MiB of replies asked for and never read: the read buffer budget is soon all held.
    let mut stalled = Client::connect(nbd.addr());
    stalled.go();
    for i in 0..16u64 {
        stalled.send(CMD_READ, 0, (i % 2) * u64::from(4 * MIB), 4 * MIB);
    }
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let mut good = Client::connect(nbd.addr());
    good.go();
    let reply = good.request(CMD_READ, u64::from(4 * MIB), 4 * MIB);
    assert_eq!(reply.error, 0);
    assert!(reply.data[..] == bytes[4 * MIB as usize..]);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    // The stalled connection was closed: far fewer bytes than asked for remain to be read.
    let mut received = Vec::new();
    let _ = stalled.stream.read_to_end(&mut received);
    assert!(
        received.len() < 16 * 4 * MIB as usize,
        "{} bytes",
        received.len()
    );
    nbd.stop();
}

#[test]
fn bad_arguments_are_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    make_raw(&raw, 65536);
    let raw = raw.to_str().unwrap();
    let nbd = |args: &[&str]| crate::support::run(&[&["nbd"], args].concat());
    fails_with(&nbd(&["ubuntu:24.04"]), &["ubuntu:24.04", "catalog"]);
    fails_with(
        &nbd(&[raw, "--header", "A: b"]),
        &["--header", "manifest URL"],
    );
    fails_with(
        &nbd(&[raw, "--min-block-size", "3"]),
        &["min_block_size 3", "power of two"],
    );
    fails_with(&nbd(&[raw, "--max-connections", "0"]), &["max_connections"]);
    fails_with(&nbd(&[raw, "--unix", raw]), &["exists and is not a socket"]);
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    fails_with(&nbd(&[empty.to_str().unwrap()]), &["manifest.json"]);
    fails_with(
        &nbd(&["http://127.0.0.1:9/none/manifest.json", "--retries", "1"]),
        &["127.0.0.1:9"],
    );
}
