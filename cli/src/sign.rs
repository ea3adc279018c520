//! `edgegate sign <x.egb> --key <name.key> [--out signed.egb]`: adds the key's Ed25519
//! signature over the bundle's signed part to its trailer (replacing an earlier signature by
//! the same key; signatures by other keys stay, for key rotation). The version id does not
//! change.

use crate::error::CliError;
use crate::keys::read_signing_key;
use crate::Outcome;
use edgegate_core::bundle;
use std::path::PathBuf;

/// The arguments of `sign`.
#[derive(Debug, Clone, clap::Args)]
pub struct SignArgs {
    /// The bundle (rewritten in place unless `--out` is given).
    pub bundle: PathBuf,
    /// The private key file written by `keygen` (`<name>.key`).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Write the signed bundle here instead.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Runs `sign`; prints the version id, the key id and how many signatures the bundle has.
///
/// Errors: [`CliError::Io`]; [`CliError::Refused`] for a bad key file or a malformed bundle.
pub fn run(args: &SignArgs) -> Result<Outcome, CliError> {
    let key = read_signing_key(&args.key)?;
    let bytes = std::fs::read(&args.bundle).map_err(CliError::io(&args.bundle, "reading"))?;
    let decoded = bundle::decode(&bytes)
        .map_err(|e| CliError::Refused(format!("{}: {e}", args.bundle.display())))?;
    let signature = key.sign(decoded.signed_part)?;
    let id = decoded.version_id();
    let signed = bundle::with_signature(&bytes, &key.public.key_id, &signature)
        .map_err(|e| CliError::Refused(e.to_string()))?;
    let count = bundle::decode(&signed)
        .map_err(|e| CliError::SelfCheck(format!("the signed bundle: {e}")))?
        .signatures
        .len();
    let out = args.out.as_ref().unwrap_or(&args.bundle);
    // Write beside and rename, so an interrupted write never leaves half a bundle.
    let mut tmp = out.as_os_str().to_os_string();
    tmp.push(".signing");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, &signed).map_err(CliError::io(&tmp, "writing"))?;
    std::fs::rename(&tmp, out).map_err(CliError::io(out, "writing"))?;
    Ok(Outcome::stdout(format!(
        "{}: version {id} signed by {} ({count} signature{})",
        out.display(),
        key.public.key_id,
        if count == 1 { "" } else { "s" }
    )))
}
