//! `edgegate-spin-host`: see the crate docs and README.md. Prints one JSON line with the bound
//! addresses on stdout once both listeners are up, then serves until killed.

use edgegate_spin_host::config::HostConfig;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = match HostConfig::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    match edgegate_spin_host::server::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("[edgegate-spin-host] error: {e:?}");
            std::process::ExitCode::FAILURE
        }
    }
}
