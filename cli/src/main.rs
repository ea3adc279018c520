//! `edgegate`: the operator CLI. See the library's documentation ([`edgegate_cli`]) for the
//! commands and exit codes.

fn main() {
    // Unlocked handles: progress bars draw on stderr from a ticker thread, which must not wait
    // for a lock this thread holds for the whole run.
    let code = edgegate_cli::run(
        std::env::args_os().skip(1),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    std::process::exit(code);
}
