//! `edgegate push <x.egb> (--local [--persist-to DIR] | --remote) [--binding EDGEGATE_CONFIG]`:
//! stores a bundle's version in the gateway's config KV and activates it, as the Registry sync
//! would, through `wrangler kv`.
//!
//! Order (an isolate that sees the new pointer finds everything it names):
//! 1. the bundle is checked completely ([`crate::bundle::check`]: signatures, snapshot,
//!    config compiled for the platform); nothing is written otherwise;
//! 2. the snapshot shards `snapshot:<sha256>:<i>`, one `wrangler kv key put --path` each
//!    (binary-safe: wrangler 4.86's local `kv bulk put` stores base64 values as text and
//!    corrupts bytes above 0x7f);
//! 3. `config:version:<id>` with `wrangler kv bulk put`;
//! 4. `config:history` (read, the version moved to the front with `source: "push"`, entries
//!    beyond `--keep` dropped; the gateway's registry history format, see [`History`]);
//! 5. `config:active` = `<id>`: one write, last;
//! 6. the dropped versions' `config:version:<id>` and the shards no kept version (nor the
//!    hand-uploaded `snapshot:manifest`, read before step 2) names are deleted (`wrangler kv
//!    bulk delete`).
//!
//! Steps 4 and 6 are the gateway's own retention rule ([`History::record_activation`],
//! [`History::retention`]), so a push and a Registry sync keep and delete the same versions.
//!
//! The wrangler command is `--wrangler`, else `$EDGEGATE_WRANGLER`, else `wrangler` (split at
//! spaces, so `npx wrangler` works).

use crate::bundle;
use crate::error::CliError;
use crate::keys::public_keys;
use crate::verify::VerifyArgs;
use crate::Outcome;
use edgegate_core::config_store::version_key;
use edgegate_core::snapshot::{ShardManifest, MANIFEST_KEY, SHARD_PREFIX};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The KV key of the active version's id (the gateway's config pointer).
pub use edgegate_core::config_store::POINTER_KEY as ACTIVE_KEY;
/// The version history, its KV key and format: the gateway's own (`edgegate_core::registry`).
pub use edgegate_core::registry::{History, HistoryEntry, Source, HISTORY_KEY};

/// The arguments of `push`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["local", "remote"])))]
pub struct PushArgs {
    /// The bundle and how to check it.
    #[command(flatten)]
    pub verify: VerifyArgs,
    /// Write to wrangler's local KV (`wrangler dev`'s state).
    #[arg(long)]
    pub local: bool,
    /// With `--local`: wrangler's state directory (default: wrangler's, `.wrangler/state`).
    #[arg(long, value_name = "DIR", requires = "local")]
    pub persist_to: Option<PathBuf>,
    /// Write to the deployed namespace (needs `wrangler login` or an API token).
    #[arg(long)]
    pub remote: bool,
    /// The KV binding in wrangler.toml.
    #[arg(long, default_value = "EDGEGATE_CONFIG")]
    pub binding: String,
    /// The wrangler configuration file (default: wrangler's lookup from the current directory).
    #[arg(long, value_name = "FILE")]
    pub wrangler_config: Option<PathBuf>,
    /// The wrangler command (default: $EDGEGATE_WRANGLER, else `wrangler`).
    #[arg(long, value_name = "CMD")]
    pub wrangler: Option<String>,
    /// Versions kept in the history (older ones are deleted with their unshared shards).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub keep: u16,
}

/// The config KV as `push` uses it. [`Wrangler`] is the real one.
pub trait KvStore {
    /// The text value of `key`, `None` when absent.
    ///
    /// Errors: the store cannot be read.
    fn get_text(&mut self, key: &str) -> Result<Option<String>, CliError>;
    /// Writes one value (any bytes).
    ///
    /// Errors: the write failed.
    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), CliError>;
    /// Writes text values in one call.
    ///
    /// Errors: the write failed.
    fn put_text_many(&mut self, entries: &[(String, String)]) -> Result<(), CliError>;
    /// Deletes keys in one call.
    ///
    /// Errors: the delete failed.
    fn delete_many(&mut self, keys: &[String]) -> Result<(), CliError>;
}

/// `wrangler kv …` against one binding, local or remote.
#[derive(Debug, Clone)]
pub struct Wrangler {
    /// The program and its leading arguments (`["npx", "wrangler"]`).
    pub command: Vec<String>,
    /// `--binding X --local|--remote [--persist-to D] [--config F]`.
    pub target: Vec<OsString>,
    /// A scratch directory for value and bulk files.
    pub scratch: PathBuf,
    /// What was run, in order (for the report and tests).
    pub log: Vec<String>,
}

impl Wrangler {
    /// The wrangler of `args` (`wrangler_env`: `$EDGEGATE_WRANGLER`).
    ///
    /// Errors: [`CliError::Io`] when the scratch directory cannot be made.
    pub fn new(args: &PushArgs, wrangler_env: Option<&str>) -> Result<Wrangler, CliError> {
        let command: Vec<String> = args
            .wrangler
            .as_deref()
            .or(wrangler_env)
            .unwrap_or("wrangler")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let mut target: Vec<OsString> = vec!["--binding".into(), args.binding.clone().into()];
        if args.remote {
            target.push("--remote".into());
        } else {
            target.push("--local".into());
            if let Some(dir) = &args.persist_to {
                target.push("--persist-to".into());
                target.push(dir.clone().into());
            }
        }
        if let Some(cfg) = &args.wrangler_config {
            target.push("--config".into());
            target.push(cfg.clone().into());
        }
        // Unique per instance: several pushes may run in one process (tests).
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let scratch =
            std::env::temp_dir().join(format!("edgegate-push-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&scratch).map_err(CliError::io(&scratch, "creating"))?;
        Ok(Wrangler {
            command,
            target,
            scratch,
            log: Vec::new(),
        })
    }

    /// Runs `wrangler kv <args> <target>`; returns stdout.
    fn run(&mut self, args: &[OsString]) -> Result<Vec<u8>, CliError> {
        let (program, lead) = self
            .command
            .split_first()
            .ok_or_else(|| CliError::Usage("an empty wrangler command".into()))?;
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        self.log.push(format!("wrangler kv {}", shown.join(" ")));
        let out = Command::new(program)
            .args(lead)
            .arg("kv")
            .args(args)
            .args(&self.target)
            .env("WRANGLER_SEND_METRICS", "false")
            .env("NO_COLOR", "1")
            .env("FORCE_COLOR", "0")
            .output()
            .map_err(|e| {
                CliError::External(format!("cannot run `{}`: {e}", self.command.join(" ")))
            })?;
        if !out.status.success() {
            return Err(CliError::External(format!(
                "`wrangler kv {}` failed ({}): {}",
                shown.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(out.stdout)
    }

    fn scratch_file(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, CliError> {
        let path = self.scratch.join(name);
        std::fs::write(&path, bytes).map_err(CliError::io(&path, "writing"))?;
        Ok(path)
    }
}

impl Drop for Wrangler {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

impl KvStore for Wrangler {
    fn get_text(&mut self, key: &str) -> Result<Option<String>, CliError> {
        let out = self.run(&["key".into(), "get".into(), key.into(), "--text".into()])?;
        let text = String::from_utf8(out)
            .map_err(|e| CliError::External(format!("{key}: not UTF-8: {e}")))?;
        // wrangler prints this (exit 0) for an absent key.
        Ok((text.trim() != "Value not found").then_some(text))
    }

    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), CliError> {
        let file = self.scratch_file("value", value)?;
        self.run(&[
            "key".into(),
            "put".into(),
            key.into(),
            "--path".into(),
            file.into(),
        ])
        .map(drop)
    }

    fn put_text_many(&mut self, entries: &[(String, String)]) -> Result<(), CliError> {
        let list: Vec<serde_json::Value> = entries
            .iter()
            .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
            .collect();
        let file = self.scratch_file(
            "bulk.json",
            serde_json::Value::Array(list).to_string().as_bytes(),
        )?;
        self.run(&["bulk".into(), "put".into(), file.into()])
            .map(drop)
    }

    fn delete_many(&mut self, keys: &[String]) -> Result<(), CliError> {
        if keys.is_empty() {
            return Ok(());
        }
        let file = self.scratch_file(
            "delete.json",
            serde_json::json!(keys).to_string().as_bytes(),
        )?;
        self.run(&[
            "bulk".into(),
            "delete".into(),
            file.into(),
            "--force".into(),
        ])
        .map(drop)
    }
}

/// What `push` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The version id now active.
    pub id: String,
    /// The bundle's summary.
    pub summary: String,
    /// Versions dropped from the history.
    pub dropped: Vec<String>,
    /// Keys deleted.
    pub deleted: Vec<String>,
}

/// Stores and activates a checked bundle in `kv` (steps 2–6 of the module doc). `now_ms` is
/// the activation time.
///
/// Errors: the store's; a `config:history` that does not parse ([`CliError::Refused`]: it is
/// not overwritten). A failure before the pointer write leaves the active version as it was.
pub fn store(
    kv: &mut dyn KvStore,
    checked: &bundle::Checked<'_>,
    keep: usize,
    now_ms: u64,
) -> Result<Pushed, CliError> {
    let id = checked.id.clone();
    // Read before anything is written: retention keeps the shards the hand-uploaded
    // `snapshot:manifest` names (as the gateway's sync does); a value that does not parse
    // names none.
    let legacy: Option<ShardManifest> = kv
        .get_text(MANIFEST_KEY)?
        .and_then(|t| serde_json::from_str(&t).ok());
    let mut history = match kv.get_text(HISTORY_KEY)? {
        None => History::default(),
        Some(text) => serde_json::from_str(&text).map_err(|e| {
            CliError::Refused(format!(
                "{HISTORY_KEY} in the store does not parse ({e}); not changed"
            ))
        })?,
    };
    if let Some(m) = &checked.manifest {
        history
            .check_split(m)
            .map_err(|e| CliError::Refused(e.to_string()))?;
        for (i, shard) in (0u32..).zip(&checked.decoded.shards) {
            kv.put(&m.shard_key(SHARD_PREFIX, i), shard)?;
        }
    }
    kv.put_text_many(&[(version_key(&id), checked.decoded.config.to_string())])?;
    let dropped = history.record_activation(
        HistoryEntry {
            id: id.clone(),
            label: checked.decoded.header.label.clone(),
            created_at_ms: checked.decoded.header.created_at_ms,
            stored_at_ms: now_ms,
            activated_at_ms: now_ms,
            source: Source::Push,
            key_id: checked.verified.key_id.clone(),
            snapshot: checked.manifest.clone(),
        },
        now_ms,
        Source::Push,
        keep,
    );
    let text = serde_json::to_string(&history)
        .map_err(|e| CliError::SelfCheck(format!("history: {e}")))?;
    kv.put(HISTORY_KEY, text.as_bytes())?;
    kv.put(ACTIVE_KEY, id.as_bytes())?;

    // Retention, after the switch, by the gateway's rule: versions no longer listed, and the
    // shards no kept version (nor `snapshot:manifest`) names.
    let retention = history.retention(&dropped, legacy.as_ref());
    let mut deleted = retention.documents;
    deleted.extend(retention.shards);
    kv.delete_many(&deleted)?;
    Ok(Pushed {
        id,
        summary: checked.summary(),
        dropped: dropped.into_iter().map(|e| e.id).collect(),
        deleted,
    })
}

/// Runs `push`.
///
/// Errors: the bundle's check ([`crate::bundle::check`]); wrangler's failures
/// ([`CliError::External`]); see [`store`].
pub fn run(
    args: &PushArgs,
    env_keys: Option<&str>,
    wrangler_env: Option<&str>,
    now_ms: u64,
) -> Result<Outcome, CliError> {
    let keys = public_keys(&args.verify.public_keys, env_keys)?;
    let path: &Path = &args.verify.bundle;
    let bytes = std::fs::read(path).map_err(CliError::io(path, "reading"))?;
    let checked = bundle::check(
        &bytes,
        &keys,
        args.verify.allow_unsigned,
        args.verify.platform,
    )?;
    let mut kv = Wrangler::new(args, wrangler_env)?;
    let pushed = store(&mut kv, &checked, usize::from(args.keep), now_ms)?;
    let mut text = format!(
        "{}: pushed and activated {} ({}) in {} {}",
        path.display(),
        pushed.id,
        pushed.summary,
        if args.remote { "remote" } else { "local" },
        args.binding
    );
    if !pushed.dropped.is_empty() {
        text.push_str(&format!(
            "\ndropped from the history: {} ({} keys deleted)",
            pushed.dropped.join(", "),
            pushed.deleted.len()
        ));
    }
    Ok(Outcome::stdout(text))
}
