//! `edgegate verify <x.egb> [--public-key K]... [--allow-unsigned] [--platform P]`: every
//! check the gateway's Registry sync runs before it stores a version ([`crate::bundle::check`]),
//! without storing anything.

use crate::bundle;
use crate::error::CliError;
use crate::keys::public_keys;
use crate::validate::Platform;
use crate::Outcome;
use std::path::PathBuf;

/// The arguments of `verify` (also used by `push`).
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// The bundle.
    pub bundle: PathBuf,
    /// A trusted public key: `ed25519:<base64url>` or a `.pub` file (repeat for two during a
    /// rotation). Default: $EDGEGATE_REGISTRY_KEYS (comma-separated), as the gateway reads it.
    #[arg(long = "public-key", value_name = "KEY")]
    pub public_keys: Vec<String>,
    /// Accept an unsigned bundle.
    #[arg(long)]
    pub allow_unsigned: bool,
    /// Compile the config for this platform.
    #[arg(long, value_enum, default_value_t = Platform::Workers)]
    pub platform: Platform,
}

/// Runs `verify`; prints the bundle's summary.
///
/// Errors: [`CliError::Io`]; [`CliError::Refused`] (malformed, unsigned, unknown key, bad
/// signature, snapshot mismatch); [`CliError::Invalid`] (config).
pub fn run(args: &VerifyArgs, env_keys: Option<&str>) -> Result<Outcome, CliError> {
    let keys = public_keys(&args.public_keys, env_keys)?;
    let bytes = std::fs::read(&args.bundle).map_err(CliError::io(&args.bundle, "reading"))?;
    let checked = bundle::check(&bytes, &keys, args.allow_unsigned, args.platform)?;
    Ok(Outcome::stdout(format!(
        "{}: ok: {}",
        args.bundle.display(),
        checked.summary()
    )))
}
