//! The emergency overrides and the protocol of the object that holds them.
//!
//! One [`ControlState`] exists for the whole deployment (one Durable Object named
//! [`OBJECT_NAME`] on Workers). Every change goes through [`ControlCall::apply`], run by that
//! object (and by the fake platform), so the rules are the same everywhere.

use crate::snapshot::Cidr;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The name of the one control object.
pub const OBJECT_NAME: &str = "global";
/// At most this many IP blocks (keeps the state one small storage value and the per-request
/// scan short).
pub const MAX_BLOCKS: usize = 4096;
/// At most this many disabled routes.
pub const MAX_DISABLED_ROUTES: usize = 1024;
/// Longest reason text, in characters.
pub const MAX_REASON_CHARS: usize = 256;
/// Longest block lifetime: one year.
pub const MAX_TTL_S: u64 = 366 * 86_400;

/// One blocked address range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpBlock {
    /// The network (a bare address is a host network).
    pub cidr: Cidr,
    /// Why (for operators; shown in the admin API and the audit line, never to the client).
    pub reason: String,
    /// When it was added (unix ms, the control object's clock).
    pub added_ms: u64,
    /// When it stops applying (unix ms); `None`: until removed.
    pub expires_ms: Option<u64>,
}

impl IpBlock {
    /// True while the block applies at `now_ms`.
    pub fn live(&self, now_ms: u64) -> bool {
        self.expires_ms.is_none_or(|t| now_ms < t)
    }
}

/// One disabled route (an endpoint taken out of service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisabledRoute {
    /// `<api name>/<route name>`.
    pub route: String,
    /// Why (operators only).
    pub reason: String,
    /// When it was disabled (unix ms).
    pub added_ms: u64,
}

/// The emergency overrides: blocked client addresses and disabled routes. `revision` grows by
/// one with every change, so isolates and operators can tell versions apart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlState {
    /// Bumped on every change.
    pub revision: u64,
    /// Blocked networks, sorted by address and prefix.
    pub blocks: Vec<IpBlock>,
    /// Disabled routes, sorted by name.
    pub disabled_routes: Vec<DisabledRoute>,
}

impl ControlState {
    /// The live block that covers `ip` at `now_ms`, if any. IPv4-mapped IPv6 addresses
    /// (`::ffff:a.b.c.d`) are matched as the IPv4 address they carry, so an IPv4 block cannot
    /// be sidestepped by a dual-stack spelling. A linear scan: the list is short (≤
    /// [`MAX_BLOCKS`]) and per-request cost is one comparison per block.
    pub fn blocked(&self, ip: IpAddr, now_ms: u64) -> Option<&IpBlock> {
        let ip = match ip {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.blocks
            .iter()
            .find(|b| b.live(now_ms) && b.cidr.contains(ip))
    }

    /// The entry that disables route `route` of API `api`, if any.
    pub fn disabled(&self, api: &str, route: &str) -> Option<&DisabledRoute> {
        if self.disabled_routes.is_empty() {
            return None;
        }
        self.disabled_routes.iter().find(|d| {
            d.route
                .split_once('/')
                .is_some_and(|(a, r)| a == api && r == route)
        })
    }

    /// Drops blocks that expired at `now_ms`; true if any did.
    fn prune(&mut self, now_ms: u64) -> bool {
        let before = self.blocks.len();
        self.blocks.retain(|b| b.live(now_ms));
        self.blocks.len() != before
    }
}

/// One call on the control object: its protocol (JSON, `{"op": ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlCall {
    /// Read the state.
    Read,
    /// Block a network (replaces the reason and expiry of an existing block of it).
    Block {
        /// The network.
        cidr: Cidr,
        /// Why.
        reason: String,
        /// Lifetime in seconds from now; `None`: until removed.
        ttl_s: Option<u64>,
    },
    /// Remove the block of exactly this network.
    Unblock {
        /// The network, as it was blocked.
        cidr: Cidr,
    },
    /// Take a route out of service.
    DisableRoute {
        /// `<api name>/<route name>`.
        route: String,
        /// Why.
        reason: String,
    },
    /// Put a disabled route back into service.
    EnableRoute {
        /// `<api name>/<route name>`.
        route: String,
    },
}

/// What a call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlOutcome {
    /// Nothing was asked to change (read).
    Read,
    /// The state changed (the revision was bumped).
    Changed,
    /// The call asked for what was already so (the same block, an enabled route enabled).
    Unchanged,
    /// Unblock or enable named something not in the state.
    NotFound,
    /// The call was refused (see [`ControlReply::error`]); nothing changed.
    Refused,
}

/// The control object's answer: the outcome and the whole state after the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlReply {
    /// What the call did.
    pub outcome: ControlOutcome,
    /// Why it was refused (a full list, a bad name), for the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The state after the call.
    pub state: ControlState,
}

/// True for `<api>/<route>` where both are config names (1-64 of letters, digits, `.`, `_`,
/// `-`).
pub fn is_route_name(s: &str) -> bool {
    let name = |n: &str| {
        !n.is_empty()
            && n.len() <= 64
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    s.split_once('/').is_some_and(|(a, r)| name(a) && name(r))
}

impl ControlCall {
    /// Checks the call's fields (reason length, route name, lifetime). The admin API checks
    /// before sending; [`ControlCall::apply`] checks again, as the object trusts no caller.
    ///
    /// Errors: what is wrong, for the operator.
    pub fn validate(&self) -> Result<(), String> {
        let reason_ok = |r: &str| {
            if r.chars().count() > MAX_REASON_CHARS {
                Err(format!(
                    "reason is longer than {MAX_REASON_CHARS} characters"
                ))
            } else {
                Ok(())
            }
        };
        let route_ok = |r: &str| {
            if is_route_name(r) {
                Ok(())
            } else {
                Err(format!("{r:?} is not <api name>/<route name>"))
            }
        };
        match self {
            ControlCall::Read | ControlCall::Unblock { .. } => Ok(()),
            ControlCall::Block { reason, ttl_s, .. } => {
                reason_ok(reason)?;
                match ttl_s {
                    Some(0) => Err("ttl_s must be at least 1".into()),
                    Some(t) if *t > MAX_TTL_S => Err(format!("ttl_s is over {MAX_TTL_S}")),
                    _ => Ok(()),
                }
            }
            ControlCall::DisableRoute { route, reason } => {
                route_ok(route)?;
                reason_ok(reason)
            }
            ControlCall::EnableRoute { route } => route_ok(route),
        }
    }

    /// Runs the call on the state at `now_ms`: what the control object does with it (and the
    /// fake platform). Expired blocks are dropped first. Returns the reply and whether the
    /// state changed (and must be stored). Never fails: a refused call changes nothing and
    /// says why in the reply.
    pub fn apply(&self, state: &mut ControlState, now_ms: u64) -> (ControlReply, bool) {
        let pruned = state.prune(now_ms);
        let (outcome, error) = match self.validate() {
            Err(e) => (ControlOutcome::Refused, Some(e)),
            Ok(()) => self.change(state, now_ms),
        };
        let changed = pruned || outcome == ControlOutcome::Changed;
        if changed {
            state.revision += 1;
        }
        let reply = ControlReply {
            outcome,
            error,
            state: state.clone(),
        };
        (reply, changed)
    }

    fn change(&self, state: &mut ControlState, now_ms: u64) -> (ControlOutcome, Option<String>) {
        match self {
            ControlCall::Read => (ControlOutcome::Read, None),
            ControlCall::Block {
                cidr,
                reason,
                ttl_s,
            } => {
                let expires_ms = ttl_s.map(|t| now_ms.saturating_add(t.saturating_mul(1000)));
                if let Some(b) = state.blocks.iter_mut().find(|b| b.cidr == *cidr) {
                    if b.reason == *reason && b.expires_ms == expires_ms {
                        return (ControlOutcome::Unchanged, None);
                    }
                    b.reason.clone_from(reason);
                    b.expires_ms = expires_ms;
                    return (ControlOutcome::Changed, None);
                }
                if state.blocks.len() >= MAX_BLOCKS {
                    return (
                        ControlOutcome::Refused,
                        Some(format!("the block list is full ({MAX_BLOCKS} entries)")),
                    );
                }
                state.blocks.push(IpBlock {
                    cidr: *cidr,
                    reason: reason.clone(),
                    added_ms: now_ms,
                    expires_ms,
                });
                state
                    .blocks
                    .sort_by_cached_key(|b| (b.cidr.addr(), b.cidr.prefix()));
                (ControlOutcome::Changed, None)
            }
            ControlCall::Unblock { cidr } => {
                let before = state.blocks.len();
                state.blocks.retain(|b| b.cidr != *cidr);
                if state.blocks.len() == before {
                    (ControlOutcome::NotFound, None)
                } else {
                    (ControlOutcome::Changed, None)
                }
            }
            ControlCall::DisableRoute { route, reason } => {
                if let Some(d) = state.disabled_routes.iter_mut().find(|d| d.route == *route) {
                    if d.reason == *reason {
                        return (ControlOutcome::Unchanged, None);
                    }
                    d.reason.clone_from(reason);
                    return (ControlOutcome::Changed, None);
                }
                if state.disabled_routes.len() >= MAX_DISABLED_ROUTES {
                    return (
                        ControlOutcome::Refused,
                        Some(format!(
                            "the disabled-route list is full ({MAX_DISABLED_ROUTES} entries)"
                        )),
                    );
                }
                state.disabled_routes.push(DisabledRoute {
                    route: route.clone(),
                    reason: reason.clone(),
                    added_ms: now_ms,
                });
                state.disabled_routes.sort_by(|a, b| a.route.cmp(&b.route));
                (ControlOutcome::Changed, None)
            }
            ControlCall::EnableRoute { route } => {
                let before = state.disabled_routes.len();
                state.disabled_routes.retain(|d| d.route != *route);
                if state.disabled_routes.len() == before {
                    (ControlOutcome::NotFound, None)
                } else {
                    (ControlOutcome::Changed, None)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(cidr: &str, ttl_s: Option<u64>) -> ControlCall {
        ControlCall::Block {
            cidr: cidr.parse().expect("cidr"),
            reason: "abuse".into(),
            ttl_s,
        }
    }

    #[test]
    fn calls_table() {
        let mut s = ControlState::default();
        let disable = ControlCall::DisableRoute {
            route: "users/get-user".into(),
            reason: "incident 42".into(),
        };
        let enable = ControlCall::EnableRoute {
            route: "users/get-user".into(),
        };
        let unblock = ControlCall::Unblock {
            cidr: "203.0.113.0/24".parse().expect("cidr"),
        };
        let table: Vec<(ControlCall, ControlOutcome, u64)> = vec![
            (ControlCall::Read, ControlOutcome::Read, 0),
            (block("203.0.113.0/24", None), ControlOutcome::Changed, 1),
            (block("203.0.113.0/24", None), ControlOutcome::Unchanged, 1),
            (
                block("203.0.113.0/24", Some(60)),
                ControlOutcome::Changed,
                2,
            ),
            (disable.clone(), ControlOutcome::Changed, 3),
            (disable, ControlOutcome::Unchanged, 3),
            (enable.clone(), ControlOutcome::Changed, 4),
            (enable, ControlOutcome::NotFound, 4),
            (unblock.clone(), ControlOutcome::Changed, 5),
            (unblock, ControlOutcome::NotFound, 5),
            (
                ControlCall::DisableRoute {
                    route: "no-slash".into(),
                    reason: String::new(),
                },
                ControlOutcome::Refused,
                5,
            ),
            (block("10.0.0.0/8", Some(0)), ControlOutcome::Refused, 5),
        ];
        for (i, (call, want, revision)) in table.into_iter().enumerate() {
            let (reply, changed) = call.apply(&mut s, 1_000);
            assert_eq!(reply.outcome, want, "step {i}: {call:?}");
            assert_eq!(changed, want == ControlOutcome::Changed, "step {i}");
            assert_eq!(reply.state.revision, revision, "step {i}");
            assert_eq!(reply.error.is_some(), want == ControlOutcome::Refused);
        }
    }

    #[test]
    fn matching_and_expiry() {
        let mut s = ControlState::default();
        block("203.0.113.0/24", Some(10)).apply(&mut s, 0);
        block("2001:db8::/32", None).apply(&mut s, 0);
        let table = [
            ("203.0.113.9", 0, true),
            ("::ffff:203.0.113.9", 0, true),
            ("203.0.114.1", 0, false),
            ("2001:db8:1::1", 0, true),
            ("2001:db9::1", 0, false),
            ("203.0.113.9", 9_999, true),
            ("203.0.113.9", 10_000, false),
        ];
        for (ip, now, want) in table {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(s.blocked(ip, now).is_some(), want, "{ip} at {now}");
        }
        // The next call drops the expired block and bumps the revision.
        let (reply, changed) = ControlCall::Read.apply(&mut s, 10_000);
        assert!(changed);
        assert_eq!(reply.state.blocks.len(), 1);
        assert_eq!(reply.state.revision, 3);
    }

    #[test]
    fn wire_format_and_full_lists() {
        let call: ControlCall = serde_json::from_str(
            r#"{"op":"block","cidr":"198.51.100.7","reason":"x","ttl_s":null}"#,
        )
        .expect("parses");
        assert_eq!(call, block_reason("198.51.100.7/32", "x"));
        assert!(serde_json::from_str::<ControlCall>(
            r#"{"op":"block","cidr":"10.0.0.1/8","reason":""}"#
        )
        .is_err());
        let mut s = ControlState::default();
        for i in 0..MAX_DISABLED_ROUTES {
            let call = ControlCall::DisableRoute {
                route: format!("a/r{i}"),
                reason: String::new(),
            };
            assert_eq!(call.apply(&mut s, 0).0.outcome, ControlOutcome::Changed);
        }
        let over = ControlCall::DisableRoute {
            route: "a/over".into(),
            reason: String::new(),
        };
        let (reply, changed) = over.apply(&mut s, 0);
        assert_eq!(reply.outcome, ControlOutcome::Refused);
        assert!(!changed);
        assert!(s.disabled("a", "r7").is_some());
        assert!(s.disabled("a", "over").is_none());
    }

    fn block_reason(cidr: &str, reason: &str) -> ControlCall {
        ControlCall::Block {
            cidr: cidr.parse().expect("cidr"),
            reason: reason.into(),
            ttl_s: None,
        }
    }
}
