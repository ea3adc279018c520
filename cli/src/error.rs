//! [`CliError`]: why a command failed, and the exit code each failure maps to.

use edgegate_core::config::{ConfigError, ConfigErrors};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: a file could not be read or written, an external command (wrangler) failed, or a
/// self-check failed.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code: the command line or an input document is invalid; nothing was written.
pub const EXIT_INVALID: i32 = 2;
/// Exit code of `diff --exit-code` when the two configs differ.
pub const EXIT_DIFFERENT: i32 = 3;

/// Why a command failed.
#[derive(Debug)]
pub enum CliError {
    /// The command line is not understood (clap's message).
    Usage(String),
    /// An input document is not valid; each problem with its JSON path.
    Invalid(ConfigErrors),
    /// An input cannot be used, for a reason that has no JSON path (e.g. an OpenAPI document
    /// of an unsupported version, a bundle that does not decode, a bad key file).
    Refused(String),
    /// A file could not be read or written.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done (`reading`, `writing`, `creating`).
        action: &'static str,
        /// The error.
        error: io::Error,
    },
    /// An external command (wrangler) failed or could not be started.
    External(String),
    /// What we produced does not read back (a bug; nothing was written).
    SelfCheck(String),
}

impl CliError {
    /// The process exit code for this error: [`EXIT_INVALID`] for bad command lines and
    /// inputs, [`EXIT_FAILURE`] for I/O, external commands and self-checks.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) | CliError::Invalid(_) | CliError::Refused(_) => EXIT_INVALID,
            CliError::Io { .. } | CliError::External(_) | CliError::SelfCheck(_) => EXIT_FAILURE,
        }
    }

    /// One invalid-document error at `path`.
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> CliError {
        CliError::Invalid(ConfigErrors(vec![ConfigError::new(path, message)]))
    }

    /// A `map_err` adapter for I/O on `path`.
    pub fn io<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> CliError + 'a {
        move |error| CliError::Io {
            path: path.to_path_buf(),
            action,
            error,
        }
    }
}

impl fmt::Display for CliError {
    /// Usage errors end with a hint; an invalid document gives one `path: message` line per
    /// problem.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(msg) => {
                write!(f, "edgegate: {}\n(run `edgegate --help`)", msg.trim_end())
            }
            CliError::Invalid(errors) => write!(f, "{errors}"),
            CliError::Refused(msg) => write!(f, "edgegate: {msg}"),
            CliError::Io {
                path,
                action,
                error,
            } => write!(f, "edgegate: {action} {}: {error}", path.display()),
            CliError::External(msg) => write!(f, "edgegate: {msg}"),
            CliError::SelfCheck(msg) => {
                write!(f, "edgegate: self-check failed ({msg}); nothing written")
            }
        }
    }
}

impl std::error::Error for CliError {}

/// Reads a file as UTF-8 text.
///
/// Errors: [`CliError::Io`] when it cannot be read; [`CliError::Invalid`] at `$` when it is not
/// UTF-8.
pub fn read_text(path: &Path) -> Result<String, CliError> {
    let raw = std::fs::read(path).map_err(CliError::io(path, "reading"))?;
    String::from_utf8(raw).map_err(|e| CliError::invalid("$", format!("not UTF-8 text: {e}")))
}
