//! Request ids and W3C Trace Context (`traceparent`).

/// Random bytes one request needs: 16 for a request id, 16 for a trace id, 8 for a span id.
pub const RANDOM_BYTES: usize = 40;

/// The request id to use: the client's `X-Request-ID` when it is sane (1-128 characters of
/// `[A-Za-z0-9._:/+=-]`), else a new one from 16 random bytes (32 hex characters).
pub fn request_id(incoming: Option<&str>, random: &[u8; 16]) -> String {
    match incoming {
        Some(id)
            if !id.is_empty()
                && id.len() <= 128
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._:/+=-".contains(c)) =>
        {
            id.to_string()
        }
        _ => hex(random),
    }
}

/// The `traceparent` to send upstream: the client's trace id and flags with a new span id
/// (the gateway is a hop of the trace), or a whole new trace (sampled flag set) when the
/// client sent none or an invalid one. `random` gives 16 bytes of trace id and 8 of span id.
pub fn traceparent(incoming: Option<&str>, random: &[u8; 24]) -> String {
    let (trace, span) = random.split_at(16);
    let mut span_hex = hex(span);
    if span_hex.bytes().all(|b| b == b'0') {
        span_hex.replace_range(15.., "1");
    }
    match incoming.and_then(parse_traceparent) {
        Some((trace_id, flags)) => format!("00-{trace_id}-{span_hex}-{flags}"),
        None => {
            let mut trace_hex = hex(trace);
            if trace_hex.bytes().all(|b| b == b'0') {
                trace_hex.replace_range(31.., "1");
            }
            format!("00-{trace_hex}-{span_hex}-01")
        }
    }
}

/// Parses a `traceparent`; returns (trace id, flags) when valid per W3C Trace Context level 1
/// (future versions are read by their version-00 prefix).
fn parse_traceparent(v: &str) -> Option<(&str, &str)> {
    let v = v.trim();
    if v.len() < 55 {
        return None;
    }
    let (version, rest) = (&v[..2], &v[2..]);
    let lower_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !lower_hex(version) || version == "ff" || (version == "00" && v.len() != 55) {
        return None;
    }
    if v.len() > 55 && v.as_bytes()[55] != b'-' {
        return None;
    }
    let b = rest.as_bytes();
    if b[0] != b'-' || b[33] != b'-' || b[50] != b'-' {
        return None;
    }
    let (trace, parent, flags) = (&rest[1..33], &rest[34..50], &rest[51..53]);
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    (lower_hex(trace) && lower_hex(parent) && lower_hex(flags) && nonzero(trace) && nonzero(parent))
        .then_some((trace, flags))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_kept_or_generated() {
        let r = [0xab; 16];
        assert_eq!(request_id(Some("abc-123"), &r), "abc-123");
        assert_eq!(request_id(None, &r), "ab".repeat(16));
        assert_eq!(request_id(Some(""), &r), "ab".repeat(16));
        assert_eq!(request_id(Some("has space"), &r), "ab".repeat(16));
        assert_eq!(request_id(Some("<script>"), &r), "ab".repeat(16));
        assert_eq!(request_id(Some(&"x".repeat(129)), &r), "ab".repeat(16));
    }

    #[test]
    fn traceparent_table() {
        let mut r = [0u8; 24];
        r[..16].copy_from_slice(&[0x11; 16]);
        r[16..].copy_from_slice(&[0x22; 8]);
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            traceparent(Some(valid), &r),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-2222222222222222-01"
        );
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra";
        assert_eq!(
            traceparent(Some(future), &r),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-2222222222222222-00"
        );
        let fresh = format!("00-{}-{}-01", "11".repeat(16), "22".repeat(8));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(traceparent(Some(bad), &r), fresh, "{bad:?}");
        }
        assert_eq!(
            traceparent(None, &[0; 24]),
            format!("00-{}1-{}1-01", "0".repeat(31), "0".repeat(15))
        );
    }
}
