//! `edgegate snapshot build <input> --out <dir> [--shard-bytes N]`: checks a Registry snapshot
//! (JSON, or CSV: see [`crate::snapshot_csv`]), encodes it, splits it into KV-sized shards and
//! writes, in `<dir>`, one file per KV value: each shard under its KV key
//! ([`ShardManifest::shard_key`]`(`[`SHARD_PREFIX`]`, i)`, `snapshot:<sha256>:<i>`), the
//! manifest as [`MANIFEST_FILE`] (the value of [`MANIFEST_KEY`]), and [`KV_LIST_FILE`], the
//! `[{"key", "file"}]` list in upload order (shards first, the manifest last — an isolate that
//! reads the manifest then finds every shard it names).

use crate::error::CliError;
use crate::progress::{Progress, LARGE_INPUT_BYTES};
use crate::snapshot_csv::{self, CsvInput, CsvProgress};
use edgegate_core::snapshot::{
    self, ShardManifest, SnapshotDoc, KV_VALUE_LIMIT, MANIFEST_KEY, SHARD_PREFIX,
};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The manifest's file name in the output directory (the value for [`MANIFEST_KEY`]).
pub const MANIFEST_FILE: &str = "manifest.json";
/// The upload list's file name in the output directory.
pub const KV_LIST_FILE: &str = "kv.json";

/// The format of a snapshot input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// The Registry's snapshot document (JSON).
    Json,
    /// One row per subscription (see the columns in `edgegate snapshot build --help`).
    Csv,
}

/// The snapshot input: a document, its format and (for CSV) what JSON carries in-band.
#[derive(Debug, Clone, PartialEq, Eq, Default, clap::Args)]
pub struct SnapshotInput {
    /// The snapshot: JSON (the Registry's document) or CSV (one row per subscription).
    #[arg(value_name = "SNAPSHOT")]
    pub input: PathBuf,
    /// The input's format (default: `csv` for a `.csv` file, else `json`).
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,
    /// CSV only: the credentials (API keys, certificates), one row each.
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// CSV only: the snapshot's version (required for CSV; JSON carries its own).
    #[arg(long, value_name = "VERSION")]
    pub snapshot_version: Option<String>,
}

/// The options of `snapshot build`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct BuildOptions {
    /// The snapshot to build.
    #[command(flatten)]
    pub source: SnapshotInput,
    /// Output directory (created if missing).
    #[arg(long = "out", value_name = "DIR")]
    pub out_dir: PathBuf,
    /// The largest shard in bytes.
    #[arg(long, value_name = "N", default_value_t = KV_VALUE_LIMIT, value_parser = shard_bytes)]
    pub shard_bytes: usize,
}

/// `--shard-bytes`: a number from 1 to [`KV_VALUE_LIMIT`].
fn shard_bytes(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|n| (1..=KV_VALUE_LIMIT).contains(n))
        .ok_or_else(|| format!("expected a number from 1 to {KV_VALUE_LIMIT}"))
}

impl BuildOptions {
    /// JSON `input` into `out_dir` with the default shard size.
    pub fn new(input: impl Into<PathBuf>, out_dir: impl Into<PathBuf>) -> BuildOptions {
        BuildOptions {
            source: SnapshotInput {
                input: input.into(),
                ..SnapshotInput::default()
            },
            out_dir: out_dir.into(),
            shard_bytes: KV_VALUE_LIMIT,
        }
    }
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

/// Reads a file whole, advancing `progress` as it goes.
fn read_with_progress(path: &Path, progress: &Progress) -> Result<Vec<u8>, CliError> {
    let mut file = std::fs::File::open(path).map_err(CliError::io(path, "reading"))?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(CliError::io(path, "reading"))?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
        progress.inc(n as u64);
    }
}

fn utf8(raw: Vec<u8>, file: &Path) -> Result<String, CliError> {
    String::from_utf8(raw)
        .map_err(|e| CliError::invalid("$", format!("{}: not UTF-8 text: {e}", file.display())))
}

/// The size of a snapshot input (with its credentials file), to decide on a progress bar.
///
/// Errors: [`CliError::Io`] when the input cannot be read.
pub fn input_size(source: &SnapshotInput) -> Result<u64, CliError> {
    let path = &source.input;
    let size = std::fs::metadata(path)
        .map_err(CliError::io(path, "reading"))?
        .len();
    let extra = source
        .credentials
        .as_ref()
        .map_or(0, |c| std::fs::metadata(c).map(|m| m.len()).unwrap_or(0));
    Ok(size + extra)
}

/// Reads and checks a snapshot input (JSON or CSV). `show_progress`: draw a bar on stderr (the
/// caller decides: a terminal and a large input, see [`input_size`]).
///
/// Errors: [`CliError::Io`]; [`CliError::Invalid`] (not UTF-8, not JSON/CSV, or the
/// snapshot's rules); [`CliError::Usage`] for CSV without `--snapshot-version` or
/// `--credentials`/`--snapshot-version` with JSON.
pub fn load(source: &SnapshotInput, show_progress: bool) -> Result<SnapshotDoc, CliError> {
    let path = &source.input;
    let format = source
        .format
        .unwrap_or_else(|| match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => InputFormat::Csv,
            _ => InputFormat::Json,
        });
    let total = input_size(source)?;
    let progress = Progress::new(show_progress, total, "reading", true);
    match format {
        InputFormat::Json => {
            if source.credentials.is_some() || source.snapshot_version.is_some() {
                return Err(CliError::Usage(
                    "`--credentials` and `--snapshot-version` are for CSV input (a JSON snapshot carries both)".into(),
                ));
            }
            let text = utf8(read_with_progress(path, &progress)?, path)?;
            progress.spin("checking");
            snapshot::from_json(&text).map_err(CliError::Invalid)
        }
        InputFormat::Csv => {
            let version = source.snapshot_version.as_deref().ok_or_else(|| {
                CliError::Usage("CSV input needs `--snapshot-version <VERSION>`".into())
            })?;
            let subs = utf8(read_with_progress(path, &progress)?, path)?;
            let creds = match &source.credentials {
                Some(c) => Some(utf8(read_with_progress(c, &progress)?, c)?),
                None => None,
            };
            let (subs_name, creds_name) = (
                path.display().to_string(),
                source.credentials.as_ref().map(|c| c.display().to_string()),
            );
            progress.step("parsing", total);
            let mut done_before = 0u64;
            let mut last_file_len = 0u64;
            let mut advance = |step: CsvProgress| match step {
                CsvProgress::Read(pos) => {
                    // A smaller offset: the next file started.
                    if pos < last_file_len {
                        done_before += last_file_len;
                    }
                    last_file_len = pos;
                    progress.set(done_before + pos);
                }
                CsvProgress::Checking => progress.spin("checking"),
            };
            let creds_input = creds
                .as_deref()
                .zip(creds_name.as_deref())
                .map(|(text, name)| CsvInput { name, text });
            snapshot_csv::parse(
                version,
                CsvInput {
                    name: &subs_name,
                    text: &subs,
                },
                creds_input,
                &mut advance,
            )
            .map_err(CliError::Invalid)
        }
    }
}

/// Encodes a checked document and verifies that the gateway decodes the result.
///
/// Errors: [`CliError::SelfCheck`] when the encoding does not decode (a bug in the encoder).
pub fn encode_checked(doc: &SnapshotDoc) -> Result<Vec<u8>, CliError> {
    let bytes = snapshot::encode(doc);
    snapshot::decode(&bytes)
        .map_err(|e| CliError::SelfCheck(format!("the encoded snapshot does not decode: {e}")))?;
    Ok(bytes)
}

/// `snapshot build` without a progress bar; see [`build_snapshot_with`].
///
/// Errors: as [`build_snapshot_with`].
pub fn build_snapshot(opts: &BuildOptions) -> Result<BuildReport, CliError> {
    build_snapshot_with(opts, false)
}

/// `snapshot build`: reads and checks the input, encodes and shards it, checks that the
/// encoding decodes, then writes the shards, [`MANIFEST_FILE`] and [`KV_LIST_FILE`] (creating
/// the directory). Existing files of the same names are replaced; other files are left alone.
///
/// Errors: [`CliError::Invalid`] / [`CliError::Usage`] (see [`load`]) and
/// [`CliError::SelfCheck`] before anything is written; [`CliError::Io`].
pub fn build_snapshot_with(
    opts: &BuildOptions,
    progress_enabled: bool,
) -> Result<BuildReport, CliError> {
    let show = progress_enabled && input_size(&opts.source)? >= LARGE_INPUT_BYTES;
    let doc = load(&opts.source, show)?;
    let encoding = Progress::new(show, 0, "encoding", false);
    encoding.spin("encoding");
    let bytes = encode_checked(&doc)?;
    drop(encoding);
    let (manifest, parts) = snapshot::shard(&bytes, opts.shard_bytes.max(1));
    let manifest_json = serde_json::to_string(&manifest)
        .map_err(|e| CliError::SelfCheck(format!("manifest: {e}")))?;

    let progress = Progress::new(show, parts.len() as u64, "writing", false);
    let dir = &opts.out_dir;
    std::fs::create_dir_all(dir).map_err(CliError::io(dir, "creating"))?;
    let mut entries = Vec::with_capacity(parts.len() + 1);
    for (i, part) in (0u32..).zip(&parts) {
        let key = manifest.shard_key(SHARD_PREFIX, i);
        let path = dir.join(&key);
        std::fs::write(&path, part).map_err(CliError::io(&path, "writing"))?;
        progress.inc(1);
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
