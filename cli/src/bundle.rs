//! `edgegate bundle --config c.json [--snapshot s.json|s.csv | --snapshot-dir d] --label L
//! --out x.egb`: a config and its subscription snapshot in one Registry bundle
//! ([`edgegate_core::bundle`]), the config's new top-level `snapshot` field naming the snapshot
//! by its SHA-256. The config is compiled first and a bundle is never written from an invalid
//! one. Also [`check`], the full check of a bundle that `verify` and `push` run.

use crate::error::{read_text, CliError};
use crate::keys::now;
use crate::snapshot_build::{self, InputFormat, SnapshotInput, KV_LIST_FILE, MANIFEST_FILE};
use crate::validate::{self, Platform};
use crate::Outcome;
use edgegate_core::auth::soft_crypto::SoftCrypto;
use edgegate_core::bundle::{self, Bundle, DecodedBundle, PublicKeyEntry, Verified};
use edgegate_core::config::CompiledConfig;
use edgegate_core::snapshot::{self, ShardManifest, KV_VALUE_LIMIT};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The arguments of `bundle`.
#[derive(Debug, Clone, clap::Args)]
pub struct BundleArgs {
    /// The config document (JSON), without a `snapshot` field (the bundle sets it).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The snapshot: JSON or CSV (as `snapshot build` reads it).
    #[arg(long, value_name = "FILE", conflicts_with = "snapshot_dir")]
    pub snapshot: Option<PathBuf>,
    /// CSV snapshot: the credentials file.
    #[arg(long, value_name = "FILE", requires = "snapshot")]
    pub credentials: Option<PathBuf>,
    /// CSV snapshot: its version.
    #[arg(long, value_name = "VERSION", requires = "snapshot")]
    pub snapshot_version: Option<String>,
    /// The snapshot as `snapshot build` wrote it (its manifest.json and shards).
    #[arg(long, value_name = "DIR")]
    pub snapshot_dir: Option<PathBuf>,
    /// The Registry's label for this release (shown in the gateway's history).
    #[arg(long)]
    pub label: String,
    /// The bundle file to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The largest snapshot shard in bytes (each shard is one KV value).
    #[arg(long, value_name = "N", default_value_t = KV_VALUE_LIMIT)]
    pub shard_bytes: usize,
    /// Validate the config for this platform.
    #[arg(long, value_enum, default_value_t = Platform::Workers)]
    pub platform: Platform,
}

/// Reads the encoded snapshot from a `snapshot build` output directory: its kv.json order,
/// manifest and shards, joined and decoded.
///
/// Errors: [`CliError::Io`]; [`CliError::Refused`] when the shards do not match the manifest
/// or do not decode.
pub fn read_snapshot_dir(dir: &Path) -> Result<Vec<u8>, CliError> {
    let refused = |m: String| CliError::Refused(format!("{}: {m}", dir.display()));
    let manifest: ShardManifest = serde_json::from_str(&read_text(&dir.join(MANIFEST_FILE))?)
        .map_err(|e| refused(format!("{MANIFEST_FILE}: {e}")))?;
    if !dir.join(KV_LIST_FILE).is_file() {
        return Err(refused(format!(
            "no {KV_LIST_FILE}: not a `snapshot build` output"
        )));
    }
    let mut shards = Vec::new();
    for i in 0..manifest.shards {
        let path = dir.join(manifest.shard_key(snapshot::SHARD_PREFIX, i));
        shards.push(std::fs::read(&path).map_err(CliError::io(&path, "reading"))?);
    }
    let bytes = snapshot::join(&manifest, &shards).map_err(|e| refused(e.to_string()))?;
    snapshot::decode(&bytes).map_err(|e| refused(e.to_string()))?;
    Ok(bytes)
}

/// The snapshot manifest a config names in its `snapshot` field, if any.
///
/// Errors: the field is not a manifest.
pub fn config_manifest(text: &str) -> Result<Option<ShardManifest>, CliError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| CliError::invalid("$", format!("not valid JSON: {e}")))?;
    match value.get("snapshot") {
        None | Some(Value::Null) => Ok(None),
        Some(m) => serde_json::from_value(m.clone())
            .map(Some)
            .map_err(|e| CliError::invalid("$.snapshot", format!("not a snapshot manifest: {e}"))),
    }
}

/// A bundle that passed [`check`].
#[derive(Debug)]
pub struct Checked<'a> {
    /// The decoded bundle.
    pub decoded: DecodedBundle<'a>,
    /// Its version id.
    pub id: String,
    /// Which key's signature verified.
    pub verified: Verified,
    /// The snapshot its config names.
    pub manifest: Option<ShardManifest>,
    /// How many subscriptions that snapshot holds.
    pub subscriptions: Option<usize>,
    /// The compiled config.
    pub config: CompiledConfig,
}

impl Checked<'_> {
    /// One line: id, label, signature, config and snapshot.
    pub fn summary(&self) -> String {
        let signed = match &self.verified.key_id {
            Some(k) => format!("signed by {k}"),
            None => "unsigned".into(),
        };
        let snapshot = match (&self.manifest, self.subscriptions) {
            (Some(m), Some(n)) => format!(
                "snapshot {} ({n} subscriptions, {} bytes in {} shard{})",
                m.sha256,
                m.len,
                m.shards,
                if m.shards == 1 { "" } else { "s" }
            ),
            _ => "no snapshot".into(),
        };
        format!(
            "version {} \"{}\": {signed}; config {}; {snapshot}",
            self.id,
            self.decoded.header.label,
            validate::summary(&self.config)
        )
    }
}

/// Everything the gateway's sync checks before it stores a version: the bundle decodes, its
/// signatures verify against `keys` (unsigned only with `allow_unsigned`), the shards are the
/// snapshot the config names (count, length, SHA-256) and decode, and the config compiles for
/// `platform`.
///
/// Errors: [`CliError::Refused`] (malformed, signature, snapshot); [`CliError::Invalid`] (the
/// config).
pub fn check<'a>(
    bytes: &'a [u8],
    keys: &[PublicKeyEntry],
    allow_unsigned: bool,
    platform: Platform,
) -> Result<Checked<'a>, CliError> {
    let decoded = bundle::decode(bytes).map_err(|e| CliError::Refused(e.to_string()))?;
    let verified = now(bundle::verify(&SoftCrypto, &decoded, keys, allow_unsigned))?
        .map_err(|e| CliError::Refused(format!("{} ({})", e, e.code())))?;
    let manifest = config_manifest(decoded.config)?;
    let subscriptions = match &manifest {
        None if decoded.shards.is_empty() => None,
        None => {
            return Err(CliError::Refused(format!(
                "{} snapshot shard(s) but the config names no snapshot",
                decoded.shards.len()
            )))
        }
        Some(m) => {
            let joined = snapshot::join(m, &decoded.shards)
                .map_err(|e| CliError::Refused(format!("snapshot {}: {e}", m.sha256)))?;
            let snap = snapshot::decode(&joined)
                .map_err(|e| CliError::Refused(format!("snapshot {}: {e}", m.sha256)))?;
            Some(snap.len().subscriptions)
        }
    };
    let config = validate::check(decoded.config, platform).map_err(CliError::Invalid)?;
    Ok(Checked {
        id: decoded.version_id(),
        decoded,
        verified,
        manifest,
        subscriptions,
        config,
    })
}

/// Runs `bundle`: validates the config, loads the snapshot, writes the unsigned bundle and
/// checks that it reads back; prints its version id. `now_ms` is the creation time.
///
/// Errors: [`CliError::Invalid`] (config or snapshot invalid, or the config already names a
/// snapshot while one is given); [`CliError::Io`]; [`CliError::SelfCheck`].
pub fn run(args: &BundleArgs, now_ms: u64, progress: bool) -> Result<Outcome, CliError> {
    let config = read_text(&args.config)?;
    validate::check(&config, args.platform).map_err(CliError::Invalid)?;
    let snapshot = match (&args.snapshot, &args.snapshot_dir) {
        (Some(input), _) => {
            let source = SnapshotInput {
                input: input.clone(),
                format: input
                    .extension()
                    .filter(|e| e.eq_ignore_ascii_case("csv"))
                    .map(|_| InputFormat::Csv),
                credentials: args.credentials.clone(),
                snapshot_version: args.snapshot_version.clone(),
            };
            let show = progress
                && snapshot_build::input_size(&source)? >= crate::progress::LARGE_INPUT_BYTES;
            let doc = snapshot_build::load(&source, show)?;
            Some(snapshot_build::encode_checked(&doc)?)
        }
        (None, Some(dir)) => Some(read_snapshot_dir(dir)?),
        (None, None) => None,
    };
    if snapshot.is_none() && config_manifest(&config)?.is_some() {
        return Err(CliError::invalid(
            "$.snapshot",
            "the config names a snapshot but none is given (--snapshot or --snapshot-dir)",
        ));
    }
    if !(1..=KV_VALUE_LIMIT).contains(&args.shard_bytes) {
        return Err(CliError::Usage(format!(
            "`--shard-bytes` is 1 to {KV_VALUE_LIMIT}"
        )));
    }
    let made = Bundle::with_snapshot(
        &args.label,
        now_ms,
        &config,
        snapshot.as_deref(),
        args.shard_bytes,
    )
    .map_err(|e| CliError::invalid("$.snapshot", e))?;
    let bytes = made.encode();
    // What we write must pass the gateway's own checks (signature aside).
    let checked = check(&bytes, &[], true, args.platform)
        .map_err(|e| CliError::SelfCheck(format!("the new bundle: {e}")))?;
    let summary = checked.summary();
    std::fs::write(&args.out, &bytes).map_err(CliError::io(&args.out, "writing"))?;
    Ok(Outcome::stdout(format!(
        "{}: {summary}; {} bytes",
        args.out.display(),
        bytes.len()
    )))
}
