//! `edgegate validate <config.json> [--platform workers|spin] [--json]`: compiles a config
//! document exactly as the gateway does when it activates a version, and reports every problem
//! with its JSON path.

use crate::error::{read_text, CliError, EXIT_INVALID};
use crate::Outcome;
use edgegate_core::admin::AdminSettings;
use edgegate_core::config::{Capabilities, CompiledConfig, ConfigErrors};
use edgegate_core::config_store::ConfigStore;
use edgegate_core::platform::{ClientCertificate, ClientCertificates};
use std::path::PathBuf;

/// The platform whose capabilities the config is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Platform {
    /// Cloudflare Workers: every feature.
    Workers,
    /// Fermyon Spin: no client certificates (`mtls`).
    Spin,
}

impl Platform {
    /// The core's capabilities of this platform.
    pub fn capabilities(self) -> Capabilities {
        match self {
            Platform::Workers => Capabilities {
                client_certificates: true,
            },
            Platform::Spin => Capabilities {
                client_certificates: false,
            },
        }
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Platform::Workers => "workers",
            Platform::Spin => "spin",
        }
    }
}

/// What the gateway's compile rule asks of the platform: whether it reports client
/// certificates (never a request's certificate: the CLI serves none).
impl ClientCertificates for Platform {
    fn supports_client_certificates(&self) -> bool {
        self.capabilities().client_certificates
    }

    fn client_certificate(&self) -> Option<ClientCertificate> {
        None
    }
}

/// The arguments of `validate`.
#[derive(Debug, Clone, clap::Args)]
pub struct ValidateArgs {
    /// The config document (JSON).
    pub config: PathBuf,
    /// Check against this platform's capabilities.
    #[arg(long, value_enum, default_value_t = Platform::Workers)]
    pub platform: Platform,
    /// Print the result as one JSON object on stdout (`{"valid": …, "errors": [{"path",
    /// "message"}]}`), also when invalid.
    #[arg(long)]
    pub json: bool,
}

/// Compiles config text for `platform` by the gateway's own rule,
/// [`ConfigStore::compile`] (what its config store runs before it activates a version, and
/// its Registry sync before it stores one), with the platform's capabilities and the admin
/// API's reserved paths: the default prefix (`/__edgegate/admin`), or `EDGEGATE_ADMIN_PREFIX`
/// / `EDGEGATE_ADMIN_HOST` from the environment, as the deployment sets them — a config
/// whose routes reach the admin API would be refused by every isolate. The version id is
/// irrelevant to validity.
///
/// Errors: every problem, each with its JSON path.
pub fn check(text: &str, platform: Platform) -> Result<CompiledConfig, ConfigErrors> {
    let (admin, _problems) = AdminSettings::from_vars(|name| std::env::var(name).ok());
    ConfigStore::new(0)
        .with_admin(admin)
        .compile(&platform, text, "validate")
}

/// The one-line summary of a valid config.
pub fn summary(config: &CompiledConfig) -> String {
    let n = |count: usize, one: &str, many: &str| {
        format!("{count} {}", if count == 1 { one } else { many })
    };
    format!(
        "{}, {}, {}, {}",
        n(config.apis().len(), "API", "APIs"),
        n(config.routes().len(), "route", "routes"),
        n(config.pools().len(), "pool", "pools"),
        n(
            config.identity_providers().len(),
            "identity provider",
            "identity providers"
        ),
    )
}

/// Runs `validate`.
///
/// Without `--json`: prints `<file>: valid for <platform> (<summary>)`; an invalid config is
/// [`CliError::Invalid`] (one `path: message` line per problem on stderr, exit 2). With
/// `--json` the report goes to stdout either way, with exit code 2 when invalid.
///
/// Errors: [`CliError::Io`] when the file cannot be read; [`CliError::Invalid`].
pub fn run(args: &ValidateArgs) -> Result<Outcome, CliError> {
    let text = read_text(&args.config)?;
    let platform = args.platform.name();
    match (check(&text, args.platform), args.json) {
        (Ok(config), true) => Ok(Outcome::stdout(
            serde_json::json!({
                "valid": true,
                "platform": platform,
                "apis": config.apis().len(),
                "routes": config.routes().len(),
                "pools": config.pools().len(),
                "identity_providers": config.identity_providers().len(),
            })
            .to_string(),
        )),
        (Ok(config), false) => Ok(Outcome::stdout(format!(
            "{}: valid for {platform} ({})",
            args.config.display(),
            summary(&config)
        ))),
        (Err(errors), true) => Ok(Outcome {
            code: EXIT_INVALID,
            ..Outcome::stdout(
                serde_json::json!({"valid": false, "platform": platform, "errors": errors})
                    .to_string(),
            )
        }),
        (Err(errors), false) => Err(CliError::Invalid(errors)),
    }
}
