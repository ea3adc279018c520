//! # edgegate on Fermyon Spin
//!
//! The HTTP component: turns Spin's request into the core's [`RequestHead`] and body, runs the
//! core pipeline, and turns its answer back into a response. Everything that decides lives in
//! `edgegate-core`; this crate only implements the platform traits
//! ([`platform::SpinPlatform`]).
//!
//! Spin runs a fresh instance for every request, so nothing the gateway keeps in memory
//! (config cache, JWKS, verified tokens, balancer position) outlives a request: the config is
//! read from the key-value store on each request, and the cross-request caches go through the
//! platform's [`SharedCache`](edgegate_core::platform::SharedCache) (Spin key-value).
//!
//! spin.toml (top level) declares the route, `key_value_stores = ["default"]`,
//! `allowed_outbound_hosts` and the variables: secrets the config names (lower-cased: Spin
//! variable names are lower case), `redis_address` for exact rate limits and atomic
//! emergency overrides, and the Workers host's admin and Registry settings under the same
//! names in lower case (`EDGEGATE_ADMIN_TOKEN` → `edgegate_admin_token`, see [`variable`]).
//!
//! The component also exports the spin-trigger-cron plugin's `handle-cron-event` ([`cron`]),
//! which runs the same scheduled work on each cron tick. Without the plugin, Spin's HTTP
//! trigger has no scheduler: after the response is sent, the instance runs the
//! core's lazy tick ([`Gateway::tick_if_due`]: Registry sync, snapshot, JWKS prefetch — what
//! the Workers cron does every minute), at most once per `edgegate_sync_interval_s` (default
//! 60) and one at a time across instances (a lease in key-value). The client has its whole
//! response before the tick starts. See spin/README.md, "Scheduling".
//!
//! Bodies stream in both directions ([`body::SpinBody`]); a request body is buffered only
//! when the core asks for a replayable copy (failover) or for an admin call (at most
//! [`MAX_BODY_BYTES`]).

mod body;
mod convert;
mod cron;
mod platform;
mod timer;

use edgegate_core::access_log::event_line;
use edgegate_core::admin::{AdminSettings, BodyError, MAX_BODY_BYTES};
use edgegate_core::control::ControlCache;
use edgegate_core::pipeline::{Gateway, RuntimeSettings};
use edgegate_core::platform::{Clock, Log};
use edgegate_core::registry::{RegistrySettings, TickSettings};
use platform::SpinPlatform;
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;

/// A deployment setting by its Workers name (`EDGEGATE_ADMIN_PREFIX`): the Spin variable of
/// that name in lower case (`edgegate_admin_prefix`; Spin variable names are lower case).
/// Undeclared and empty variables are unset: spin.toml declares every one with a default, and
/// `""` is how Spin spells "not set".
pub fn variable(name: &str) -> Option<String> {
    spin_sdk::variables::get(&name.to_ascii_lowercase())
        .ok()
        .filter(|v| !v.is_empty())
}

/// The gateway of one request (Spin runs a fresh instance per request).
fn gateway(platform: &SpinPlatform) -> Gateway {
    let (admin, problems) = AdminSettings::from_vars(variable);
    for problem in problems {
        platform.log_line(&event_line(
            "admin_settings_invalid",
            platform.now_ms(),
            serde_json::json!({ "problem": problem }),
        ));
    }
    // Refresh intervals of 0: the config pointer, the snapshot manifest and the overrides
    // are read on this request (there is no older copy to serve from).
    Gateway::new(RuntimeSettings {
        config_refresh_ms: 0,
        snapshot_refresh_ms: 0,
    })
    .with_admin(admin)
    .with_registry(RegistrySettings::from_vars(variable))
    .with_control(ControlCache::new(0))
}

/// The lazy tick's interval (`edgegate_sync_interval_s`); an invalid value is logged
/// (`tick_settings_invalid`) and the default (60 s) applies.
fn tick_settings(platform: &SpinPlatform) -> TickSettings {
    TickSettings::from_vars(variable).unwrap_or_else(|e| {
        platform.log_line(&event_line(
            "tick_settings_invalid",
            platform.now_ms(),
            serde_json::json!({ "problem": e.to_string() }),
        ));
        TickSettings::default()
    })
}

/// Every request: convert, run the pipeline (or the admin API, for its prefix or host), send
/// the answer (bodies stream through in both directions); then, with the response complete,
/// the lazy tick when it is due. Never fails: the pipeline turns every failure into a
/// problem+json reply.
#[http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    let (head, body) = convert::inbound(req);
    let platform = SpinPlatform::new();
    let gateway = gateway(&platform);
    let response = match gateway.admin_match(&head) {
        Some(target) => {
            let read = async move {
                body.read_limited(MAX_BODY_BYTES as u64)
                    .await
                    .map_err(|e| match e {
                        None => BodyError::TooLarge,
                        Some(detail) => BodyError::Unreadable(detail),
                    })
            };
            gateway.handle_admin(&platform, &head, target, read).await
        }
        None => gateway.handle(&platform, head, body).await,
    };
    // Sends the head and the whole body, and finishes the body: the client has its response.
    convert::outbound(response, out).await;
    // The instance keeps running until this function returns (Spin waits for it, the client
    // does not): the scheduled work, when it is due.
    gateway
        .tick_if_due(&platform, &tick_settings(&platform))
        .await;
}
