//! Config: the document format ([`spec`]), the compiler ([`compile`]) and the immutable,
//! validated [`CompiledConfig`] that requests run on.

mod auth;
mod compile;
mod compiled;
mod duplicates;
mod error;
pub mod spec;

pub use compile::{compile, compile_document};
pub use compiled::{
    Api, CompiledConfig, Environment, GatewaySettings, ResolvedRoute, Route, UpstreamPolicy,
};
pub use error::{ConfigError, ConfigErrors};

/// The JSON Schema of the config document, generated from [`spec::ConfigDocument`].
///
/// Published as `schema/edgegate-config.schema.json` for editors; a test keeps the file in
/// sync.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(spec::ConfigDocument)).unwrap_or_default()
}
