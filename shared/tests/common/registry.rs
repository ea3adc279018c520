//! A scripted API Registry on the fake platform's HTTP, and signed bundles for it: shared by
//! the Registry sync tests and the admin API's version endpoints.

use base64ct::{Base64UrlUnpadded, Encoding};
use edgegate_core::auth::soft_crypto::sign_ed25519;
use edgegate_core::bundle::{decode, key_id, version_id, with_signature, Bundle};
use edgegate_core::headers::HeaderList;
use edgegate_core::platform::{HttpResponse, PlatformError};
use edgegate_core::registry::{RegistrySettings, SettingsError};
use edgegate_core::snapshot::{encode, from_json};
use edgegate_core::testing::FakePlatform;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::rc::Rc;

/// The Registry's bearer token.
pub const REGISTRY_TOKEN: &str = "registry-token-1";
/// The URL the Registry serves its bundle at.
pub const REGISTRY_URL: &str = "https://registry.example/bundle";

/// Signing key `n`: (seed, `ed25519:` public key text, key id).
pub fn key(n: u8) -> ([u8; 32], String, String) {
    let seed = [n; 32];
    let public = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    (
        seed,
        format!("ed25519:{}", Base64UrlUnpadded::encode_string(&public)),
        key_id(&public),
    )
}

/// An encoded snapshot with no subscriptions, of this version.
pub fn snapshot(version: &str) -> Vec<u8> {
    let doc = json!({"version": version, "consumers": [], "applications": [], "credentials": [],
        "plans": [], "subscriptions": []});
    encode(&from_json(&doc.to_string()).expect("valid snapshot"))
}

/// An unsigned bundle of `config` and, optionally, a snapshot (small shards).
pub fn bundle(label: &str, config: &Value, snap: Option<&[u8]>) -> Vec<u8> {
    Bundle::with_snapshot(label, 1_700_000_000_000, &config.to_string(), snap, 16)
        .expect("bundle")
        .encode()
}

/// `bytes` with a signature by key `n` added.
pub fn sign(bytes: &[u8], n: u8) -> Vec<u8> {
    let (seed, _, id) = key(n);
    let d = decode(bytes).expect("bundle");
    let sig: [u8; 64] = sign_ed25519(&seed, d.signed_part)
        .try_into()
        .expect("64 bytes");
    with_signature(bytes, &id, &sig).expect("signed")
}

/// `bytes` (signed) with the last byte of its signed part flipped: the signature no longer
/// verifies.
pub fn tamper(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let n = decode(bytes).expect("bundle").signed_part.len();
    out[n - 1] ^= 0x01;
    out
}

/// The version id of a bundle.
pub fn id_of(bytes: &[u8]) -> String {
    version_id(decode(bytes).expect("bundle").signed_part)
}

/// How the scripted Registry answers.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Mode {
    /// Serves its bundle (401 without the token, 304 on a matching `If-None-Match`).
    Up,
    /// The connection is refused.
    Refused,
    /// Answers this status with a short text body.
    Status(u16),
}

/// The scripted Registry's state.
pub struct Registry {
    /// The bundle it serves.
    pub bundle: Vec<u8>,
    /// How it answers.
    pub mode: Mode,
    /// Every request's `Authorization` and `If-None-Match`.
    pub requests: Vec<(Option<String>, Option<String>)>,
}

/// Scripts `p`'s HTTP as a Registry at [`REGISTRY_URL`] serving `first` with a strong ETag;
/// returns its handle.
pub fn serve_on(p: &FakePlatform, first: Vec<u8>) -> Rc<RefCell<Registry>> {
    let reg = Rc::new(RefCell::new(Registry {
        bundle: first,
        mode: Mode::Up,
        requests: Vec::new(),
    }));
    let r = reg.clone();
    p.on_http(move |req, _| {
        let header = |n: &str| {
            req.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let mut reg = r.borrow_mut();
        assert_eq!(req.url, REGISTRY_URL);
        reg.requests
            .push((header("authorization"), header("if-none-match")));
        let answer = |status: u16, headers: &[(&str, String)], body: &[u8]| HttpResponse {
            status,
            headers: HeaderList::from_pairs(headers.iter().map(|(n, v)| (*n, v.clone()))),
            body: body.to_vec(),
        };
        match reg.mode {
            Mode::Refused => return Err(PlatformError("connection refused".into())),
            Mode::Status(s) => return Ok(answer(s, &[], b"unavailable")),
            Mode::Up => {}
        }
        if header("authorization").as_deref() != Some(&format!("Bearer {REGISTRY_TOKEN}")) {
            return Ok(answer(401, &[], b""));
        }
        let etag = format!("\"{}\"", version_id(&reg.bundle));
        if header("if-none-match").as_deref() == Some(etag.as_str()) {
            return Ok(answer(304, &[("etag", etag)], b""));
        }
        Ok(answer(200, &[("etag", etag)], &reg.bundle))
    });
    reg
}

/// A new platform whose Registry serves `first`.
pub fn serve(first: Vec<u8>) -> (FakePlatform, Rc<RefCell<Registry>>) {
    let p = FakePlatform::new();
    let reg = serve_on(&p, first);
    (p, reg)
}

/// The sync's variables for the scripted Registry (URL, token, key 1), with `overrides`
/// replacing or adding variables.
pub fn registry_vars(overrides: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = vec![
        ("EDGEGATE_REGISTRY_URL".into(), REGISTRY_URL.into()),
        ("EDGEGATE_REGISTRY_TOKEN".into(), REGISTRY_TOKEN.into()),
        ("EDGEGATE_REGISTRY_KEYS".into(), key(1).1),
    ];
    for (k, v) in overrides {
        all.retain(|(n, _)| n != k);
        all.push((k.to_string(), v.to_string()));
    }
    all
}

/// [`RegistrySettings::from_vars`] over these variables.
pub fn parse_settings(
    vars: &[(String, String)],
) -> Result<Option<RegistrySettings>, SettingsError> {
    RegistrySettings::from_vars(|n| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
}

/// The settings for the scripted Registry with `overrides` (panics if they do not parse).
pub fn settings(overrides: &[(&str, &str)]) -> RegistrySettings {
    parse_settings(&registry_vars(overrides))
        .expect("valid settings")
        .expect("sync on")
}
