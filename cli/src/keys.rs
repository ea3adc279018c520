//! Registry signing keys: `edgegate keygen --out <name>` writes an Ed25519 private key as a
//! JWK file `<name>.key` (mode 0600, never overwritten) and its public key as `<name>.pub`
//! (`ed25519:<base64url>`, the form the gateway's `EDGEGATE_REGISTRY_KEYS` takes). Also the
//! readers of those files and the native [`Crypto`] that `verify` and `push` check signatures
//! with.

use crate::error::{read_text, CliError};
use crate::Outcome;
use base64ct::{Base64UrlUnpadded, Encoding};
use edgegate_core::bundle::{key_id, PublicKeyEntry};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// The arguments of `keygen`.
#[derive(Debug, Clone, clap::Args)]
pub struct KeygenArgs {
    /// The key files' path without extension: writes `<NAME>.key` and `<NAME>.pub`.
    #[arg(long, value_name = "NAME")]
    pub out: PathBuf,
}

/// A private signing key (read from its JWK file).
#[derive(Clone)]
pub struct SigningKey {
    /// The Ed25519 seed.
    pub seed: [u8; 32],
    /// The public key.
    pub public: PublicKeyEntry,
}

impl std::fmt::Debug for SigningKey {
    /// Never prints the seed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public.key_id)
    }
}

impl SigningKey {
    /// The key of `seed`.
    pub fn from_seed(seed: [u8; 32]) -> SigningKey {
        let raw = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        SigningKey {
            seed,
            public: PublicKeyEntry {
                key_id: key_id(&raw),
                raw,
            },
        }
    }

    /// The private JWK: `{"kty":"OKP","crv":"Ed25519","d","x","kid"}`.
    pub fn to_jwk(&self) -> String {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "d": Base64UrlUnpadded::encode_string(&self.seed),
            "x": Base64UrlUnpadded::encode_string(&self.public.raw),
            "kid": self.public.key_id,
        })
        .to_string()
    }

    /// Parses a private JWK.
    ///
    /// Errors: not an Ed25519 OKP JWK with a 32-byte `d`; an `x` or `kid` that does not belong
    /// to `d` (a damaged or mixed-up file).
    pub fn from_jwk(text: &str) -> Result<SigningKey, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not a JWK (JSON): {e}"))?;
        let field = |k: &str| v.get(k).and_then(serde_json::Value::as_str);
        if field("kty") != Some("OKP") || field("crv") != Some("Ed25519") {
            return Err("not an Ed25519 key (expected kty OKP, crv Ed25519)".into());
        }
        let d = field("d").ok_or("no private part `d` (is this the .pub file?)")?;
        let seed: [u8; 32] = Base64UrlUnpadded::decode_vec(d.trim_end_matches('='))
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("`d` is not 32 bytes of base64url")?;
        let key = SigningKey::from_seed(seed);
        if let Some(x) = field("x") {
            if x.trim_end_matches('=') != Base64UrlUnpadded::encode_string(&key.public.raw) {
                return Err("`x` is not the public key of `d`".into());
            }
        }
        if let Some(kid) = field("kid") {
            if kid != key.public.key_id {
                return Err(format!(
                    "`kid` {kid} is not this key's id {}",
                    key.public.key_id
                ));
            }
        }
        Ok(key)
    }

    /// Signs `message` (the bundle's signed part).
    pub fn sign(&self, message: &[u8]) -> Result<[u8; 64], CliError> {
        edgegate_core::auth::soft_crypto::sign_ed25519(&self.seed, message)
            .try_into()
            .map_err(|_| CliError::SelfCheck("an Ed25519 signature is 64 bytes".into()))
    }
}

/// Reads a private key file (`<name>.key`).
///
/// Errors: [`CliError::Io`]; [`CliError::Refused`] when it is not a valid key.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, CliError> {
    let text = read_text(path)?;
    SigningKey::from_jwk(&text).map_err(|e| CliError::Refused(format!("{}: {e}", path.display())))
}

/// A public key from `ed25519:…` text, or from a file holding it (a `.pub` file).
///
/// Errors: [`CliError::Io`] for an unreadable file; [`CliError::Refused`] for bad key text.
pub fn read_public_key(arg: &str) -> Result<PublicKeyEntry, CliError> {
    let text = if arg.trim_start().starts_with("ed25519:") {
        arg.to_string()
    } else {
        read_text(Path::new(arg))?
    };
    PublicKeyEntry::parse(text.trim()).map_err(|e| CliError::Refused(format!("{arg}: {e}")))
}

/// Public keys from `--public-key` arguments, else from a comma-separated list (the gateway's
/// `EDGEGATE_REGISTRY_KEYS`).
///
/// Errors: as [`read_public_key`].
pub fn public_keys(
    args: &[String],
    env_list: Option<&str>,
) -> Result<Vec<PublicKeyEntry>, CliError> {
    if !args.is_empty() {
        return args.iter().map(|a| read_public_key(a)).collect();
    }
    env_list
        .into_iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(read_public_key)
        .collect()
}

/// Writes `contents` to a new file with `mode` (unix), refusing to replace an existing one.
fn create_new(path: &Path, contents: &str, mode: u32) -> Result<(), CliError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(CliError::io(path, "creating"))?;
    file.write_all(contents.as_bytes())
        .map_err(CliError::io(path, "writing"))
}

/// `<name>` + `.ext` (appended, so `keys/registry-2026` → `keys/registry-2026.key`).
fn with_ext(name: &Path, ext: &str) -> PathBuf {
    let mut s = name.as_os_str().to_os_string();
    s.push(ext);
    PathBuf::from(s)
}

/// Runs `keygen`: a fresh key from the OS's random source; prints the key id and the public
/// key text.
///
/// Errors: [`CliError::Io`] (also when either file exists: keys are never overwritten);
/// [`CliError::External`] when the OS gives no randomness.
pub fn keygen(args: &KeygenArgs) -> Result<Outcome, CliError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed)
        .map_err(|e| CliError::External(format!("no randomness from the OS: {e}")))?;
    let key = SigningKey::from_seed(seed);
    let (private, public) = (with_ext(&args.out, ".key"), with_ext(&args.out, ".pub"));
    if public.exists() {
        return Err(CliError::Io {
            path: public,
            action: "creating",
            error: std::io::ErrorKind::AlreadyExists.into(),
        });
    }
    create_new(&private, &(key.to_jwk() + "\n"), 0o600)?;
    create_new(&public, &(key.public.to_text() + "\n"), 0o644)?;
    Ok(Outcome::stdout(format!(
        "key {}: private key {} (keep it secret), public key {}\n{}",
        key.public.key_id,
        private.display(),
        public.display(),
        key.public.to_text()
    )))
}

/// Runs a future that never waits (the native crypto completes at its first poll).
///
/// Errors: [`CliError::SelfCheck`] if it does wait (it would never be woken).
pub fn now<F: Future>(future: F) -> Result<F::Output, CliError> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(v) => Ok(v),
        Poll::Pending => Err(CliError::SelfCheck(
            "signature verification waited for I/O".into(),
        )),
    }
}
