//! # edgegate on Cloudflare Workers
//!
//! The fetch handler turns the runtime's request into the core's [`RequestHead`] and body,
//! runs the core pipeline, and turns its answer back into a response; the scheduled (cron)
//! handler refreshes the config. Everything that decides lives in `edgegate-core`; this crate
//! only implements the platform traits ([`platform::WorkerPlatform`]).
//!
//! Bindings (wrangler.toml): KV namespace `EDGEGATE_CONFIG` (config pointer and versions,
//! Registry snapshot), Durable Object namespace `EDGEGATE_COUNTERS` (class [`RateCounter`]:
//! rate-limit counters), Durable Object namespace `EDGEGATE_CONTROL` (class [`Control`]: the
//! emergency overrides, one object), vars `EDGEGATE_CONFIG_REFRESH_MS` (how often an isolate
//! re-reads the pointer, default 5000), `EDGEGATE_SNAPSHOT_REFRESH_MS` (the snapshot, default
//! 30000), `EDGEGATE_CONTROL_REFRESH_MS` (the overrides, default 3000), the admin API's
//! `EDGEGATE_ADMIN_PREFIX` / `EDGEGATE_ADMIN_HOST` / `EDGEGATE_ADMIN_RATE_LIMIT`, the
//! secret `EDGEGATE_ADMIN_TOKEN` (unset: the admin API is off), and the Registry sync's vars
//! and secret (`EDGEGATE_REGISTRY_*`, `EDGEGATE_KEEP_VERSIONS`; see
//! `edgegate_core::registry::RegistrySettings` and wrangler.toml).

mod body;
mod convert;
#[cfg(not(feature = "wasm-crypto"))]
mod crypto;
mod platform;

/// The Durable Object classes, exported from this wasm so the runtime finds them.
pub use edgegate_durable_objects::{Control, RateCounter};

use edgegate_core::access_log::event_line;
use edgegate_core::admin::{AdminSettings, BodyError, MAX_BODY_BYTES};
use edgegate_core::control::ControlCache;
use edgegate_core::pipeline::{Gateway, RuntimeSettings, DEFAULT_CONTROL_REFRESH_MS};
use edgegate_core::registry;
use platform::WorkerPlatform;
use std::rc::Rc;
use worker::{event, Context, Env, Result, ScheduleContext, ScheduledEvent};

thread_local! {
    // One gateway per isolate: its config cache and balancer state live as long as the isolate.
    static GATEWAY: std::cell::OnceCell<Rc<Gateway>> = const { std::cell::OnceCell::new() };
}

fn gateway(env: &Env) -> Rc<Gateway> {
    GATEWAY.with(|g| {
        g.get_or_init(|| {
            let ms = |name: &str, default: u64| {
                env.var(name)
                    .ok()
                    .and_then(|v| v.to_string().parse().ok())
                    .unwrap_or(default)
            };
            let defaults = RuntimeSettings::default();
            let (admin, problems) =
                AdminSettings::from_vars(|name| env.var(name).ok().map(|v| v.to_string()));
            for problem in problems {
                let line = event_line(
                    "admin_settings_invalid",
                    worker::Date::now().as_millis(),
                    serde_json::json!({ "problem": problem }),
                );
                worker::console_log!("{}", line);
            }
            Rc::new(
                Gateway::new(RuntimeSettings {
                    config_refresh_ms: ms("EDGEGATE_CONFIG_REFRESH_MS", defaults.config_refresh_ms),
                    snapshot_refresh_ms: ms(
                        "EDGEGATE_SNAPSHOT_REFRESH_MS",
                        defaults.snapshot_refresh_ms,
                    ),
                })
                .with_admin(admin)
                .with_registry(registry::RegistrySettings::from_vars(|name| {
                    // The token is a secret; the URL and keys are usually vars.
                    env.secret(name)
                        .or_else(|_| env.var(name))
                        .ok()
                        .map(|v| v.to_string())
                }))
                // Warm re-reads of the overrides run after the response (waitUntil below).
                .with_control(
                    ControlCache::new(ms(
                        "EDGEGATE_CONTROL_REFRESH_MS",
                        DEFAULT_CONTROL_REFRESH_MS,
                    ))
                    .with_background_refresh(),
                ),
            )
        })
        .clone()
    })
}

/// Every request: convert, run the pipeline (or the admin API, for its prefix or host),
/// convert back. Takes the raw runtime request (no `request.cf` read, no URL re-parse).
/// Errors only if the runtime refuses to build the response (a bug); the pipeline itself
/// never fails.
#[event(fetch)]
async fn fetch(req: web_sys::Request, env: Env, ctx: Context) -> Result<web_sys::Response> {
    let platform = WorkerPlatform::new(&env, &req);
    let (head, body) = convert::inbound(&req);
    let gateway = gateway(&env);
    let response = match gateway.admin_match(&head) {
        Some(target) => {
            let read = body::read_limited(body, MAX_BODY_BYTES);
            let read = async move {
                read.await.map_err(|e| match e {
                    None => BodyError::TooLarge,
                    Some(detail) => BodyError::Unreadable(detail),
                })
            };
            gateway.handle_admin(&platform, &head, target, read).await
        }
        None => gateway.handle(&platform, head, body).await,
    };
    if gateway.control().take_wanted() {
        // The overrides' re-read, after the response: no request waits for the round trip.
        let env = env.clone();
        ctx.wait_until(async move {
            gateway
                .control()
                .refresh(&WorkerPlatform::without_request(&env))
                .await;
        });
    }
    Ok(convert::outbound(response)?)
}

/// Cron: the core's scheduled run (`Gateway::scheduled_run`, the same steps Spin's lazy tick
/// runs): re-read the config pointer and the emergency overrides now, so every isolate that
/// runs the cron picks up a new version (or logs why it did not) without waiting for a
/// request; then, when `EDGEGATE_REGISTRY_URL` is set, run the Registry sync and, if it
/// activated a version, refresh this isolate's config at once; then make the active config's
/// snapshot current and prefetch the keys of every identity provider, so requests rarely wait
/// for a JWKS fetch. Logs `config_check`.
#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let platform = WorkerPlatform::without_request(&env);
    let gateway = gateway(&env);
    let report = gateway.scheduled_run(&platform).await;
    let mut fields = report.fields();
    if let Some(map) = fields.as_object_mut() {
        map.insert("trigger".into(), serde_json::json!("cron"));
        map.insert("cron".into(), serde_json::json!(event.cron()));
    }
    let line = event_line("config_check", worker::Date::now().as_millis(), fields);
    worker::console_log!("{}", line);
}
