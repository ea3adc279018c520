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
//! variable names are lower case) and `redis_address` for exact rate limits.
//!
//! Bodies stream in both directions ([`body::SpinBody`]); a request body is buffered only
//! when the core asks for a replayable copy (failover).

mod body;
mod convert;
mod platform;
mod timer;

use edgegate_core::pipeline::{Gateway, RuntimeSettings};
use platform::SpinPlatform;
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;

/// Every request: convert, run the pipeline, send the answer (bodies stream through in both
/// directions). Never fails: the pipeline turns every failure into a problem+json reply.
#[http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    let (head, body) = convert::inbound(req);
    let platform = SpinPlatform::new();
    // A fresh instance per request: refresh intervals of 0 read the config pointer and the
    // snapshot manifest on this request (there is no older copy to serve from).
    let gateway = Gateway::new(RuntimeSettings {
        config_refresh_ms: 0,
        snapshot_refresh_ms: 0,
    });
    let response = gateway.handle(&platform, head, body).await;
    convert::outbound(response, out).await
}
