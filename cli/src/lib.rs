//! The edgegate operator CLI (binary `edgegate`).
//!
//! Commands (one module each; `edgegate <command> --help` for the options):
//!
//! - `validate <config.json> [--platform workers|spin] [--json]` ([`validate`]): compiles a
//!   config as the gateway does and prints every problem with its JSON path.
//! - `diff <a.json> <b.json> [--json] [--exit-code]` ([`diff`]): APIs, routes, policies,
//!   pools and identity providers added, removed and changed.
//! - `snapshot build <snapshot.json|.csv> --out <dir> [--shard-bytes N]`
//!   ([`snapshot_build`]): the Registry snapshot's KV values (shards and manifest).
//! - `import-openapi <spec.json|.yaml> [--out config.json]` ([`openapi`]): an OpenAPI 3.0/3.1
//!   document as an edgegate config; warnings on stderr for what it cannot map.
//! - `bundle --config c.json [--snapshot s.json | --snapshot-dir d] --label L --out x.egb`
//!   ([`mod@bundle`]): config + snapshot → a Registry bundle.
//! - `keygen --out name` ([`keys`]), `sign x.egb --key name.key` ([`sign`]), `verify x.egb
//!   --public-key name.pub` ([`verify`]): Ed25519 signing keys, signatures, the full check.
//! - `push x.egb (--local [--persist-to DIR] | --remote)` ([`push`]): store and activate a
//!   bundle's version in the config KV through `wrangler kv`.
//!
//! Exit codes: [`EXIT_OK`]; [`EXIT_FAILURE`] (1) when a file cannot be read or written or an
//! external command fails; [`EXIT_INVALID`] (2) for a bad command line or an invalid input
//! (every problem printed as `path: message`, nothing written); [`EXIT_DIFFERENT`] (3) from
//! `diff --exit-code` when the configs differ.
//!
//! [`run`] is the whole program over argument and output streams, so tests drive it without a
//! process; [`run_with`] also takes the process environment it would otherwise read ([`Env`]).

pub mod bundle;
pub mod diff;
pub mod error;
pub mod keys;
pub mod openapi;
pub mod progress;
pub mod push;
pub mod sign;
pub mod snapshot_build;
pub mod snapshot_csv;
pub mod validate;
pub mod verify;

pub use error::{CliError, EXIT_DIFFERENT, EXIT_FAILURE, EXIT_INVALID, EXIT_OK};
pub use snapshot_build::{
    build_snapshot, BuildOptions, BuildReport, InputFormat, KvEntry, SnapshotInput, KV_LIST_FILE,
    MANIFEST_FILE,
};

use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::io::{IsTerminal, Write};

/// Shown after the top-level help: every command on one line.
const COMMANDS: &str = "\
Commands in full:
  edgegate validate <config.json> [--platform workers|spin] [--json]
  edgegate diff <a.json> <b.json> [--json] [--exit-code]
  edgegate snapshot build <snapshot.json|.csv> --out <dir> [--shard-bytes N]
                          [--credentials creds.csv --snapshot-version V]
  edgegate import-openapi <spec.yaml|.json> [--out config.json]
  edgegate bundle --config c.json [--snapshot s.json|s.csv | --snapshot-dir d] --label L --out x.egb
  edgegate keygen --out name                       (name.key: private JWK, name.pub: public)
  edgegate sign x.egb --key name.key
  edgegate verify x.egb [--public-key name.pub|ed25519:...]... [--allow-unsigned]
  edgegate push x.egb (--local [--persist-to DIR] | --remote) [--binding EDGEGATE_CONFIG]
                      [--wrangler CMD] [--public-key ...] [--allow-unsigned] [--keep N]

Environment: EDGEGATE_REGISTRY_KEYS (verify/push keys when no --public-key is given),
EDGEGATE_WRANGLER (the wrangler command for push).

Exit codes: 0 ok, 1 I/O or external command failed, 2 invalid command line or input
(nothing written), 3 `diff --exit-code` found differences.";

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "edgegate",
    about = "The edgegate operator CLI",
    after_help = COMMANDS,
    disable_version_flag = true
)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compile a config as the gateway does; print every problem with its JSON path.
    Validate(validate::ValidateArgs),
    /// Compare two configs: APIs, routes, policies, pools, identity providers.
    Diff(diff::DiffArgs),
    /// Registry snapshots.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Turn an OpenAPI 3.0/3.1 document (JSON or YAML) into an edgegate config.
    ImportOpenapi(openapi::ImportArgs),
    /// Build a Registry bundle: a config and its subscription snapshot (unsigned).
    Bundle(bundle::BundleArgs),
    /// Make an Ed25519 signing key pair.
    Keygen(keys::KeygenArgs),
    /// Sign a bundle.
    Sign(sign::SignArgs),
    /// Check a bundle as the gateway's sync does: signatures, snapshot, config.
    Verify(verify::VerifyArgs),
    /// Store a bundle's version in the config KV and activate it (wrangler kv).
    Push(push::PushArgs),
}

/// `snapshot` subcommands.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Check a snapshot (JSON or CSV), encode it and write its KV values to a directory: one
    /// file per shard named by its KV key (snapshot:<sha256>:<i>), manifest.json (the value of
    /// snapshot:manifest) and kv.json (the upload order: shards first, the manifest last).
    #[command(after_help = snapshot_csv::CSV_HELP)]
    Build(BuildOptions),
}

/// What a command printed and how it ends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// For stdout (a trailing newline is added when missing and not empty).
    pub stdout: String,
    /// For stderr (warnings; same newline rule).
    pub stderr: String,
    /// The exit code.
    pub code: i32,
}

impl Outcome {
    /// Success with `text` on stdout.
    pub fn stdout(text: impl Into<String>) -> Outcome {
        Outcome {
            stdout: text.into(),
            ..Outcome::default()
        }
    }
}

/// What the program reads from its process besides the arguments.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// Draw progress bars on stderr (set when stderr is a terminal).
    pub progress: bool,
    /// `$EDGEGATE_REGISTRY_KEYS`: trusted public keys, comma-separated.
    pub registry_keys: Option<String>,
    /// `$EDGEGATE_WRANGLER`: the wrangler command.
    pub wrangler: Option<String>,
    /// The current time (unix ms): bundles' creation, activations.
    pub now_ms: u64,
}

impl Env {
    /// The current process's environment.
    pub fn from_process() -> Env {
        Env {
            progress: std::io::stderr().is_terminal(),
            registry_keys: std::env::var("EDGEGATE_REGISTRY_KEYS").ok(),
            wrangler: std::env::var("EDGEGATE_WRANGLER").ok(),
            now_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }
}

/// The whole program: parses `args` (without the program name), runs the command, prints the
/// result to `out` and problems to `err`, and returns the exit code. Reads the process
/// environment ([`Env::from_process`]).
pub fn run<I, O, E>(args: I, out: &mut O, err: &mut E) -> i32
where
    I: IntoIterator<Item = OsString>,
    O: Write + ?Sized,
    E: Write + ?Sized,
{
    run_with(args, out, err, &Env::from_process())
}

/// [`run`] with an explicit environment.
pub fn run_with<I, O, E>(args: I, out: &mut O, err: &mut E, env: &Env) -> i32
where
    I: IntoIterator<Item = OsString>,
    O: Write + ?Sized,
    E: Write + ?Sized,
{
    let args = std::iter::once(OsString::from("edgegate")).chain(args);
    let result = match Cli::try_parse_from(args) {
        Ok(cli) => execute(cli.command, env),
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                Ok(Outcome::stdout(e.render().to_string()))
            }
            _ => {
                let text = e.render().to_string();
                let text = text.trim_start_matches("error: ");
                // Our own hint replaces clap's.
                let text = text
                    .trim_end()
                    .trim_end_matches("For more information, try '--help'.");
                Err(CliError::Usage(text.trim_end().to_string()))
            }
        },
    };
    match result {
        Ok(outcome) => {
            print(out, &outcome.stdout);
            print(err, &outcome.stderr);
            outcome.code
        }
        Err(e) => {
            print(err, &e.to_string());
            e.exit_code()
        }
    }
}

/// Writes `text` with a final newline (nothing for empty text). A closed stdout/stderr is
/// not worth a panic; the exit code still tells.
fn print<W: Write + ?Sized>(w: &mut W, text: &str) {
    if !text.is_empty() {
        let _ = write!(w, "{text}");
        if !text.ends_with('\n') {
            let _ = writeln!(w);
        }
    }
}

/// Runs one parsed command.
///
/// Errors: the command's own.
pub fn execute(command: Command, env: &Env) -> Result<Outcome, CliError> {
    match command {
        Command::Validate(args) => validate::run(&args),
        Command::Diff(args) => diff::run(&args),
        Command::Snapshot(SnapshotCommand::Build(opts)) => {
            snapshot_build::build_snapshot_with(&opts, env.progress)
                .map(|report| Outcome::stdout(report.summary(&opts.out_dir)))
        }
        Command::ImportOpenapi(args) => openapi::run(&args),
        Command::Bundle(args) => bundle::run(&args, env.now_ms, env.progress),
        Command::Keygen(args) => keys::keygen(&args),
        Command::Sign(args) => sign::run(&args),
        Command::Verify(args) => verify::run(&args, env.registry_keys.as_deref()),
        Command::Push(args) => push::run(
            &args,
            env.registry_keys.as_deref(),
            env.wrangler.as_deref(),
            env.now_ms,
        ),
    }
}
