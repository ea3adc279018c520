//! The edgegate operator CLI (binary `edgegate`).
//!
//! Commands:
//!
//! - `edgegate snapshot build <snapshot.json> --out <dir> [--shard-bytes N]` — checks a
//!   Registry snapshot document ([`edgegate_core::snapshot::from_json`]), encodes it, splits it
//!   into KV-sized shards and writes, in `<dir>`, one file per KV value: each shard under its
//!   KV key ([`ShardManifest::shard_key`]`(`[`SHARD_PREFIX`]`, i)`, `snapshot:<sha256>:<i>`),
//!   the manifest as [`MANIFEST_FILE`] (the value of [`MANIFEST_KEY`]), and [`KV_LIST_FILE`],
//!   the `[{"key", "file"}]` list in upload order (shards first, the manifest last — an isolate
//!   that reads the manifest then finds every shard it names).
//!
//! Exit codes: [`EXIT_OK`]; [`EXIT_INVALID`] for a bad command line or an invalid snapshot
//! (every problem printed as `path: message`, nothing written); [`EXIT_FAILURE`] when a file
//! cannot be read or written.
//!
//! [`run`] is the whole program over argument and output streams, so tests drive it without a
//! process.

use edgegate_core::config::{ConfigError, ConfigErrors};
use edgegate_core::snapshot::{self, ShardManifest, KV_VALUE_LIMIT, MANIFEST_KEY, SHARD_PREFIX};
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: a file could not be read or written (or the snapshot failed its self-check).
pub const EXIT_FAILURE: i32 = 1;
/// Exit code: the command line or the snapshot document is invalid; nothing was written.
pub const EXIT_INVALID: i32 = 2;

/// The manifest's file name in the output directory (the value for [`MANIFEST_KEY`]).
pub const MANIFEST_FILE: &str = "manifest.json";
/// The upload list's file name in the output directory.
pub const KV_LIST_FILE: &str = "kv.json";

/// The help text.
pub const USAGE: &str = "\
usage: edgegate snapshot build <snapshot.json> --out <dir> [--shard-bytes N]

  snapshot build   check a Registry snapshot (JSON), encode it and write its KV values to <dir>:
                   one file per shard named by its KV key (snapshot:<sha256>:<i>),
                   manifest.json (the value of snapshot:manifest) and kv.json (the upload
                   order: shards first, the manifest last)
    --out <dir>        output directory (created if missing)
    --shard-bytes N    largest shard in bytes, 1 to 26214400 (default: 26214400, the KV limit)

exit codes: 0 ok, 1 I/O error, 2 invalid command line or snapshot (nothing written)";

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `--help`, `-h` or `help`: print [`USAGE`].
    Help,
    /// `snapshot build`.
    SnapshotBuild(BuildOptions),
}

/// The options of `snapshot build`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// The snapshot document (JSON).
    pub input: PathBuf,
    /// Where the KV values are written.
    pub out_dir: PathBuf,
    /// The largest shard, in bytes (1 ..= [`KV_VALUE_LIMIT`]).
    pub shard_bytes: usize,
}

/// One KV value written by `snapshot build`: its key and its file in the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// The KV key.
    pub key: String,
    /// The file name (relative to the output directory) holding the value.
    pub file: String,
}

/// What `snapshot build` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildReport {
    /// The snapshot's version (from the document).
    pub version: String,
    /// How many subscriptions it holds.
    pub subscriptions: usize,
    /// The manifest written as [`MANIFEST_FILE`].
    pub manifest: ShardManifest,
    /// Every KV value written, in upload order (shards, then the manifest).
    pub entries: Vec<KvEntry>,
}

impl BuildReport {
    /// The one-line summary printed on success.
    pub fn summary(&self, out_dir: &Path) -> String {
        format!(
            "snapshot {}: {} subscriptions, {} bytes in {} shard{}, sha256 {}; KV values in {}",
            self.version,
            self.subscriptions,
            self.manifest.len,
            self.manifest.shards,
            if self.manifest.shards == 1 { "" } else { "s" },
            self.manifest.sha256,
            out_dir.display(),
        )
    }
}

/// Why a command failed.
#[derive(Debug)]
pub enum CliError {
    /// The command line is not understood.
    Usage(String),
    /// The snapshot document is not valid; each problem with its JSON path.
    Invalid(ConfigErrors),
    /// A file could not be read or written.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done (`reading`, `writing`, `creating`).
        action: &'static str,
        /// The error.
        error: io::Error,
    },
    /// The encoded snapshot does not decode (a bug in the encoder; nothing was written).
    SelfCheck(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) | CliError::Invalid(_) => EXIT_INVALID,
            CliError::Io { .. } | CliError::SelfCheck(_) => EXIT_FAILURE,
        }
    }

    fn io<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> CliError + 'a {
        move |error| CliError::Io {
            path: path.to_path_buf(),
            action,
            error,
        }
    }
}

impl fmt::Display for CliError {
    /// Usage errors end with a hint; an invalid snapshot gives one `path: message` line per
    /// problem.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(msg) => write!(f, "edgegate: {msg}\n(run `edgegate --help`)"),
            CliError::Invalid(errors) => write!(f, "{errors}"),
            CliError::Io {
                path,
                action,
                error,
            } => write!(f, "edgegate: {action} {}: {error}", path.display()),
            CliError::SelfCheck(msg) => write!(
                f,
                "edgegate: the encoded snapshot does not decode ({msg}); nothing written"
            ),
        }
    }
}

impl std::error::Error for CliError {}

/// Parses the arguments after the program name.
///
/// Errors: [`CliError::Usage`] for an unknown command or option, a missing or repeated
/// argument, or a `--shard-bytes` that is not a number in 1 ..= [`KV_VALUE_LIMIT`].
pub fn parse_args<I: IntoIterator<Item = OsString>>(args: I) -> Result<Command, CliError> {
    let usage = |msg: String| CliError::Usage(msg);
    let mut args = args.into_iter();
    let words: Vec<Option<String>> = args
        .by_ref()
        .take(2)
        .map(|a| a.into_string().ok())
        .collect();
    match words.first().map(|w| w.as_deref()) {
        None => return Err(usage("no command given".into())),
        Some(Some("-h" | "--help" | "help")) => return Ok(Command::Help),
        Some(Some("snapshot")) => {}
        Some(Some(other)) => return Err(usage(format!("unknown command `{other}`"))),
        Some(None) => return Err(usage("the command is not valid UTF-8".into())),
    }
    match words.get(1).map(|w| w.as_deref()) {
        Some(Some("build")) => {}
        Some(Some("-h" | "--help")) => return Ok(Command::Help),
        Some(Some(other)) => return Err(usage(format!("unknown command `snapshot {other}`"))),
        Some(None) => return Err(usage("the command is not valid UTF-8".into())),
        None => return Err(usage("`snapshot` needs a subcommand: build".into())),
    }

    let mut input: Option<PathBuf> = None;
    let mut out_dir: Option<PathBuf> = None;
    let mut shard_bytes: Option<usize> = None;
    while let Some(arg) = args.next() {
        // Options are ASCII; a value (path) may be any OS string.
        let text = arg.to_str();
        let (name, inline) = match text {
            Some(t) if t.starts_with("--") => match t.split_once('=') {
                Some((n, v)) => (Some(n.to_string()), Some(OsString::from(v))),
                None => (Some(t.to_string()), None),
            },
            Some("-h") => (Some("--help".to_string()), None),
            _ => (None, None),
        };
        let Some(name) = name else {
            if input.is_some() {
                return Err(usage(format!(
                    "unexpected argument `{}` (one snapshot file)",
                    arg.to_string_lossy()
                )));
            }
            input = Some(PathBuf::from(arg));
            continue;
        };
        let mut value = |name: &str| -> Result<OsString, CliError> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| usage(format!("`{name}` needs a value")))
        };
        match name.as_str() {
            "--help" => return Ok(Command::Help),
            "--out" => {
                if out_dir.is_some() {
                    return Err(usage("`--out` given twice".into()));
                }
                let v = value("--out")?;
                if v.is_empty() {
                    return Err(usage("`--out` needs a directory".into()));
                }
                out_dir = Some(PathBuf::from(v));
            }
            "--shard-bytes" => {
                if shard_bytes.is_some() {
                    return Err(usage("`--shard-bytes` given twice".into()));
                }
                let v = value("--shard-bytes")?;
                let n = v
                    .to_str()
                    .and_then(|s| s.parse::<usize>().ok())
                    .filter(|n| (1..=KV_VALUE_LIMIT).contains(n))
                    .ok_or_else(|| {
                        usage(format!(
                            "`--shard-bytes {}`: expected a number from 1 to {KV_VALUE_LIMIT}",
                            v.to_string_lossy()
                        ))
                    })?;
                shard_bytes = Some(n);
            }
            other => return Err(usage(format!("unknown option `{other}`"))),
        }
    }
    let input = input.ok_or_else(|| usage("missing the snapshot file".into()))?;
    let out_dir = out_dir.ok_or_else(|| usage("missing `--out <dir>`".into()))?;
    Ok(Command::SnapshotBuild(BuildOptions {
        input,
        out_dir,
        shard_bytes: shard_bytes.unwrap_or(KV_VALUE_LIMIT),
    }))
}

/// `snapshot build`: reads and checks the document, encodes and shards it, checks that the
/// encoding decodes, then writes the shards, [`MANIFEST_FILE`] and [`KV_LIST_FILE`] (creating
/// the directory). Existing files of the same names are replaced; other files are left alone.
///
/// Errors: [`CliError::Invalid`] (not UTF-8, not JSON, or [`snapshot::from_json`]'s problems)
/// and [`CliError::SelfCheck`] before anything is written; [`CliError::Io`].
pub fn build_snapshot(opts: &BuildOptions) -> Result<BuildReport, CliError> {
    let raw = std::fs::read(&opts.input).map_err(CliError::io(&opts.input, "reading"))?;
    let text = String::from_utf8(raw).map_err(|e| {
        CliError::Invalid(ConfigErrors(vec![ConfigError::new(
            "$",
            format!("not UTF-8 text: {e}"),
        )]))
    })?;
    let doc = snapshot::from_json(&text).map_err(CliError::Invalid)?;
    let bytes = snapshot::encode(&doc);
    // The gateway decodes what we write; refuse to write what it would reject.
    snapshot::decode(&bytes).map_err(|e| CliError::SelfCheck(e.to_string()))?;
    let (manifest, parts) = snapshot::shard(&bytes, opts.shard_bytes.max(1));
    let manifest_json = serde_json::to_string(&manifest)
        .map_err(|e| CliError::SelfCheck(format!("manifest: {e}")))?;

    let dir = &opts.out_dir;
    std::fs::create_dir_all(dir).map_err(CliError::io(dir, "creating"))?;
    let mut entries = Vec::with_capacity(parts.len() + 1);
    for (i, part) in (0u32..).zip(&parts) {
        let key = manifest.shard_key(SHARD_PREFIX, i);
        let path = dir.join(&key);
        std::fs::write(&path, part).map_err(CliError::io(&path, "writing"))?;
        entries.push(KvEntry {
            file: key.clone(),
            key,
        });
    }
    let path = dir.join(MANIFEST_FILE);
    std::fs::write(&path, &manifest_json).map_err(CliError::io(&path, "writing"))?;
    entries.push(KvEntry {
        key: MANIFEST_KEY.to_string(),
        file: MANIFEST_FILE.to_string(),
    });
    let list: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| serde_json::json!({"key": e.key, "file": e.file}))
        .collect();
    let list = serde_json::to_string_pretty(&list)
        .map_err(|e| CliError::SelfCheck(format!("kv list: {e}")))?;
    let path = dir.join(KV_LIST_FILE);
    std::fs::write(&path, list + "\n").map_err(CliError::io(&path, "writing"))?;

    Ok(BuildReport {
        version: doc.version,
        subscriptions: doc.subscriptions.len(),
        manifest,
        entries,
    })
}

/// The whole program: parses `args` (without the program name), runs the command, prints the
/// result to `out` and problems to `err`, and returns the exit code.
pub fn run<I, O, E>(args: I, out: &mut O, err: &mut E) -> i32
where
    I: IntoIterator<Item = OsString>,
    O: Write + ?Sized,
    E: Write + ?Sized,
{
    let result = parse_args(args).and_then(|cmd| match cmd {
        Command::Help => Ok(USAGE.to_string()),
        Command::SnapshotBuild(opts) => {
            build_snapshot(&opts).map(|report| report.summary(&opts.out_dir))
        }
    });
    // A closed stdout/stderr is not worth a panic; the exit code still tells.
    match result {
        Ok(line) => {
            let _ = writeln!(out, "{line}");
            EXIT_OK
        }
        Err(e) => {
            let _ = writeln!(err, "{e}");
            e.exit_code()
        }
    }
}
