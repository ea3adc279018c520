//! Request-path normalization, before routing: the router, the stages after it and the backend
//! must all read the same path.

use std::borrow::Cow;

/// Normalizes a raw request path (RFC 3986 §6.2.2): percent-encoded unreserved characters are
/// decoded (`/users/m%65` is `/users/me`), other percent-encodings get upper-case hex.
///
/// Errors, each a reason for a 400 `invalid_path`: no leading `/`; a malformed `%`; an encoded
/// NUL; an encoded `/` or `\` unless `allow_encoded_slashes` (a backend that decodes them would
/// see other segments than the router did); a `.` or `..` segment, literal or encoded.
pub fn normalize(path: &str, allow_encoded_slashes: bool) -> Result<Cow<'_, str>, String> {
    if !path.starts_with('/') {
        return Err("the path does not start with '/'".into());
    }
    let normalized: Cow<'_, str> =
        if path.contains('%') {
            let bytes = path.as_bytes();
            let mut out = String::with_capacity(path.len());
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] != b'%' {
                    let ch = path[i..].chars().next().unwrap_or_default();
                    out.push(ch);
                    i += ch.len_utf8().max(1);
                    continue;
                }
                let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
                let (Some(h), Some(l)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) else {
                    return Err(format!("malformed percent-encoding at byte {i}"));
                };
                let byte = (h * 16 + l) as u8;
                match byte {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        out.push(byte as char)
                    }
                    0 => return Err("an encoded NUL (%00)".into()),
                    b'/' | b'\\' if !allow_encoded_slashes => return Err(
                        "an encoded '/' or '\\' (set gateway.allow_encoded_slashes to pass them)"
                            .into(),
                    ),
                    _ => {
                        out.push('%');
                        out.push(
                            char::from_digit(u32::from(byte >> 4), 16)
                                .unwrap_or('0')
                                .to_ascii_uppercase(),
                        );
                        out.push(
                            char::from_digit(u32::from(byte & 15), 16)
                                .unwrap_or('0')
                                .to_ascii_uppercase(),
                        );
                    }
                }
                i += 3;
            }
            Cow::Owned(out)
        } else {
            Cow::Borrowed(path)
        };
    if normalized[1..]
        .split('/')
        .any(|seg| seg == "." || seg == "..")
    {
        return Err("a '.' or '..' segment".into());
    }
    Ok(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let ok = [
            ("/users/42", "/users/42"),
            ("/", "/"),
            ("/users/m%65", "/users/me"),
            ("/a%2db%7Ec", "/a-b~c"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a%20b", "/a%20b"),
            ("/x/.hidden/..x", "/x/.hidden/..x"),
        ];
        for (input, want) in ok {
            assert_eq!(normalize(input, false).as_deref(), Ok(want), "{input}");
        }
        for bad in [
            "users",
            "/a/../b",
            "/a/./b",
            "/a/%2e%2E/b",
            "/a/.%2e",
            "/%",
            "/%4",
            "/%zz",
            "/a%00b",
            "/a%2Fb",
            "/a%5cb",
            "/..",
        ] {
            assert!(normalize(bad, false).is_err(), "{bad}");
        }
        assert_eq!(normalize("/a%2fb", true).as_deref(), Ok("/a%2Fb"));
        assert!(
            normalize("/a/%2e%2e%2fb", true).is_ok(),
            "one segment '..%2Fb' is not a dot segment"
        );
    }
}
