//! A deterministic generator of realistic snapshots, for tests and benchmarks.

use super::model::{
    Application, Cidr, Consumer, ConsumerStatus, Credential, CredentialKind, Plan, SnapshotDoc,
    Subscription, SubscriptionFlags, SubscriptionStatus,
};
use crate::auth::CredentialStatus;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// SplitMix64: tiny, deterministic, good enough for fixtures.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    /// A UUID-shaped id (the Registry's ids are UUIDs).
    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            (b >> 48) & 0x3fff | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }
    fn hex256(&mut self) -> String {
        (0..4).map(|_| format!("{:016x}", self.next())).collect()
    }
}

const APIS: [&str; 12] = [
    "orders",
    "payments",
    "customers",
    "catalog",
    "shipping",
    "invoices",
    "accounts",
    "notifications",
    "search",
    "reports",
    "identity",
    "inventory",
];
const ENVIRONMENTS: [&str; 3] = ["production", "sandbox", "test"];
const SCOPES: [&str; 10] = [
    "read",
    "write",
    "admin",
    "orders:read",
    "orders:write",
    "payments:refund",
    "reports:export",
    "profile",
    "email",
    "offline_access",
];
const TIERS: [(&str, &str, &str); 6] = [
    ("plan-free", "free", "rp-10-per-min"),
    ("plan-basic", "basic", "rp-100-per-min"),
    ("plan-pro", "pro", "rp-1000-per-min"),
    ("plan-gold", "gold", "rp-5000-per-min"),
    ("plan-enterprise", "enterprise", "rp-unlimited"),
    ("plan-internal", "internal", "rp-unlimited"),
];

/// A valid snapshot document with `n_subscriptions` subscriptions, the same for the same
/// arguments: about n/10 consumers (5% suspended), n/4 applications, one API key per
/// application (5% revoked or suspended, a third expiring, most for `production`) and a client certificate for one
/// application in ten, six plans, and subscriptions spread over 12 APIs, 3 environments and
/// versions `v1`–`v3` or `*`, a fifth with IP allow/deny lists (IPv4 and IPv6), a third with
/// metadata, some with canary groups, PII access and validity windows. Ids are UUID-shaped.
pub fn generate(n_subscriptions: usize, seed: u64) -> SnapshotDoc {
    let mut rng = Rng(seed ^ 0x5eed_5eed_5eed_5eed);
    let n = n_subscriptions;
    let n_consumers = (n / 10).max(1);
    let n_apps = (n / 4).max(1);
    let base_time: i64 = 1_700_000_000;

    let consumers: Vec<Consumer> = (0..n_consumers)
        .map(|i| Consumer {
            id: rng.uuid(),
            name: format!("Consumer {i}"),
            status: if rng.chance(5) {
                ConsumerStatus::Suspended
            } else {
                ConsumerStatus::Active
            },
        })
        .collect();
    let applications: Vec<Application> = (0..n_apps)
        .map(|i| Application {
            id: rng.uuid(),
            consumer_id: consumers[rng.below(n_consumers)].id.clone(),
            name: format!("app {i} ({})", ["web", "mobile", "batch", "partner"][i % 4]),
        })
        .collect();
    let mut credentials = Vec::with_capacity(n_apps + n_apps / 10);
    for app in &applications {
        let scopes = pick_scopes(&mut rng);
        credentials.push(Credential {
            kind: CredentialKind::ApiKey,
            key: rng.hex256(),
            consumer_id: app.consumer_id.clone(),
            application_id: Some(app.id.clone()),
            status: match rng.below(40) {
                0 => CredentialStatus::Revoked,
                1 => CredentialStatus::Suspended,
                _ => CredentialStatus::Active,
            },
            expires_at: rng
                .chance(33)
                .then(|| base_time + rng.below(100_000_000) as i64),
            scopes,
            environment: match rng.below(5) {
                0 => None,
                1 => Some("sandbox".into()),
                _ => Some("production".into()),
            },
        });
        if rng.chance(10) {
            credentials.push(Credential {
                kind: CredentialKind::Certificate,
                key: rng.hex256(),
                consumer_id: app.consumer_id.clone(),
                application_id: Some(app.id.clone()),
                status: CredentialStatus::Active,
                expires_at: Some(base_time + 31_536_000),
                scopes: Vec::new(),
                environment: Some("production".into()),
            });
        }
    }
    let plans: Vec<Plan> = TIERS
        .iter()
        .map(|(id, tier, rate)| Plan {
            id: (*id).into(),
            tier: (*tier).into(),
            rate_plan: (*rate).into(),
        })
        .collect();

    let mut subscriptions = Vec::with_capacity(n);
    for i in 0..n {
        // Applications in turn, so each has about four subscriptions; the (API, environment)
        // pair varies with the round, so keys mostly do not repeat.
        let app = &applications[i % n_apps];
        let round = i / n_apps;
        let api = APIS[(rng.below(APIS.len()) + round) % APIS.len()];
        let environment = ENVIRONMENTS[(round + i) % ENVIRONMENTS.len()];
        let versions = match rng.below(5) {
            0 => vec!["*".to_string()],
            1 => vec!["v1".into(), "v2".into()],
            2 => vec!["v2".into(), "v3".into()],
            _ => vec![format!("v{}", 1 + rng.below(3))],
        };
        let (ip_allow, ip_deny) = if rng.chance(20) {
            ip_lists(&mut rng)
        } else {
            (Vec::new(), Vec::new())
        };
        let mut metadata = BTreeMap::new();
        if rng.chance(33) {
            metadata.insert("cost_center".into(), format!("cc-{}", rng.below(200)));
            metadata.insert("contract".into(), format!("K-{:06}", rng.below(1_000_000)));
            if rng.chance(30) {
                metadata.insert("region".into(), ["eu", "us", "apac"][rng.below(3)].into());
            }
        }
        let windowed = rng.chance(50);
        let valid_from = windowed.then(|| base_time - rng.below(50_000_000) as i64);
        let valid_until =
            (windowed && rng.chance(50)).then(|| base_time + 1 + rng.below(100_000_000) as i64);
        subscriptions.push(Subscription {
            id: rng.uuid(),
            application_id: app.id.clone(),
            api: api.into(),
            versions,
            environment: environment.into(),
            plan_id: TIERS[rng.below(TIERS.len())].0.into(),
            status: match rng.below(20) {
                0 => SubscriptionStatus::Suspended,
                1 => SubscriptionStatus::Expired,
                _ => SubscriptionStatus::Active,
            },
            valid_from,
            valid_until,
            scopes: pick_scopes(&mut rng),
            ip_allow,
            ip_deny,
            flags: SubscriptionFlags {
                canary_group: rng
                    .chance(5)
                    .then(|| ["canary-a", "canary-b"][rng.below(2)].into()),
                pii_access: rng.chance(10),
                priority: rng.chance(2),
            },
            metadata,
        });
    }
    SnapshotDoc {
        version: format!("gen-{n}-{seed}"),
        consumers,
        applications,
        credentials,
        plans,
        subscriptions,
    }
}

fn pick_scopes(rng: &mut Rng) -> Vec<String> {
    let k = 1 + rng.below(4);
    let start = rng.below(SCOPES.len());
    (0..k)
        .map(|j| SCOPES[(start + j) % SCOPES.len()].to_string())
        .collect()
}

fn ip_lists(rng: &mut Rng) -> (Vec<Cidr>, Vec<Cidr>) {
    let mut allow = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let prefix = [16u8, 24, 28, 32][rng.below(4)];
        let a = rng.next() as u32;
        let net = if prefix == 32 {
            a
        } else {
            a & !(u32::MAX >> prefix)
        };
        if let Ok(c) = Cidr::new(IpAddr::V4(Ipv4Addr::from(net)), prefix) {
            allow.push(c);
        }
    }
    if rng.chance(30) {
        let prefix = [32u8, 48, 56, 64][rng.below(4)];
        let a = (u128::from(rng.next()) << 64) | u128::from(rng.next());
        let net = a & !(u128::MAX >> prefix);
        if let Ok(c) = Cidr::new(IpAddr::V6(Ipv6Addr::from(net)), prefix) {
            allow.push(c);
        }
    }
    let mut deny = Vec::new();
    if rng.chance(40) {
        let a = rng.next() as u32;
        if let Ok(c) = Cidr::new(IpAddr::V4(Ipv4Addr::from(a)), 32) {
            deny.push(c);
        }
    }
    (allow, deny)
}
