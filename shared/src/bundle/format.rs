//! The bundle's byte layout: encoding, decoding and the signature trailer.

use super::BundleError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 4] = b"EGB1";
const TRAILER_MAGIC: &[u8; 4] = b"EGS1";
/// The largest header accepted (bytes of JSON).
pub const MAX_HEADER_LEN: usize = 64 * 1024;
/// The most snapshot shards a bundle may carry.
pub const MAX_SHARDS: usize = 4096;
const SIGNATURE_LEN: usize = 64;
const MAX_LABEL_LEN: usize = 200;

/// The header: what the bundle is and how its payload is cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleHeader {
    /// Always 1.
    pub format: u32,
    /// The Registry's name for this release (shown in history and health; not an id).
    pub label: String,
    /// When the Registry built it (unix ms).
    pub created_at_ms: u64,
    /// Length of the config document.
    pub config_len: u64,
    /// Lengths of the snapshot shards, in order (empty: no snapshot).
    pub shard_lens: Vec<u64>,
}

/// A bundle to encode (the CLI's `bundle` command; tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// See [`BundleHeader::label`].
    pub label: String,
    /// See [`BundleHeader::created_at_ms`].
    pub created_at_ms: u64,
    /// The config document (JSON text; embeds the snapshot's manifest when there are shards).
    pub config: Vec<u8>,
    /// The snapshot shards, in order.
    pub shards: Vec<Vec<u8>>,
}

impl Bundle {
    /// A bundle of `config` (JSON text) and, if given, the encoded subscription `snapshot`,
    /// split into shards of at most `shard_limit` bytes. The config keeps its text; the
    /// snapshot's manifest is inserted as its first field, `"snapshot"`. Runs in the CLI's
    /// `bundle` command (and the mock Registry's fixtures).
    ///
    /// Errors: the config is not a JSON object, or already has a `snapshot` field.
    pub fn with_snapshot(
        label: &str,
        created_at_ms: u64,
        config: &str,
        snapshot: Option<&[u8]>,
        shard_limit: usize,
    ) -> Result<Bundle, String> {
        let value: serde_json::Value =
            serde_json::from_str(config).map_err(|e| format!("config: not valid JSON: {e}"))?;
        let object = value
            .as_object()
            .ok_or_else(|| "config: not a JSON object".to_string())?;
        let Some(bytes) = snapshot else {
            return Ok(Bundle {
                label: label.to_string(),
                created_at_ms,
                config: config.as_bytes().to_vec(),
                shards: Vec::new(),
            });
        };
        if object.contains_key("snapshot") {
            return Err("config: already has a `snapshot` field (the bundle sets it)".into());
        }
        let (manifest, parts) = crate::snapshot::shard(bytes, shard_limit);
        let manifest = serde_json::to_string(&manifest).unwrap_or_default();
        // Parsed as an object above, so the first non-space character is `{`.
        let body = config.trim_start().trim_start_matches('{');
        let sep = if object.is_empty() { "" } else { "," };
        let text = format!("{{\"snapshot\":{manifest}{sep}{body}");
        Ok(Bundle {
            label: label.to_string(),
            created_at_ms,
            config: text.into_bytes(),
            shards: parts.into_iter().map(<[u8]>::to_vec).collect(),
        })
    }

    /// The unsigned bundle's bytes. Never fails.
    pub fn encode(&self) -> Vec<u8> {
        let header = BundleHeader {
            format: 1,
            label: self.label.clone(),
            created_at_ms: self.created_at_ms,
            config_len: self.config.len() as u64,
            shard_lens: self.shards.iter().map(|s| s.len() as u64).collect(),
        };
        // Serialising a struct of strings and integers cannot fail.
        let header = serde_json::to_vec(&header).unwrap_or_default();
        let payload: usize = self.config.len() + self.shards.iter().map(Vec::len).sum::<usize>();
        let mut out = Vec::with_capacity(8 + header.len() + payload);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&self.config);
        for s in &self.shards {
            out.extend_from_slice(s);
        }
        out
    }
}

/// One signature from the trailer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSignature {
    /// The signing key's id ([`super::key_id`]).
    pub key_id: String,
    /// The Ed25519 signature over the signed part.
    pub signature: [u8; SIGNATURE_LEN],
}

/// A decoded bundle, borrowing from its bytes. Not yet verified ([`super::verify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBundle<'a> {
    /// The header.
    pub header: BundleHeader,
    /// Every byte before the trailer: what the signatures sign.
    pub signed_part: &'a [u8],
    /// The config document (valid UTF-8).
    pub config: &'a str,
    /// The snapshot shards.
    pub shards: Vec<&'a [u8]>,
    /// The trailer's signatures (empty: unsigned).
    pub signatures: Vec<BundleSignature>,
}

impl DecodedBundle<'_> {
    /// The version id of this bundle ([`version_id`] of the signed part).
    pub fn version_id(&self) -> String {
        version_id(self.signed_part)
    }
}

/// The version id of a bundle: the first 16 hex characters of the SHA-256 of its signed
/// part. Signing does not change it; any other change does.
pub fn version_id(signed_part: &[u8]) -> String {
    let mut id = crate::trace::hex(&Sha256::digest(signed_part));
    id.truncate(16);
    id
}

fn malformed(m: impl Into<String>) -> BundleError {
    BundleError::Malformed(m.into())
}

/// Splits `bytes` at the end of the signed part; returns (signed part length, header).
fn parse_signed_part(bytes: &[u8]) -> Result<(usize, BundleHeader), BundleError> {
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(malformed("not an edgegate bundle (no EGB1 magic)"));
    }
    let mut len4 = [0u8; 4];
    len4.copy_from_slice(&bytes[4..8]);
    let header_len = u32::from_le_bytes(len4) as usize;
    if header_len > MAX_HEADER_LEN {
        return Err(malformed(format!(
            "header of {header_len} bytes (at most {MAX_HEADER_LEN})"
        )));
    }
    let header_bytes = bytes
        .get(8..8 + header_len)
        .ok_or_else(|| malformed("truncated header"))?;
    let header: BundleHeader =
        serde_json::from_slice(header_bytes).map_err(|e| malformed(format!("header: {e}")))?;
    if header.format != 1 {
        return Err(malformed(format!("unknown format {}", header.format)));
    }
    if header.label.len() > MAX_LABEL_LEN || header.label.chars().any(char::is_control) {
        return Err(malformed(format!(
            "the label must be at most {MAX_LABEL_LEN} bytes without control characters"
        )));
    }
    if header.shard_lens.len() > MAX_SHARDS {
        return Err(malformed(format!("more than {MAX_SHARDS} shards")));
    }
    let payload = header
        .shard_lens
        .iter()
        .try_fold(header.config_len, |acc, l| acc.checked_add(*l))
        .ok_or_else(|| malformed("payload lengths overflow"))?;
    let end = (8 + header_len as u64)
        .checked_add(payload)
        .filter(|end| *end <= bytes.len() as u64)
        .ok_or_else(|| malformed("truncated payload"))?;
    Ok((end as usize, header))
}

fn parse_trailer(mut t: &[u8]) -> Result<Vec<BundleSignature>, BundleError> {
    if t.is_empty() {
        return Ok(Vec::new());
    }
    if t.len() < 5 || &t[..4] != TRAILER_MAGIC {
        return Err(malformed(
            "bytes after the payload that are not a signature trailer",
        ));
    }
    let n = t[4] as usize;
    t = &t[5..];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (&id_len, rest) = t
            .split_first()
            .ok_or_else(|| malformed("truncated trailer"))?;
        let id_len = id_len as usize;
        if rest.len() < id_len + SIGNATURE_LEN {
            return Err(malformed("truncated trailer"));
        }
        let key_id = std::str::from_utf8(&rest[..id_len])
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| malformed("a signature's key id is not printable ASCII"))?
            .to_string();
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(&rest[id_len..id_len + SIGNATURE_LEN]);
        out.push(BundleSignature { key_id, signature });
        t = &rest[id_len + SIGNATURE_LEN..];
    }
    if !t.is_empty() {
        return Err(malformed("bytes after the signature trailer"));
    }
    Ok(out)
}

/// Decodes a bundle. Runs on every fetched bundle before anything is verified or stored;
/// checks structure only (no signature, no config validation).
///
/// Errors: `Malformed` for a wrong magic, an oversized or invalid header, lengths that do not
/// add up to the bytes present, a config that is not UTF-8, or a trailer that does not parse.
pub fn decode(bytes: &[u8]) -> Result<DecodedBundle<'_>, BundleError> {
    let (end, header) = parse_signed_part(bytes)?;
    let signatures = parse_trailer(&bytes[end..])?;
    let header_len = end
        - header.config_len as usize
        - header.shard_lens.iter().map(|l| *l as usize).sum::<usize>();
    let mut at = header_len;
    let config_end = at + header.config_len as usize;
    let config = std::str::from_utf8(&bytes[at..config_end])
        .map_err(|_| malformed("the config is not UTF-8"))?;
    at = config_end;
    let mut shards = Vec::with_capacity(header.shard_lens.len());
    for l in &header.shard_lens {
        shards.push(&bytes[at..at + *l as usize]);
        at += *l as usize;
    }
    Ok(DecodedBundle {
        header,
        signed_part: &bytes[..end],
        config,
        shards,
        signatures,
    })
}

/// `bytes` with one more signature in its trailer (replacing an earlier one by the same key).
/// Runs in the CLI's `sign`; the signature must be over the signed part.
///
/// Errors: `Malformed` if `bytes` is not a bundle, or the key id is empty, longer than 255
/// bytes or not printable ASCII; more than 255 signatures.
pub fn with_signature(
    bytes: &[u8],
    key_id: &str,
    signature: &[u8; SIGNATURE_LEN],
) -> Result<Vec<u8>, BundleError> {
    if key_id.is_empty() || key_id.len() > 255 || !key_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(malformed("a key id is 1-255 printable ASCII characters"));
    }
    let (end, _) = parse_signed_part(bytes)?;
    let mut sigs = parse_trailer(&bytes[end..])?;
    sigs.retain(|s| s.key_id != key_id);
    sigs.push(BundleSignature {
        key_id: key_id.to_string(),
        signature: *signature,
    });
    if sigs.len() > 255 {
        return Err(malformed("more than 255 signatures"));
    }
    let mut out = bytes[..end].to_vec();
    out.extend_from_slice(TRAILER_MAGIC);
    out.push(sigs.len() as u8);
    for s in &sigs {
        out.push(s.key_id.len() as u8);
        out.extend_from_slice(s.key_id.as_bytes());
        out.extend_from_slice(&s.signature);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Bundle {
        Bundle {
            label: "r1".into(),
            created_at_ms: 1_700_000_000_000,
            config: br#"{"pools":{},"apis":[]}"#.to_vec(),
            shards: vec![vec![1, 2, 3], vec![], vec![4]],
        }
    }

    #[test]
    fn round_trip_and_signatures() {
        let b = sample().encode();
        let d = decode(&b).unwrap();
        assert_eq!(d.config, r#"{"pools":{},"apis":[]}"#);
        assert_eq!(d.shards, vec![&[1u8, 2, 3][..], &[][..], &[4u8][..]]);
        assert!(d.signatures.is_empty());
        let id = d.version_id();
        let s1 = with_signature(&b, "k1", &[1; 64]).unwrap();
        let s2 = with_signature(&s1, "k2", &[2; 64]).unwrap();
        let s3 = with_signature(&s2, "k1", &[3; 64]).unwrap();
        let d3 = decode(&s3).unwrap();
        assert_eq!(d3.version_id(), id, "signing does not change the version");
        let sigs: Vec<_> = d3
            .signatures
            .iter()
            .map(|s| (s.key_id.as_str(), s.signature[0]))
            .collect();
        assert_eq!(sigs, vec![("k2", 2), ("k1", 3)]);
        assert_eq!(d3.signed_part, &b[..]);
    }

    #[test]
    fn malformed_table() {
        let good = sample().encode();
        let signed = with_signature(&good, "k", &[0; 64]).unwrap();
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        let mut huge_header = good.clone();
        huge_header[4..8].copy_from_slice(&(1u32 << 30).to_le_bytes());
        let mut extra = good.clone();
        extra.extend_from_slice(b"junk");
        let mut bad_utf8 = Bundle {
            config: vec![0xff, 0xfe],
            ..sample()
        }
        .encode();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("magic", bad_magic),
            ("header length", huge_header),
            ("truncated payload", good[..good.len() - 1].to_vec()),
            ("trailing junk", extra),
            ("truncated trailer", signed[..signed.len() - 1].to_vec()),
            ("config not utf-8", std::mem::take(&mut bad_utf8)),
            ("bad header json", {
                let mut v = b"EGB1".to_vec();
                v.extend_from_slice(&2u32.to_le_bytes());
                v.extend_from_slice(b"{]");
                v
            }),
        ];
        for (name, bytes) in cases {
            let e = decode(&bytes).expect_err(name);
            assert_eq!(e.code(), "bundle_malformed", "{name}");
        }
        assert!(with_signature(&good, "", &[0; 64]).is_err());
        assert!(with_signature(&good, "a b", &[0; 64]).is_err());
    }

    #[test]
    fn with_snapshot_embeds_the_manifest() {
        let cfg = "  {\n  \"pools\": {},\n  \"apis\": []\n}\n";
        let b = Bundle::with_snapshot("l", 5, cfg, Some(&[1, 2, 3, 4, 5]), 2).unwrap();
        assert_eq!(b.shards, vec![vec![1, 2], vec![3, 4], vec![5]]);
        let v: serde_json::Value = serde_json::from_slice(&b.config).unwrap();
        assert_eq!(v["snapshot"]["shards"], 3);
        assert_eq!(v["snapshot"]["len"], 5);
        assert!(v["apis"].is_array());
        let empty = Bundle::with_snapshot("l", 5, "{}", Some(&[1]), 10).unwrap();
        assert!(serde_json::from_slice::<serde_json::Value>(&empty.config).is_ok());
        let none = Bundle::with_snapshot("l", 5, cfg, None, 10).unwrap();
        assert_eq!(none.config, cfg.as_bytes());
        assert!(none.shards.is_empty());
        for bad in ["[]", "nope", r#"{"snapshot":{}}"#] {
            assert!(
                Bundle::with_snapshot("l", 5, bad, Some(&[1]), 10).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn version_id_changes_with_content() {
        let a = sample().encode();
        let b = Bundle {
            label: "r2".into(),
            ..sample()
        }
        .encode();
        assert_ne!(version_id(&a), version_id(&b));
        assert_eq!(version_id(&a).len(), 16);
    }
}
