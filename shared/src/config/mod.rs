//! Config: the document format ([`spec`]), the compiler ([`compile`]) and the immutable,
//! validated [`CompiledConfig`] that requests run on.

mod auth;
mod authz;
mod compile;
mod compiled;
mod duplicates;
mod error;
mod ratelimit;
pub mod spec;

pub use compile::{compile, compile_document, compile_with, Validation};
pub use compiled::{
    Api, CompiledConfig, Environment, GatewaySettings, ResolvedRoute, Route, UpstreamPolicy,
};
pub use error::{ConfigError, ConfigErrors};
pub use ratelimit::{MAX_QUEUE_MS, MAX_SHARDS};

/// What a platform can do, where features depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The platform reports verified client certificates (mutual TLS): Workers yes, Spin no.
    pub client_certificates: bool,
}

/// Compiles for a platform: [`compile`], and then every feature the platform lacks is an
/// error at the path that asks for it (never silently ignored).
pub fn compile_for(
    text: &str,
    version: &str,
    caps: Capabilities,
) -> Result<CompiledConfig, ConfigErrors> {
    compile_for_with(text, version, caps, Validation::Full)
}

/// [`compile_for`] with the given [`Validation`] ([`Validation::PreviouslyValidated`] only
/// for text that compiled with [`Validation::Full`] before).
///
/// Errors: as [`compile_for`].
pub fn compile_for_with(
    text: &str,
    version: &str,
    caps: Capabilities,
    validation: Validation,
) -> Result<CompiledConfig, ConfigErrors> {
    let config = compile_with(text, version, validation)?;
    if !caps.client_certificates && !config.mtls_paths().is_empty() {
        return Err(ConfigErrors(
            config
                .mtls_paths()
                .iter()
                .map(|path| ConfigError::new(path, "`mtls` is not available on this platform: it cannot see client certificates"))
                .collect(),
        ));
    }
    Ok(config)
}

/// The JSON Schema of the config document, generated from [`spec::ConfigDocument`].
///
/// Published as `schema/edgegate-config.schema.json` for editors; a test keeps the file in
/// sync.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(spec::ConfigDocument)).unwrap_or_default()
}
