//! Shared helpers for the criterion benchmarks of `edgegate-core`.
//!
//! [`generate`] builds a realistic config document with an exact number of router entries
//! (route × version), spread over versioned and unversioned APIs, some with host-based
//! environments, and with literal, `{param}` and `{*wildcard}` templates, host-restricted
//! routes and header/query predicates. Every generated document compiles: the variants of a
//! path are ordered by the precedence rules (host, strictly larger predicate set, disjoint
//! methods), never left ambiguous.
//!
//! The last API of every generated config is the *probe API*: always complete, inserted last,
//! and the target of the [`Probes`] requests, so "deep in the table" means the same thing at
//! every size.
//!
//! [`authz_fixture`] holds the fixtures of the authorization decision benches, shared by the
//! criterion bench `authz` and the wasm crate `edgegate-wasm-snapshot`.

pub mod authz_fixture;

use edgegate_core::headers::HeaderList;
use edgegate_core::pipeline::RequestHead;
use edgegate_core::route::{QueryView, RouteRequest};
use serde_json::{json, Map, Value};

/// The host every probe request is sent to (the `production` environment of the APIs that
/// have environments; APIs without environments serve every host).
pub const HOST: &str = "api.example.com";

/// Resources of each API; the probe API uses all of them, its last one is the probe target.
const RESOURCES: [&str; 4] = ["customers", "invoices", "subscriptions", "shipments"];

/// API names (suffixed with a number once they have all been used).
const API_NAMES: [&str; 10] = [
    "users",
    "orders",
    "catalog",
    "billing",
    "inventory",
    "shipping",
    "payments",
    "reviews",
    "search",
    "accounts",
];

/// The path segment ids used in probe paths.
const ID: &str = "8c3f2a71-5d1e-4b8a-9f0c-2e6d7b1a4c93";

/// What a probe must resolve to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A route with this name.
    Route(&'static str),
    /// 404.
    NotFound,
    /// 405.
    MethodNotAllowed,
}

/// One benchmark request.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Method.
    pub method: &'static str,
    /// Host (lower-case, no port).
    pub host: String,
    /// Raw path.
    pub path: String,
    /// Raw query (without `?`).
    pub query: String,
    /// ~10 typical request headers.
    pub headers: HeaderList,
    /// What it must resolve to.
    pub expect: Expect,
}

impl Probe {
    fn new(method: &'static str, path: String, expect: Expect) -> Probe {
        Probe {
            method,
            host: HOST.to_string(),
            path,
            query: "limit=20&cursor=eyJpZCI6NDJ9".to_string(),
            headers: typical_headers(),
            expect,
        }
    }

    /// The routing view of this request (borrows the probe).
    pub fn route_request(&self) -> RouteRequest<'_> {
        RouteRequest {
            method: self.method,
            host: &self.host,
            path: &self.path,
            headers: &self.headers,
            query: QueryView::new(&self.query),
        }
    }

    /// The request head as a host hands it to `Gateway::handle`.
    pub fn request_head(&self) -> RequestHead {
        RequestHead {
            method: self.method.to_string(),
            scheme: "https".to_string(),
            host: self.host.clone(),
            path: self.path.clone(),
            query: Some(self.query.clone()),
            headers: self.headers.clone(),
            client_ip: Some("203.0.113.57".to_string()),
        }
    }
}

/// Eleven headers a browser or SDK typically sends through an API gateway, including some the
/// gateway must strip (`connection`, `x-forwarded-for`) and a `traceparent` to propagate.
pub fn typical_headers() -> HeaderList {
    HeaderList::from_pairs([
        ("Host", HOST),
        (
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
        ),
        ("Accept", "application/json, text/plain, */*"),
        ("Accept-Encoding", "gzip, deflate, br, zstd"),
        ("Accept-Language", "en-US,en;q=0.9,de;q=0.8"),
        (
            "Authorization",
            "Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwiaWF0IjoxNzAwMDAwMDAwfQ.c2lnbmF0dXJl",
        ),
        ("Cookie", "session=4f1c2a9e7b3d; theme=dark; _ga=GA1.2.1234567890.1700000000"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("X-Forwarded-For", "198.51.100.23"),
        ("Connection", "keep-alive"),
        ("Cache-Control", "no-cache"),
    ])
}

/// The names of the benchmark cases, in a fixed order.
pub const CASES: [&str; 6] = [
    "literal_hit",
    "param_hit",
    "header_hit",
    "wildcard_hit",
    "not_found",
    "method_not_allowed",
];

/// The benchmark requests, all aimed at the last (probe) API.
#[derive(Debug, Clone)]
pub struct Probes {
    /// `GET .../v2/{res}/search`: an all-literal route (beats the `{id}` sibling).
    pub literal_hit: Probe,
    /// `GET .../v2/{res}/{id}/items/{item_id}`: two parameters, an upstream path template.
    pub param_hit: Probe,
    /// `GET .../v2/{res}/{id}` with `x-beta: 1`: passes a host-restricted entry, then
    /// matches the entry with a header predicate.
    pub header_hit: Probe,
    /// `GET .../v1/{res}/{id}/files/reports/2024/q3/summary.pdf`: a `{*path}` route.
    pub wildcard_hit: Probe,
    /// `GET .../v1/{res}/{id}/comments`: nothing fits (404).
    pub not_found: Probe,
    /// `DELETE .../v2/{res}`: the path fits (list, create), the method does not (405).
    pub method_not_allowed: Probe,
}

impl Probes {
    fn for_api(base_path: &str) -> Probes {
        let res = RESOURCES[RESOURCES.len() - 1];
        let v1 = format!("{base_path}/v1/{res}");
        let v2 = format!("{base_path}/v2/{res}");
        let mut header_hit = Probe::new(
            "GET",
            format!("{v2}/{ID}"),
            Expect::Route("shipments-get-beta"),
        );
        header_hit.headers.append("X-Beta", "1");
        Probes {
            literal_hit: Probe::new(
                "GET",
                format!("{v2}/search"),
                Expect::Route("shipments-search"),
            ),
            param_hit: Probe::new(
                "GET",
                format!("{v2}/{ID}/items/1042"),
                Expect::Route("shipments-item"),
            ),
            header_hit,
            wildcard_hit: Probe::new(
                "GET",
                format!("{v1}/{ID}/files/reports/2024/q3/summary.pdf"),
                Expect::Route("shipments-files"),
            ),
            not_found: Probe::new("GET", format!("{v1}/{ID}/comments"), Expect::NotFound),
            method_not_allowed: Probe::new("DELETE", v2.clone(), Expect::MethodNotAllowed),
        }
    }

    /// The probe of a case of [`CASES`].
    pub fn case(&self, name: &str) -> &Probe {
        self.cases()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| p)
            .unwrap_or_else(|| panic!("no case {name:?}"))
    }

    /// `(name, probe)` for every case, in the order of [`CASES`].
    pub fn cases(&self) -> [(&'static str, &Probe); 6] {
        [
            ("literal_hit", &self.literal_hit),
            ("param_hit", &self.param_hit),
            ("header_hit", &self.header_hit),
            ("wildcard_hit", &self.wildcard_hit),
            ("not_found", &self.not_found),
            ("method_not_allowed", &self.method_not_allowed),
        ]
    }
}

/// A generated config document and the requests to bench it with.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The config document (JSON text).
    pub json: String,
    /// The number of router entries (route × version) it compiles to.
    pub entries: usize,
    /// Requests aimed at the probe API.
    pub probes: Probes,
}

/// The shape of the API being generated.
#[derive(Clone, Copy)]
struct ApiShape {
    versioned: bool,
    environments: bool,
}

/// One route spec and how many router entries it makes.
struct RouteGen {
    spec: Value,
    entries: usize,
}

/// The routes of one resource, relative to the API (and version) prefix.
fn resource_routes(res: &str, shape: ApiShape) -> Vec<RouteGen> {
    let versions = if shape.versioned { 2 } else { 1 };
    let internal_host = if shape.environments {
        // Must be a host the API serves: the sandbox environment's wildcard.
        "internal.sandbox.example.com"
    } else {
        "internal.example.com"
    };
    let all = |spec: Value| RouteGen {
        spec,
        entries: versions,
    };
    let mut routes = vec![
        all(
            json!({ "name": format!("{res}-list"), "methods": ["GET"], "path": format!("/{res}") }),
        ),
        all(json!({
            "name": format!("{res}-list-by-owner"), "methods": ["GET"], "path": format!("/{res}"),
            "query": [{ "name": "owner", "present": true }]
        })),
        all(
            json!({ "name": format!("{res}-create"), "methods": ["POST"], "path": format!("/{res}") }),
        ),
        all(json!({
            "name": format!("{res}-search"), "methods": ["GET", "POST"], "path": format!("/{res}/search")
        })),
        all(
            json!({ "name": format!("{res}-get"), "methods": ["GET"], "path": format!("/{res}/{{id}}") }),
        ),
        all(json!({
            "name": format!("{res}-get-beta"), "methods": ["GET"], "path": format!("/{res}/{{id}}"),
            "headers": [{ "name": "x-beta", "equals": "1" }]
        })),
        all(json!({
            "name": format!("{res}-get-internal"), "methods": ["GET"], "path": format!("/{res}/{{id}}"),
            "host": internal_host,
            "policies": { "upstream": { "timeout_ms": 2000 } }
        })),
        all(json!({
            "name": format!("{res}-update"), "methods": ["PUT", "PATCH", "DELETE"],
            "path": format!("/{res}/{{id}}"),
            "policies": { "upstream": { "failover": false } }
        })),
        all(json!({
            "name": format!("{res}-items"), "methods": ["GET", "POST"], "path": format!("/{res}/{{id}}/items")
        })),
        all(json!({
            "name": format!("{res}-item"), "methods": ["GET", "PUT", "DELETE"],
            "path": format!("/{res}/{{id}}/items/{{item_id}}"),
            "upstream_path": format!("/{res}/{{id}}/line-items/{{item_id}}")
        })),
        all(json!({
            "name": format!("{res}-files"), "methods": ["GET", "PUT"],
            "path": format!("/{res}/{{id}}/files/{{*path}}")
        })),
    ];
    if shape.versioned {
        routes.push(RouteGen {
            spec: json!({
                "name": format!("{res}-history"), "methods": ["GET"],
                "path": format!("/{res}/{{id}}/history"), "versions": ["v2"]
            }),
            entries: 1,
        });
    }
    routes
}

/// Router entries of a complete API of this shape.
fn full_api_entries(shape: ApiShape) -> usize {
    RESOURCES
        .iter()
        .map(|r| {
            resource_routes(r, shape)
                .iter()
                .map(|g| g.entries)
                .sum::<usize>()
        })
        .sum()
}

/// The shape of the probe API: versioned, with environments.
const PROBE_SHAPE: ApiShape = ApiShape {
    versioned: true,
    environments: true,
};

/// The smallest `n` that [`generate`] accepts (one complete probe API).
pub fn min_entries() -> usize {
    full_api_entries(PROBE_SHAPE)
}

fn api_name(i: usize) -> String {
    let base = API_NAMES[i % API_NAMES.len()];
    match i / API_NAMES.len() {
        0 => base.to_string(),
        k => format!("{base}-{k}"),
    }
}

/// Adds the pools of API `i` and returns the API spec without routes.
fn api_skeleton(i: usize, name: &str, shape: ApiShape, pools: &mut Map<String, Value>) -> Value {
    let mut pool = |pool_name: String, instances: usize, timeout: Option<u64>| {
        let inst: Vec<Value> = (0..instances)
            .map(|k| {
                json!({
                    "url": format!("http://10.{}.{}.{}:8080/{name}", i / 250, i % 250, k + 1),
                    "weight": if k == 0 { 3 } else { 1 }
                })
            })
            .collect();
        let mut p = json!({ "instances": inst, "balance": "round_robin" });
        if let Some(t) = timeout {
            p["timeout_ms"] = json!(t);
        }
        pools.insert(pool_name.clone(), p);
        pool_name
    };
    let mut api = json!({ "name": name, "base_path": format!("/{name}") });
    if shape.versioned {
        let v1 = pool(format!("{name}-v1"), 2, None);
        let v2 = pool(format!("{name}-v2"), 2, Some(5000));
        api["versions"] = json!([{ "name": "v1", "pool": v1 }, { "name": "v2", "pool": v2 }]);
        if shape.environments {
            let s1 = pool(format!("{name}-v1-sandbox"), 1, None);
            let s2 = pool(format!("{name}-v2-sandbox"), 1, None);
            api["environments"] = json!([
                { "name": "production", "hosts": [HOST] },
                {
                    "name": "sandbox",
                    "hosts": ["sandbox.example.com", "*.sandbox.example.com"],
                    "pools": { format!("{name}-v1"): s1, format!("{name}-v2"): s2 }
                }
            ]);
        }
    } else {
        api["pool"] = json!(pool(name.to_string(), 2, None));
    }
    if i % 4 == 1 {
        api["policies"] = json!({ "upstream": { "timeout_ms": 8000 } });
    }
    api
}

fn filler_shape(i: usize) -> ApiShape {
    ApiShape {
        versioned: i % 5 != 4,
        environments: i.is_multiple_of(3) && i % 5 != 4,
    }
}

fn document(pools: Map<String, Value>, apis: Vec<Value>) -> String {
    let doc = json!({
        "gateway": {
            "strip_request_headers": ["x-internal-user", "x-debug-token"],
            "policies": { "upstream": { "timeout_ms": 10000 } }
        },
        "pools": pools,
        "apis": apis,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// A config with exactly `n` router entries (`n >= min_entries()`, ~93): filler APIs first,
/// then the complete probe API. Deterministic.
///
/// Panics if `n < min_entries()`; use [`single_route`] for a one-route config.
pub fn generate(n: usize) -> BenchConfig {
    let probe_entries = full_api_entries(PROBE_SHAPE);
    assert!(
        n >= probe_entries,
        "generate({n}): at least {probe_entries} entries (one complete probe API)"
    );
    let mut remaining = n - probe_entries;
    let mut pools = Map::new();
    let mut apis = Vec::new();
    let mut i = 0;
    while remaining > 0 {
        let shape = filler_shape(i);
        let name = api_name(i);
        let mut api = api_skeleton(i, &name, shape, &mut pools);
        let mut routes = Vec::new();
        'fill: for res in RESOURCES {
            for mut g in resource_routes(res, shape) {
                if remaining == 0 {
                    break 'fill;
                }
                if g.entries > remaining {
                    // One entry left: serve this route on v1 only.
                    g.spec["versions"] = json!(["v1"]);
                    g.entries = 1;
                }
                remaining -= g.entries;
                routes.push(g.spec);
            }
        }
        api["routes"] = Value::Array(routes);
        apis.push(api);
        i += 1;
    }
    let name = api_name(i);
    let mut api = api_skeleton(i, &name, PROBE_SHAPE, &mut pools);
    api["routes"] = Value::Array(
        RESOURCES
            .iter()
            .flat_map(|r| resource_routes(r, PROBE_SHAPE))
            .map(|g| g.spec)
            .collect(),
    );
    apis.push(api);
    BenchConfig {
        json: document(pools, apis),
        entries: n,
        probes: Probes::for_api(&format!("/{name}")),
    }
}

/// Which single route [`single_route`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SingleRoute {
    /// `GET, POST .../v2/{res}/search` (also used for the 404 probe).
    Literal,
    /// `GET .../v2/{res}/{id}/items/{item_id}`.
    Param,
    /// `GET .../v2/{res}/{id}` with an `x-beta: 1` predicate.
    Header,
    /// `GET .../v1/{res}/{id}/files/{*path}`.
    Wildcard,
    /// `GET .../v2/{res}` (for the 405 probe).
    Collection,
}

impl SingleRoute {
    /// The one-route config for a case of [`Probes::cases`].
    pub fn for_case(case: &str) -> SingleRoute {
        match case {
            "param_hit" => SingleRoute::Param,
            "header_hit" => SingleRoute::Header,
            "wildcard_hit" => SingleRoute::Wildcard,
            "method_not_allowed" => SingleRoute::Collection,
            _ => SingleRoute::Literal,
        }
    }
}

/// A config with one router entry: the probe API with only the route `which`, restricted to
/// the version its probe uses. The probes are the same requests as [`generate`]'s.
pub fn single_route(which: SingleRoute) -> BenchConfig {
    let i = 0;
    let name = api_name(i);
    let res = RESOURCES[RESOURCES.len() - 1];
    let (route, version) = match which {
        SingleRoute::Literal => ("search", "v2"),
        SingleRoute::Param => ("item", "v2"),
        SingleRoute::Header => ("get-beta", "v2"),
        SingleRoute::Wildcard => ("files", "v1"),
        SingleRoute::Collection => ("list", "v2"),
    };
    let mut pools = Map::new();
    let mut api = api_skeleton(i, &name, PROBE_SHAPE, &mut pools);
    let mut spec = resource_routes(res, PROBE_SHAPE)
        .into_iter()
        .map(|g| g.spec)
        .find(|s| s["name"] == format!("{res}-{route}"))
        .unwrap_or_else(|| unreachable!("no route {route}"));
    spec["versions"] = json!([version]);
    api["routes"] = json!([spec]);
    BenchConfig {
        json: document(pools, vec![api]),
        entries: 1,
        probes: Probes::for_api(&format!("/{name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgegate_core::config::compile;
    use edgegate_core::route::RouteMiss;

    fn check(cfg: &BenchConfig, cases: &[&str]) {
        let compiled = compile(&cfg.json, "v1").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(compiled.router().len(), cfg.entries);
        for (name, probe) in cfg.probes.cases() {
            if !cases.contains(&name) {
                continue;
            }
            let got = compiled.resolve(&probe.route_request());
            match (probe.expect, got) {
                (Expect::Route(r), Ok(res)) => assert_eq!(res.route.name, r, "{name}"),
                (Expect::NotFound, Err(RouteMiss::NotFound)) => {}
                (Expect::MethodNotAllowed, Err(RouteMiss::MethodNotAllowed(_))) => {}
                (e, g) => panic!("{name}: expected {e:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn generated_configs_compile_and_probes_resolve() {
        for n in [min_entries(), 100, 101, 1000, 2345] {
            check(&generate(n), &CASES);
        }
    }

    #[test]
    fn single_route_configs_compile() {
        for case in CASES {
            check(&single_route(SingleRoute::for_case(case)), &[case]);
        }
    }
}
