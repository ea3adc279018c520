//! The admin bearer token check.

use sha2::{Digest, Sha256};

/// Why a call was not authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    /// The token matches.
    Ok,
    /// No `Authorization: Bearer …` field.
    Missing,
    /// A bearer token that is not the admin token.
    Wrong,
}

/// Checks an `Authorization` field value against the admin token. The comparison is of the
/// SHA-256 digests of both, byte by byte without an early exit, so its time does not depend
/// on how much of the token a guess got right (nor on the token's length).
pub fn check_bearer(authorization: Option<&str>, token: &str) -> TokenCheck {
    let Some(value) = authorization.map(str::trim) else {
        return TokenCheck::Missing;
    };
    let presented = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => return TokenCheck::Missing,
    };
    if presented.is_empty() {
        return TokenCheck::Missing;
    }
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(token.as_bytes());
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    if diff == 0 {
        TokenCheck::Ok
    } else {
        TokenCheck::Wrong
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_table() {
        let t = "s3cret-admin-token-0123456789";
        let table = [
            (None, TokenCheck::Missing),
            (Some(""), TokenCheck::Missing),
            (Some("Basic abc"), TokenCheck::Missing),
            (Some("Bearer"), TokenCheck::Missing),
            (Some("Bearer "), TokenCheck::Missing),
            (Some("Bearer s3cret-admin-token-0123456789"), TokenCheck::Ok),
            (
                Some("bearer  s3cret-admin-token-0123456789 "),
                TokenCheck::Ok,
            ),
            (
                Some("Bearer s3cret-admin-token-012345678"),
                TokenCheck::Wrong,
            ),
            (
                Some("Bearer s3cret-admin-token-01234567899"),
                TokenCheck::Wrong,
            ),
        ];
        for (header, want) in table {
            assert_eq!(check_bearer(header, t), want, "{header:?}");
        }
    }
}
