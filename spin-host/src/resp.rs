//! A minimal Redis client (RESP2 over one TCP connection), enough for Spin's Redis interface:
//! one command at a time, every reply read in full. Each call is bounded by [`TIMEOUT`].

use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Upper bound on connecting and on each command's round trip.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Replies larger than this (one bulk string or array length) are refused as malformed.
const MAX_LEN: i64 = 512 * 1024 * 1024;

/// One decoded RESP2 reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A null bulk string or null array.
    Nil,
    /// `+OK` and other simple strings.
    Status(String),
    /// `:<n>`.
    Int(i64),
    /// `$<len>` bulk string.
    Bulk(Vec<u8>),
    /// `*<n>` array.
    Array(Vec<Value>),
    /// `-ERR …`: the server refused the command (the connection stays usable).
    Error(String),
}

/// A failure to talk to the server at all (connect, I/O, timeout or an unparsable reply).
/// After one, the connection should not be used again.
#[derive(Debug)]
pub struct ConnError(pub String);

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One connection to a Redis server.
pub struct Connection {
    stream: BufReader<TcpStream>,
}

/// Splits `redis://[:password@]host[:port][/db]` into (host:port, password, db).
pub fn parse_url(url: &str) -> Option<(String, Option<String>, Option<u32>)> {
    let rest = url.strip_prefix("redis://")?;
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, p),
        None => (rest, ""),
    };
    let (password, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, h)) => {
            let pw = userinfo.rsplit(':').next().unwrap_or_default();
            ((!pw.is_empty()).then(|| pw.to_string()), h)
        }
        None => (None, authority),
    };
    if hostport.is_empty() {
        return None;
    }
    let has_port = match hostport.rsplit_once(':') {
        Some((_, p)) if !hostport.ends_with(']') => {
            p.parse::<u16>().ok()?;
            true
        }
        _ => false,
    };
    let addr = if has_port {
        hostport.to_string()
    } else {
        format!("{hostport}:6379")
    };
    let db = match path {
        "" => None,
        p => Some(p.parse().ok()?),
    };
    Some((addr, password, db))
}

impl Connection {
    /// Connects to `addr` (`host:port`), then sends AUTH and SELECT when given.
    ///
    /// Fails on connect errors, timeouts, and when AUTH or SELECT is refused.
    pub async fn connect(
        addr: &str,
        password: Option<&str>,
        db: Option<u32>,
    ) -> Result<Self, ConnError> {
        let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| ConnError(format!("connecting to {addr}: timed out")))?
            .map_err(|e| ConnError(format!("connecting to {addr}: {e}")))?;
        tcp.set_nodelay(true).ok();
        let mut conn = Self {
            stream: BufReader::new(tcp),
        };
        if let Some(pw) = password {
            conn.expect_ok(&[b"AUTH", pw.as_bytes()]).await?;
        }
        if let Some(db) = db {
            conn.expect_ok(&[b"SELECT", db.to_string().as_bytes()])
                .await?;
        }
        Ok(conn)
    }

    async fn expect_ok(&mut self, args: &[&[u8]]) -> Result<(), ConnError> {
        match self.command(args).await? {
            Value::Error(e) => Err(ConnError(e)),
            _ => Ok(()),
        }
    }

    /// Sends one command (name and arguments as bulk strings) and reads its reply.
    pub async fn command(&mut self, args: &[&[u8]]) -> Result<Value, ConnError> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        let io = async {
            self.stream.get_mut().write_all(&out).await?;
            read_value(&mut self.stream).await
        };
        tokio::time::timeout(TIMEOUT, io)
            .await
            .map_err(|_| ConnError("redis command timed out".into()))?
            .map_err(|e| ConnError(format!("redis: {e}")))
    }
}

fn bad(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

async fn read_line(r: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).await?;
    if !line.ends_with(b"\r\n") {
        return Err(bad("connection closed mid-reply".into()));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| bad("reply line is not UTF-8".into()))
}

fn parse_len(s: &str) -> std::io::Result<i64> {
    let n: i64 = s.parse().map_err(|_| bad(format!("bad length {s:?}")))?;
    if n > MAX_LEN {
        return Err(bad(format!("length {n} too large")));
    }
    Ok(n)
}

fn read_value(
    r: &mut BufReader<TcpStream>,
) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<Value>> + Send + '_>> {
    Box::pin(async move {
        let line = read_line(r).await?;
        let (kind, rest) = line
            .split_at_checked(1)
            .ok_or_else(|| bad("empty reply".into()))?;
        Ok(match kind {
            "+" => Value::Status(rest.to_string()),
            "-" => Value::Error(rest.to_string()),
            ":" => Value::Int(
                rest.parse()
                    .map_err(|_| bad(format!("bad integer {rest:?}")))?,
            ),
            "$" => match usize::try_from(parse_len(rest)?) {
                Err(_) => Value::Nil,
                Ok(n) => {
                    let mut buf = vec![0; n + 2];
                    r.read_exact(&mut buf).await?;
                    buf.truncate(n);
                    Value::Bulk(buf)
                }
            },
            "*" => match usize::try_from(parse_len(rest)?) {
                Err(_) => Value::Nil,
                Ok(n) => {
                    let mut items = Vec::with_capacity(n.min(1024));
                    for _ in 0..n {
                        items.push(read_value(r).await?);
                    }
                    Value::Array(items)
                }
            },
            other => return Err(bad(format!("unknown reply type {other:?}"))),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("redis://127.0.0.1:6380"),
            Some(("127.0.0.1:6380".into(), None, None))
        );
        assert_eq!(
            parse_url("redis://:pw@localhost/2"),
            Some(("localhost:6379".into(), Some("pw".into()), Some(2)))
        );
        assert_eq!(parse_url("http://x"), None);
        assert_eq!(parse_url("redis://x:notaport"), None);
        assert_eq!(parse_url("redis://"), None);
    }
}
