//! Bodies stream through the edgegate Spin component under the host, in both directions: the
//! client gets response bytes while the backend is paused mid-body, the backend gets request
//! bytes while the client holds back the rest, and both arrive intact.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;
use support::{args, gateway_wasm, HostProc};

const TOTAL: usize = 4 * 1024 * 1024;
const FIRST: usize = 64 * 1024;

/// Deterministic bytes (xorshift), so both ends can check content and length.
fn data(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn start_gateway(name: &str, backend: SocketAddr) -> HostProc {
    let dir = support::temp_dir(name);
    let file = dir.join("v1.json");
    let cfg = format!(
        r#"{{"pools": {{"p": {{"instances": [{{"url": "http://{backend}"}}]}}}},
            "apis": [{{"name": "files", "base_path": "/files", "pool": "p",
                       "routes": [{{"name": "any", "methods": ["GET", "PUT"], "path": "/{{*rest}}"}}]}}]}}"#
    );
    std::fs::write(&file, cfg).unwrap();
    HostProc::start_component(
        &gateway_wasm(),
        &args(&[
            ("--kv-put", "default:config:active=v1"),
            (
                "--kv-put-file",
                &format!("default:config:version:v1={}", file.display()),
            ),
            ("--allowed-outbound-hosts", &format!("http://{backend}")),
        ]),
    )
}

/// Reads a request or response head (through the blank line); returns it in lower case.
fn read_head(r: &mut BufReader<TcpStream>) -> String {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).unwrap() > 0,
            "closed inside the head"
        );
        if line == "\r\n" {
            return head.to_ascii_lowercase();
        }
        head.push_str(&line);
    }
}

#[test]
fn a_download_streams_to_the_client_while_the_backend_is_paused() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = listener.local_addr().unwrap();
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut r = BufReader::new(conn);
        read_head(&mut r);
        let mut conn = r.into_inner();
        let body = data(TOTAL);
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {TOTAL}\r\n\r\n");
        conn.write_all(head.as_bytes()).unwrap();
        conn.write_all(&body[..FIRST]).unwrap();
        conn.flush().unwrap();
        // Far longer than the client waits for its first bytes: a buffering gateway fails.
        let _ = gate_rx.recv_timeout(Duration::from_secs(60));
        conn.write_all(&body[FIRST..]).unwrap();
    });
    let host = start_gateway("stream-down", backend);

    let mut client = TcpStream::connect(host.http).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client
        .write_all(b"GET /files/big HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(client);
    let head = read_head(&mut r);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    // Bytes arrive while the backend still holds back all but the first 64 KiB.
    let mut first = [0u8; 1024];
    r.read_exact(&mut first)
        .expect("body bytes before the backend resumed");
    gate_tx.send(()).unwrap();
    r.get_ref()
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    let mut raw = first.to_vec();
    raw.extend_from_slice(&rest);
    let got = if head.contains("transfer-encoding: chunked") {
        dechunk(&raw)
    } else {
        raw
    };
    assert_eq!(got.len(), TOTAL);
    assert!(got == data(TOTAL), "download corrupted");
}

/// The payload of a whole chunked body.
fn dechunk(all: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(pos) = all[i..].windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(std::str::from_utf8(&all[i..i + pos]).unwrap().trim(), 16)
            .unwrap();
        i += pos + 2;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&all[i..i + n]);
        i += n + 2;
    }
    out
}

#[test]
fn an_upload_streams_to_the_backend_while_the_client_holds_back() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = listener.local_addr().unwrap();
    let (first_tx, first_rx) = mpsc::channel::<String>();
    let (done_tx, done_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut r = BufReader::new(conn);
        let head = read_head(&mut r);
        let mut first = [0u8; 1024];
        r.read_exact(&mut first).unwrap();
        first_tx.send(head.clone()).unwrap();
        let rest = read_body_rest(&mut r, &head, &first);
        done_tx.send(rest).unwrap();
        let mut conn = r.into_inner();
        conn.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
    });
    let host = start_gateway("stream-up", backend);

    let body = data(TOTAL);
    let mut client = TcpStream::connect(host.http).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let head = format!(
        "PUT /files/up HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nContent-Length: {TOTAL}\r\n\r\n"
    );
    client.write_all(head.as_bytes()).unwrap();
    client.write_all(&body[..FIRST]).unwrap();
    // The backend has the request and its first bytes while the client holds the rest.
    let seen = first_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the backend got body bytes before the client sent them all");
    assert!(
        seen.contains(&format!("content-length: {TOTAL}")),
        "a fixed-length upload keeps its Content-Length: {seen}"
    );
    client.write_all(&body[FIRST..]).unwrap();
    let received = done_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(received.len(), TOTAL);
    assert!(received == body, "upload corrupted");
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
}

/// The whole request body given its first `first` bytes already read.
fn read_body_rest(r: &mut BufReader<TcpStream>, head: &str, first: &[u8]) -> Vec<u8> {
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    let mut body = first.to_vec();
    body.resize(len, 0);
    r.read_exact(&mut body[first.len()..]).unwrap();
    body
}
