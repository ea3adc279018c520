//! Progress bars for long-running steps, on the process's stderr, drawn only when stderr is a
//! terminal (never in pipes, logs or tests) and only for inputs of at least
//! [`LARGE_INPUT_BYTES`].

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Inputs from this size on get a progress bar (when stderr is a terminal).
pub const LARGE_INPUT_BYTES: u64 = 4 * 1024 * 1024;

/// A progress bar, or nothing (every method is then a no-op).
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar for a step over `len` units when `enabled` (the caller decides: terminal and a
    /// large input), else a no-op.
    pub fn new(enabled: bool, len: u64, message: &'static str, bytes: bool) -> Progress {
        if !enabled {
            return Progress { bar: None };
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        let template = if bytes {
            "{msg:>10} [{bar:40}] {bytes}/{total_bytes} ({eta})"
        } else {
            "{msg:>10} [{bar:40}] {pos}/{len} ({eta})"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(message);
        Progress { bar: Some(bar) }
    }

    /// Starts the next step: a new message and length, position 0.
    pub fn step(&self, message: &'static str, len: u64) {
        if let Some(bar) = &self.bar {
            bar.set_message(message);
            bar.set_length(len);
            bar.set_position(0);
        }
    }

    /// Switches to a spinner for a step of unknown length (checking, encoding).
    pub fn spin(&self, message: &'static str) {
        if let Some(bar) = &self.bar {
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
                bar.set_style(style);
            }
            bar.set_message(message);
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
        }
    }

    /// Moves to `pos`.
    pub fn set(&self, pos: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(pos);
        }
    }

    /// Advances by `n`.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }
}

impl Drop for Progress {
    /// Removes the bar from the terminal, so the summary line stands alone.
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
