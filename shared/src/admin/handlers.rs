//! The admin endpoints. Each takes the call and returns a JSON answer or a local reply;
//! the caller renders it and writes the audit line.

use super::router::Endpoint;
use crate::access_log::rfc3339_ms;
use crate::config::CompiledConfig;
use crate::config_store::{version_key, POINTER_KEY};
use crate::control::{is_route_name, ControlCall, ControlOutcome, ControlReply, MAX_REASON_CHARS};
use crate::pipeline::{Gateway, RequestHead};
use crate::platform::{CounterCall, CounterOp, Platform};
use crate::problem::{ErrorCode, LocalReply};
use crate::ratelimit::{ip_key, RateKey, RateLimit};
use crate::registry::{self, Activation, RegistryError};
use crate::route::QueryView;
use crate::snapshot::Cidr;
use serde::Deserialize;
use serde_json::{json, Value};
use std::rc::Rc;

/// A successful answer: status, JSON body, and what happened for the audit line.
pub(super) struct Done {
    pub status: u16,
    pub body: Value,
    pub detail: String,
}

fn ok(body: Value, detail: impl Into<String>) -> Result<Done, LocalReply> {
    Ok(Done {
        status: 200,
        body,
        detail: detail.into(),
    })
}

/// One admin call, authorized and matched.
pub(super) struct Call<'a, P> {
    pub gw: &'a Gateway,
    pub p: &'a P,
    pub req: &'a RequestHead,
    pub params: Vec<String>,
    pub body: &'a [u8],
}

fn bad(detail: impl Into<String>) -> LocalReply {
    let detail = detail.into();
    LocalReply::new(ErrorCode::InvalidAdminRequest, detail.clone()).with_public_detail(detail)
}

fn not_found(detail: impl Into<String>) -> LocalReply {
    let detail = detail.into();
    LocalReply::new(ErrorCode::AdminNotFound, detail.clone()).with_public_detail(detail)
}

/// Runs the endpoint.
pub(super) async fn dispatch<P: Platform>(
    endpoint: Endpoint,
    call: &Call<'_, P>,
) -> Result<Done, LocalReply> {
    match endpoint {
        Endpoint::Health => health(call).await,
        Endpoint::OpenApi => ok(super::openapi(call.gw.admin_settings().prefix()), ""),
        Endpoint::Config => config(call).await,
        Endpoint::ValidateConfig => validate(call),
        Endpoint::Routes => routes(call).await,
        Endpoint::DisableRoute => set_route(call, true).await,
        Endpoint::EnableRoute => set_route(call, false).await,
        Endpoint::ListBlocks => list_blocks(call).await,
        Endpoint::AddBlock => add_block(call).await,
        Endpoint::RemoveBlock => remove_block(call).await,
        Endpoint::RateLimits => rate_limits(call).await,
        Endpoint::ReadCounter => counters(call, CounterOp::Peek).await,
        Endpoint::ResetCounter => counters(call, CounterOp::Reset).await,
        Endpoint::Versions => versions(call).await,
        Endpoint::ActivateVersion => {
            let id = call.params.first().map(String::as_str).unwrap_or_default();
            activation(call.gw.activate_version(call.p, id).await)
        }
        Endpoint::Rollback => activation(call.gw.rollback_version(call.p).await),
        Endpoint::Sync => sync_now(call).await,
    }
}

// === versions and the Registry sync ===

/// The problem for a Registry error: its own stable code leads the detail. `fetched`: the
/// error is about a bundle the Registry just served ("sync now"), so an invalid config or
/// snapshot is the Registry's failure (502), not a conflict with the gateway's state.
fn registry_problem(e: &RegistryError, fetched: bool) -> LocalReply {
    let code = match e.code {
        "version_unknown" | "version_missing" => ErrorCode::AdminNotFound,
        "config_invalid" | "snapshot_invalid" if fetched => ErrorCode::RegistrySyncFailed,
        "no_previous_version"
        | "config_invalid"
        | "snapshot_invalid"
        | "registry_off"
        | "settings_invalid" => ErrorCode::AdminConflict,
        "store_failed" => ErrorCode::StoreUnavailable,
        _ => ErrorCode::RegistrySyncFailed,
    };
    let mut detail = e.to_string();
    for err in e.errors.iter().take(20) {
        detail.push_str(&format!("; {err}"));
    }
    LocalReply::new(code, detail.clone()).with_public_detail(detail)
}

async fn versions<P: Platform>(c: &Call<'_, P>) -> Result<Done, LocalReply> {
    let history = registry::history(c.p)
        .await
        .map_err(|e| registry_problem(&e, false))?;
    let active =
        c.p.get_text(POINTER_KEY)
            .await
            .map_err(|e| LocalReply::new(ErrorCode::StoreUnavailable, e.0))?
            .map(|v| v.trim().to_string());
    ok(
        json!({"active": active, "versions": history.entries}),
        format!("{} versions", history.entries.len()),
    )
}

fn activation(result: Result<Activation, RegistryError>) -> Result<Done, LocalReply> {
    let a = result.map_err(|e| registry_problem(&e, false))?;
    let detail = format!("{} -> {}", a.previous.as_deref().unwrap_or("-"), a.version);
    ok(json!(a), detail)
}

async fn sync_now<P: Platform>(c: &Call<'_, P>) -> Result<Done, LocalReply> {
    let outcome =
        c.gw.sync_registry(c.p, true)
            .await
            .map_err(|e| registry_problem(&e, true))?;
    let body = json!(outcome);
    let detail = body["result"].as_str().unwrap_or_default().to_string();
    ok(body, detail)
}

// === health and config ===

async fn health<P: Platform>(c: &Call<'_, P>) -> Result<Done, LocalReply> {
    let config = c.gw.config_store().current(c.p).await;
    let control = c.gw.control().current(c.p).await;
    // The snapshot requests on the active config use: the one it pins (the store keeps the
    // previous one loaded too, so its most recent load is not necessarily this one).
    let snapshot = match config.as_ref().and_then(|c| c.snapshot_manifest()) {
        Some(pinned) => c.gw.snapshot_store().current_for(c.p, Some(pinned)).await,
        None => c.gw.snapshot_store().active(),
    };
    ok(
        json!({
            "status": if config.is_some() { "ok" } else { "no_config" },
            "time": rfc3339_ms(c.p.now_ms()),
            "config_version": config.as_ref().map(|c| c.version()),
            "registry": registry_health(c).await,
            "snapshot_version": snapshot.as_ref().map(|s| s.version()),
            "control": {
                "reachable": control.is_some(),
                "revision": control.as_ref().map(|s| s.revision),
                "blocks": control.as_ref().map_or(0, |s| s.blocks.len()),
                "disabled_routes": control.as_ref().map_or(0, |s| s.disabled_routes.len()),
                "refresh_ms": c.gw.control().refresh_ms(),
            },
        }),
        "",
    )
}

/// The Registry sync's settings state and last result, for health.
async fn registry_health<P: Platform>(c: &Call<'_, P>) -> Value {
    match c.gw.registry_settings() {
        Ok(None) => json!({"sync": "off"}),
        Err(e) => json!({"sync": "misconfigured", "error": e.to_string()}),
        Ok(Some(s)) => match registry::status(c.p).await {
            Ok(status) => json!({"sync": "on", "url": s.url, "last_sync": status}),
            Err(e) => {
                json!({"sync": "on", "url": s.url, "last_sync": null, "error": e.to_string()})
            }
        },
    }
}

async fn active_config<P: Platform>(c: &Call<'_, P>) -> Result<Rc<CompiledConfig>, LocalReply> {
    c.gw.config_store()
        .current(c.p)
        .await
        .ok_or_else(|| LocalReply::new(ErrorCode::NoConfig, "no valid config has been loaded"))
}

async fn config<P: Platform>(c: &Call<'_, P>) -> Result<Done, LocalReply> {
    let active = active_config(c).await?;
    let key = version_key(active.version());
    let text = match c.p.get_text(&key).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Err(LocalReply::new(
                ErrorCode::NoConfig,
                format!("{key} is no longer in the store"),
            ))
        }
        Err(e) => return Err(LocalReply::new(ErrorCode::NoConfig, format!("{key}: {e}"))),
    };
    let document: Value = serde_json::from_str(&text)
        .map_err(|e| LocalReply::new(ErrorCode::InternalError, format!("{key}: {e}")))?;
    ok(
        json!({"version": active.version(), "document": document}),
        active.version(),
    )
}

/// Compiles the posted document as an activation would (the platform's capabilities and
/// the admin API's reserved paths), and reports every error. Never stores anything.
fn validate<P: Platform>(c: &Call<'_, P>) -> Result<Done, LocalReply> {
    let errors = match std::str::from_utf8(c.body) {
        Err(e) => vec![crate::config::ConfigError::new(
            "$",
            format!("not UTF-8: {e}"),
        )],
        Ok(text) => match c.gw.config_store().compile(c.p, text, "validate") {
            Err(e) => e.0,
            Ok(cfg) => {
                return ok(
                    json!({"valid": true, "error_count": 0, "errors": [],
                            "apis": cfg.apis().len(), "routes": cfg.routes().len()}),
                    "valid",
                )
            }
        },
    };
    let n = errors.len();
    ok(
        json!({"valid": false, "error_count": n, "errors": errors}),
        format!("{n} errors"),
    )
}

// === routes ===

async fn control<P: Platform>(
    c: &Call<'_, P>,
    call: &ControlCall,
) -> Result<ControlReply, LocalReply> {
    let reply =
        c.p.control(call)
            .await
            .map_err(|e| LocalReply::new(ErrorCode::ControlUnavailable, e.0))?;
    // This isolate applies the change at once; the others within their refresh interval.
    c.gw.control().install(c.p, reply.state.clone());
    if reply.outcome == ControlOutcome::Refused {
        return Err(bad(reply.error.unwrap_or_default()));
    }
    Ok(reply)
}

async fn routes<P: Platform>(c: &Call<'_, P>) -> Result<Done, LocalReply> {
    let cfg = active_config(c).await?;
    let state = control(c, &ControlCall::Read).await?.state;
    let list: Vec<Value> = cfg
        .routes()
        .iter()
        .map(|r| {
            let api = cfg.apis().get(r.api).map_or("", |a| a.name.as_str());
            let off = state.disabled(api, &r.name);
            json!({"route": format!("{api}/{}", r.name), "api": api, "name": r.name,
                "disabled": off.is_some(), "reason": off.map(|d| &d.reason),
                "disabled_at": off.map(|d| rfc3339_ms(d.added_ms))})
        })
        .collect();
    ok(
        json!({"config_version": cfg.version(), "revision": state.revision, "routes": list,
            "disabled_routes": state.disabled_routes}),
        "",
    )
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    #[serde(default)]
    reason: String,
}

fn json_body<T: for<'de> Deserialize<'de> + Default>(
    body: &[u8],
    required: bool,
) -> Result<T, LocalReply> {
    if body.iter().all(u8::is_ascii_whitespace) {
        if required {
            return Err(bad("a JSON body is required"));
        }
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| bad(format!("body: {e}")))
}

async fn set_route<P: Platform>(c: &Call<'_, P>, disable: bool) -> Result<Done, LocalReply> {
    let (api, name) = match c.params.as_slice() {
        [a, r] => (a.as_str(), r.as_str()),
        _ => return Err(bad("expected /routes/{api}/{route}/...")),
    };
    let route = format!("{api}/{name}");
    if !is_route_name(&route) {
        return Err(bad(format!("{route:?} is not <api name>/<route name>")));
    }
    let call = if disable {
        let body: ReasonBody = json_body(c.body, false)?;
        if let Some(cfg) = c.gw.config_store().current(c.p).await {
            let known = cfg
                .routes()
                .iter()
                .any(|r| r.name == name && cfg.apis().get(r.api).is_some_and(|a| a.name == api));
            if !known {
                return Err(not_found(format!(
                    "the active config ({}) has no route {route}",
                    cfg.version()
                )));
            }
        }
        ControlCall::DisableRoute {
            route: route.clone(),
            reason: body.reason,
        }
    } else {
        ControlCall::EnableRoute {
            route: route.clone(),
        }
    };
    let reply = control(c, &call).await?;
    if reply.outcome == ControlOutcome::NotFound {
        return Err(not_found(format!("{route} is not disabled")));
    }
    ok(
        json!({"outcome": reply.outcome, "route": route, "disabled": disable,
            "revision": reply.state.revision}),
        format!("{} {route}", if disable { "disabled" } else { "enabled" }),
    )
}

// === IP blocks ===

async fn list_blocks<P: Platform>(c: &Call<'_, P>) -> Result<Done, LocalReply> {
    let state = control(c, &ControlCall::Read).await?.state;
    ok(
        json!({"revision": state.revision, "blocks": state.blocks}),
        "",
    )
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BlockBody {
    cidr: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    ttl_s: Option<u64>,
}

fn parse_cidr(s: &str) -> Result<Cidr, LocalReply> {
    s.trim()
        .parse::<Cidr>()
        .map_err(|e| bad(format!("cidr {s:?}: {e}")))
}

async fn add_block<P: Platform>(c: &Call<'_, P>) -> Result<Done, LocalReply> {
    let body: BlockBody = json_body(c.body, true)?;
    let cidr = parse_cidr(&body.cidr)?;
    if body.reason.chars().count() > MAX_REASON_CHARS {
        return Err(bad(format!(
            "reason is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    let call = ControlCall::Block {
        cidr,
        reason: body.reason,
        ttl_s: body.ttl_s,
    };
    call.validate().map_err(bad)?;
    let reply = control(c, &call).await?;
    let block = reply.state.blocks.iter().find(|b| b.cidr == cidr);
    ok(
        json!({"outcome": reply.outcome, "block": block, "revision": reply.state.revision}),
        format!("blocked {cidr}"),
    )
}

fn query<'a, P>(c: &'a Call<'_, P>) -> QueryView<'a> {
    QueryView::new(c.req.query.as_deref().unwrap_or(""))
}

async fn remove_block<P: Platform>(c: &Call<'_, P>) -> Result<Done, LocalReply> {
    let q = query(c);
    let raw = q
        .get("cidr")
        .ok_or_else(|| bad("the query parameter `cidr` is required"))?;
    let cidr = parse_cidr(&raw)?;
    let reply = control(c, &ControlCall::Unblock { cidr }).await?;
    if reply.outcome == ControlOutcome::NotFound {
        return Err(not_found(format!("{cidr} is not blocked")));
    }
    ok(
        json!({"outcome": reply.outcome, "cidr": cidr, "revision": reply.state.revision}),
        format!("unblocked {cidr}"),
    )
}

// === rate limits ===

/// Every distinct limit of the config (by scope and name), in route order.
fn distinct_limits(cfg: &CompiledConfig) -> Vec<&RateLimit> {
    let mut out: Vec<&RateLimit> = Vec::new();
    for r in cfg.routes() {
        for l in r.rate_limits.iter() {
            if !out.iter().any(|o| o.scope == l.scope && o.name == l.name) {
                out.push(l);
            }
        }
    }
    out
}

async fn rate_limits<P: Platform>(c: &Call<'_, P>) -> Result<Done, LocalReply> {
    let cfg = active_config(c).await?;
    let list: Vec<Value> = distinct_limits(&cfg)
        .into_iter()
        .map(|l| {
            json!({"name": l.name, "scope": l.scope, "key": l.key.as_str(),
                "algorithm": l.algorithm, "shards": l.shards,
                "plans": l.plans.iter().map(|(p, _)| p).collect::<Vec<_>>(),
                "mode": format!("{:?}", l.mode).to_ascii_lowercase()})
        })
        .collect();
    ok(
        json!({"config_version": cfg.version(), "rate_limits": list}),
        "",
    )
}

/// Reads or resets the counters of one limit and key value: `?limit=<name>&value=<key
/// value>` (`&scope=` narrows to one definition, `&plan=` picks a rate plan's algorithm).
/// The value is what the limit counts by: a subscription id, an application id, the API
/// name, `<api>/<route>`, or a client address (IPv6 counted per /64: any address of it).
/// Every shard of a sharded limit is read (or reset).
async fn counters<P: Platform>(c: &Call<'_, P>, op: CounterOp) -> Result<Done, LocalReply> {
    let cfg = active_config(c).await?;
    let q = query(c);
    let name = q
        .get("limit")
        .ok_or_else(|| bad("the query parameter `limit` (the rate limit's name) is required"))?;
    let value = q
        .get("value")
        .ok_or_else(|| bad("the query parameter `value` (the counted key's value) is required"))?;
    let scope = q.get("scope");
    let plan = q.get("plan");
    let limits: Vec<&RateLimit> = distinct_limits(&cfg)
        .into_iter()
        .filter(|l| l.name == name && scope.as_deref().is_none_or(|s| s == l.scope))
        .collect();
    if limits.is_empty() {
        return Err(not_found(format!(
            "the active config ({}) has no rate limit {name:?}{}",
            cfg.version(),
            scope
                .map(|s| format!(" in scope {s:?}"))
                .unwrap_or_default()
        )));
    }
    let mut out = Vec::new();
    for l in limits {
        let value = match (l.key, value.parse::<std::net::IpAddr>()) {
            (RateKey::Ip, Ok(ip)) => ip_key(ip),
            (RateKey::Ip, Err(_)) => {
                return Err(bad(format!(
                    "limit {name:?} counts per address: {value:?} is not one"
                )))
            }
            _ => value.to_string(),
        };
        for shard in 0..l.shards.max(1) {
            let key = l.counter_key(&value, shard);
            let call = CounterCall {
                key: key.clone(),
                algorithm: l.algorithm_for(plan.as_deref()),
                op,
            };
            let reply =
                c.p.counter(&call)
                    .await
                    .map_err(|e| LocalReply::new(ErrorCode::RateLimitUnavailable, e.0))?;
            out.push(
                json!({"limit": l.name, "scope": l.scope, "key": l.key.as_str(),
                "value": value, "shard": shard, "counter": key, "decision": reply.decision}),
            );
        }
    }
    let verb = if op == CounterOp::Reset {
        "reset"
    } else {
        "read"
    };
    ok(json!({"counters": out}), format!("{verb} {name} {value}"))
}
