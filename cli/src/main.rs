//! `edgegate`: the operator CLI. See the library's documentation ([`edgegate_cli`]) for the
//! commands and exit codes.

fn main() {
    let code = edgegate_cli::run(
        std::env::args_os().skip(1),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    std::process::exit(code);
}
