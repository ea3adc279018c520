//! Test support: the probe component, the host process, a blocking HTTP client, a tiny
//! backend and a private redis-server. Everything listens on 127.0.0.1 only.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The target dir (under the host's) both components are built into: the probe shares the
/// edgegate component's dependencies (spin-sdk, wit-bindgen and its proc-macros, same
/// versions and the same release profile), so the second of the two builds reuses them.
/// `scripts/ensure-spin-host.sh` and `spin/bench/` use the same place.
const COMPONENTS: &str = "edgegate-spin";

/// The probe component (tests/fixtures/probe), built once per test binary for
/// wasm32-wasip2 into `<target>/edgegate-spin`, or taken from `SPIN_PROBE_WASM`.
pub fn probe_wasm() -> PathBuf {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| build_component("SPIN_PROBE_WASM", "tests/fixtures/probe", "spin_probe"))
        .clone()
}

/// The edgegate Spin component (../spin), built once per test binary for wasm32-wasip2 into
/// `<target>/edgegate-spin`, or taken from `EDGEGATE_SPIN_WASM`.
pub fn gateway_wasm() -> PathBuf {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| build_component("EDGEGATE_SPIN_WASM", "../spin", "edgegate_spin"))
        .clone()
}

/// Builds the crate at `dir` (relative to this crate) for wasm32-wasip2 in release, into
/// `<target>/edgegate-spin`, unless `env` names a prebuilt component.
fn build_component(env: &str, dir: &str, wasm_name: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env) {
        return PathBuf::from(p);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(dir)
        .join("Cargo.toml");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("..")
        .join(COMPONENTS);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("running cargo to build a component");
    assert!(status.success(), "building {} failed", manifest.display());
    target.join(format!("wasm32-wasip2/release/{wasm_name}.wasm"))
}

/// A running `edgegate-spin-host`, killed on drop. stdout lines after the address line are
/// kept in `output`.
pub struct HostProc {
    child: Child,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub output: Arc<Mutex<Vec<String>>>,
}

impl HostProc {
    /// Starts the host on the probe with `args` and waits (at most 60 s: the component is
    /// compiled first) for its address line.
    pub fn start(args: &[String]) -> Self {
        Self::start_component(&probe_wasm(), args)
    }

    /// Starts the host on `component` with `args`; its stderr (the host's messages and the
    /// component's stderr) goes to the test's.
    pub fn start_component(component: &Path, args: &[String]) -> Self {
        Self::spawn(component, args, Stdio::inherit())
    }

    /// Starts the host on the probe with its stderr discarded (for tests that make the
    /// component panic on purpose, whose message would look like a test failure).
    pub fn start_quiet(args: &[String]) -> Self {
        Self::spawn(&probe_wasm(), args, Stdio::null())
    }

    fn spawn(component: &Path, args: &[String], stderr: Stdio) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgegate-spin-host"))
            .arg("--component")
            .arg(component)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("starting edgegate-spin-host");
        let stdout = child.stdout.take().expect("piped stdout");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("the host printed no address line within 60 s (see stderr)");
            }
        };
        let v: serde_json::Value = serde_json::from_str(&line).expect("address line is JSON");
        let addr = |k: &str| v[k].as_str().unwrap().parse().unwrap();
        Self {
            http: addr("http"),
            admin: addr("admin"),
            child,
            output,
        }
    }

    /// A request to the component.
    pub fn call(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        http(self.http, method, path, body)
    }
}

impl Drop for HostProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns the status and the body as text.
/// Panics on I/O errors or a 10 s timeout (a test failure either way).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let (status, _, body) = http_full(addr, method, path, &[], body);
    (status, body)
}

/// Like [`http`], with extra request headers; returns the status, the response head in lower
/// case, and the body.
pub fn http_full(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let extra: String = headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, head.to_ascii_lowercase(), body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// A backend on 127.0.0.1 that answers every request `200 <reply>`, counts requests and
/// keeps the first 4 KiB of each (`requests`).
pub struct Backend {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl Backend {
    pub fn start(reply: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (counter, log) = (hits.clone(), requests.clone());
        std::thread::spawn(move || {
            for mut conn in listener.incoming().map_while(Result::ok) {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let n = conn.read(&mut buf).unwrap_or(0);
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                let _ = conn.write_all(resp.as_bytes());
            }
        });
        Self {
            addr,
            hits,
            requests,
        }
    }
}

/// A private redis-server on a free 127.0.0.1 port (no persistence), killed on drop; or the
/// server named by `EDGEGATE_TEST_REDIS` (`redis://…`). None when neither is available:
/// the caller skips with a message.
pub struct Redis {
    child: Option<Child>,
    pub url: String,
}

impl Redis {
    pub fn start() -> Option<Self> {
        if let Ok(url) = std::env::var("EDGEGATE_TEST_REDIS") {
            return Some(Self { child: None, url });
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let redis = Self {
            child: Some(child),
            url: format!("redis://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let mut buf = [0u8; 16];
                if s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).is_ok_and(|n| n > 0) {
                    return Some(redis);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `--flag value` pairs as owned strings.
pub fn args(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(f, v)| [f.to_string(), v.to_string()])
        .collect()
}

/// A fresh empty directory under the target's tmp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Says a test was skipped, on the real stderr (libtest captures `eprintln!` of passing
/// tests, and a skip must be visible in the run's output).
pub fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}
