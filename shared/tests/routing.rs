//! `CompiledConfig::resolve`: table-driven routing tests (precedence, backtracking, 404/405,
//! upstream paths, environments, predicates, timeouts) over configs compiled from JSON.

use edgegate_core::config::{compile, CompiledConfig, ResolvedRoute};
use edgegate_core::headers::HeaderList;
use edgegate_core::route::{QueryView, RouteMiss, RouteRequest};
use serde_json::{json, Value};

// === helpers ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// (api, route, version, upstream path)
    Route(
        &'static str,
        &'static str,
        Option<&'static str>,
        &'static str,
    ),
    NotFound,
    /// 405 with exactly this `Allow` value.
    NotAllowed(&'static str),
}
use Expect::*;

/// (method, host, path, headers, query, expected)
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
    Expect,
);

const H: &[(&str, &str)] = &[];

fn compile_value(v: Value) -> CompiledConfig {
    compile(&v.to_string(), "test").unwrap_or_else(|e| panic!("config should compile:\n{e}"))
}

fn resolve<'c>(
    cfg: &'c CompiledConfig,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    query: &str,
) -> Result<ResolvedRoute<'c>, RouteMiss> {
    let headers = HeaderList::from_pairs(headers.iter().map(|(n, v)| (*n, v.to_string())));
    let req = RouteRequest {
        method,
        host,
        path,
        headers: &headers,
        query: QueryView::new(query),
    };
    cfg.resolve(&req)
}

fn outcome(r: Result<ResolvedRoute<'_>, RouteMiss>) -> String {
    match r {
        Ok(r) => format!(
            "route {}/{} version {:?} upstream {}",
            r.api.name, r.route.name, r.version, r.upstream_path
        ),
        Err(RouteMiss::NotFound) => "404".to_string(),
        Err(RouteMiss::MethodNotAllowed(m)) => format!("405 Allow: {}", m.allow_header()),
    }
}

fn expected(e: Expect) -> String {
    match e {
        Route(api, route, version, upstream) => {
            format!("route {api}/{route} version {version:?} upstream {upstream}")
        }
        NotFound => "404".to_string(),
        NotAllowed(allow) => format!("405 Allow: {allow}"),
    }
}

fn run_table(cfg: &CompiledConfig, cases: &[Case]) {
    let mut failures = Vec::new();
    for (method, host, path, headers, query, expect) in cases {
        let got = outcome(resolve(cfg, method, host, path, headers, query));
        let want = expected(*expect);
        if got != want {
            failures.push(format!(
                "{method} {host}{path}?{query} {headers:?}\n    want {want}\n    got  {got}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn one_instance(host: &str) -> Value {
    json!({ "instances": [{ "url": format!("http://{host}:8080") }] })
}

// === tables ===

/// The demo config's users API: versions, literal/param precedence, backtracking, 405 unions.
fn users_config() -> CompiledConfig {
    compile_value(json!({
        "pools": {
            "users-v1": one_instance("users-v1"),
            "users-v2": one_instance("users-v2")
        },
        "apis": [{
            "name": "users",
            "base_path": "/users-api",
            "versions": [
                { "name": "v1", "pool": "users-v1" },
                { "name": "v2", "pool": "users-v2" }
            ],
            "routes": [
                { "name": "list-users", "methods": ["GET"], "path": "/users" },
                { "name": "get-user", "methods": ["GET"], "path": "/users/{id}" },
                { "name": "update-user", "methods": ["PUT", "PATCH", "DELETE"], "path": "/users/{id}" },
                { "name": "me", "methods": ["GET"], "path": "/users/me", "upstream_path": "/whoami" },
                {
                    "name": "get-user-beta", "methods": ["GET"], "path": "/users/{id}",
                    "versions": ["v2"], "headers": [{ "name": "x-beta", "equals": "1" }]
                }
            ]
        }]
    }))
}

#[test]
fn users_api_table() {
    let cfg = users_config();
    #[rustfmt::skip]
    let cases: &[Case] = &[
        // The spec's example.
        ("GET", "api.example.com", "/users-api/v2/users/42", H, "",
            Route("users", "get-user", Some("v2"), "/users/42")),
        ("GET", "api.example.com", "/users-api/v1/users/42", H, "",
            Route("users", "get-user", Some("v1"), "/users/42")),
        ("GET", "localhost", "/users-api/v2/users", H, "",
            Route("users", "list-users", Some("v2"), "/users")),
        ("HEAD", "localhost", "/users-api/v2/users/42", H, "",
            Route("users", "get-user", Some("v2"), "/users/42")),
        ("PATCH", "localhost", "/users-api/v1/users/42", H, "",
            Route("users", "update-user", Some("v1"), "/users/42")),
        // A literal beats a parameter.
        ("GET", "localhost", "/users-api/v2/users/me", H, "",
            Route("users", "me", Some("v2"), "/whoami")),
        ("HEAD", "localhost", "/users-api/v2/users/me", H, "",
            Route("users", "me", Some("v2"), "/whoami")),
        // Backtracking: `/users/me` is GET-only, so DELETE goes on to `/users/{id}`.
        ("DELETE", "localhost", "/users-api/v2/users/me", H, "",
            Route("users", "update-user", Some("v2"), "/users/me")),
        // 405: the union of what the literal and the parameter routes accept, in fixed order.
        ("POST", "localhost", "/users-api/v2/users/me", H, "",
            NotAllowed("GET, HEAD, PUT, DELETE, PATCH")),
        ("POST", "localhost", "/users-api/v2/users/42", H, "",
            NotAllowed("GET, HEAD, PUT, DELETE, PATCH")),
        ("DELETE", "localhost", "/users-api/v2/users", H, "", NotAllowed("GET, HEAD")),
        ("PROPFIND", "localhost", "/users-api/v2/users", H, "", NotAllowed("GET, HEAD")),
        // Methods are case-sensitive.
        ("get", "localhost", "/users-api/v2/users", H, "", NotAllowed("GET, HEAD")),
        // Header predicate, only in v2.
        ("GET", "localhost", "/users-api/v2/users/42", &[("X-Beta", "1")], "",
            Route("users", "get-user-beta", Some("v2"), "/users/42")),
        ("GET", "localhost", "/users-api/v2/users/42", &[("x-beta", "2")], "",
            Route("users", "get-user", Some("v2"), "/users/42")),
        ("GET", "localhost", "/users-api/v1/users/42", &[("x-beta", "1")], "",
            Route("users", "get-user", Some("v1"), "/users/42")),
        // The literal still beats a predicate route one level up the precedence list.
        ("GET", "localhost", "/users-api/v2/users/me", &[("x-beta", "1")], "",
            Route("users", "me", Some("v2"), "/whoami")),
        // Percent-encoded segments are matched raw and passed through raw.
        ("GET", "localhost", "/users-api/v2/users/a%2Fb", H, "",
            Route("users", "get-user", Some("v2"), "/users/a%2Fb")),
        ("GET", "localhost", "/users-api/v2/users/m%65", H, "",
            Route("users", "get-user", Some("v2"), "/users/m%65")),
        ("GET", "localhost", "/users-api/v2/users/caf%C3%A9", H, "",
            Route("users", "get-user", Some("v2"), "/users/caf%C3%A9")),
        // The query is not part of the path.
        ("GET", "localhost", "/users-api/v2/users/42", H, "fields=name",
            Route("users", "get-user", Some("v2"), "/users/42")),
        // Misses.
        ("GET", "localhost", "/users-api/v3/users/42", H, "", NotFound),
        ("GET", "localhost", "/users-api/v2/users/", H, "", NotFound),
        ("GET", "localhost", "/users-api/v2/users/42/", H, "", NotFound),
        ("GET", "localhost", "/users-api/v2/users/42/x", H, "", NotFound),
        ("GET", "localhost", "/users-api/v2//users", H, "", NotFound),
        ("GET", "localhost", "/users-api/v2", H, "", NotFound),
        ("GET", "localhost", "/users-api", H, "", NotFound),
        ("GET", "localhost", "/Users-api/v2/users", H, "", NotFound),
        ("GET", "localhost", "/users-api/V2/users", H, "", NotFound),
        ("GET", "localhost", "/", H, "", NotFound),
        ("GET", "localhost", "/users-api/v2/users%2F42", H, "", NotFound),
    ];
    run_table(&cfg, cases);
}

/// Literal beats parameter beats wildcard, with backtracking, wildcards matching empty and
/// multi-segment rests, and upstream templates.
fn shapes_config() -> CompiledConfig {
    compile_value(json!({
        "pools": { "p": one_instance("p") },
        "apis": [{
            "name": "shapes",
            "base_path": "/s",
            "pool": "p",
            "routes": [
                { "name": "lit", "methods": ["GET"], "path": "/a/b/c" },
                { "name": "param", "methods": ["GET"], "path": "/a/{x}/c" },
                { "name": "param-param", "methods": ["GET"], "path": "/a/{x}/{y}" },
                { "name": "wild", "methods": ["GET"], "path": "/a/{*rest}" },
                { "name": "deep-wild", "methods": ["GET"], "path": "/a/b/{*rest}" },
                { "name": "post-only", "methods": ["POST"], "path": "/a/b/c/d" },
                {
                    "name": "files", "methods": ["GET", "PUT"], "path": "/files/{*path}",
                    "upstream_path": "/storage/{*path}"
                },
                {
                    "name": "reorder", "methods": ["GET"], "path": "/orgs/{org}/teams/{team}",
                    "upstream_path": "/teams/{team}/of/{org}"
                },
                {
                    "name": "mixed", "methods": ["GET"], "path": "/u/{id}/blob/{*rest}",
                    "upstream_path": "/blobs/{id}/{*rest}"
                },
                { "name": "root", "methods": ["GET"], "path": "/", "upstream_path": "/index" }
            ]
        }]
    }))
}

#[test]
fn literal_param_wildcard_table() {
    let cfg = shapes_config();
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("GET", "h", "/s/a/b/c", H, "", Route("shapes", "lit", None, "/a/b/c")),
        ("GET", "h", "/s/a/z/c", H, "", Route("shapes", "param", None, "/a/z/c")),
        // `b` leads to the literal subtree, which has nothing for `d` but `{*rest}`...
        ("GET", "h", "/s/a/b/d", H, "", Route("shapes", "deep-wild", None, "/a/b/d")),
        // ...and a method miss deep in the literal subtree backtracks to the wildcard too.
        ("GET", "h", "/s/a/b/c/d", H, "", Route("shapes", "deep-wild", None, "/a/b/c/d")),
        ("POST", "h", "/s/a/b/c/d", H, "", Route("shapes", "post-only", None, "/a/b/c/d")),
        ("GET", "h", "/s/a/z/d", H, "", Route("shapes", "param-param", None, "/a/z/d")),
        ("GET", "h", "/s/a/z", H, "", Route("shapes", "wild", None, "/a/z")),
        // Wildcards match an empty rest and several segments.
        ("GET", "h", "/s/a", H, "", Route("shapes", "wild", None, "/a")),
        ("GET", "h", "/s/a/", H, "", Route("shapes", "wild", None, "/a/")),
        ("GET", "h", "/s/a/z/y/x/w", H, "", Route("shapes", "wild", None, "/a/z/y/x/w")),
        ("GET", "h", "/s/a/b", H, "", Route("shapes", "deep-wild", None, "/a/b")),
        // 405 unions across the literal and wildcard routes that fit the path.
        ("DELETE", "h", "/s/a/b/c", H, "", NotAllowed("GET, HEAD")),
        ("DELETE", "h", "/s/a/b/c/d", H, "", NotAllowed("GET, HEAD, POST")),
        // Upstream templates: wildcard.
        ("GET", "h", "/s/files/x/y.txt", H, "", Route("shapes", "files", None, "/storage/x/y.txt")),
        ("PUT", "h", "/s/files/one", H, "", Route("shapes", "files", None, "/storage/one")),
        ("GET", "h", "/s/files", H, "", Route("shapes", "files", None, "/storage")),
        ("GET", "h", "/s/files/", H, "", Route("shapes", "files", None, "/storage")),
        ("GET", "h", "/s/files/a%20b/c", H, "", Route("shapes", "files", None, "/storage/a%20b/c")),
        // Upstream templates: parameters, reordered.
        ("GET", "h", "/s/orgs/acme/teams/red", H, "",
            Route("shapes", "reorder", None, "/teams/red/of/acme")),
        ("GET", "h", "/s/u/7/blob/x/y", H, "", Route("shapes", "mixed", None, "/blobs/7/x/y")),
        ("GET", "h", "/s/u/7/blob", H, "", Route("shapes", "mixed", None, "/blobs/7")),
        // The API root.
        ("GET", "h", "/s", H, "", Route("shapes", "root", None, "/index")),
        ("GET", "h", "/s/", H, "", NotFound),
        ("GET", "h", "/s/orgs/acme/teams", H, "", NotFound),
        ("GET", "h", "/s/orgs//teams/red", H, "", NotFound),
    ];
    run_table(&cfg, cases);
}

/// An unversioned API at `/` next to a versioned API; a catch-all at the root only gets what
/// nothing more specific takes.
#[test]
fn unversioned_root_api_table() {
    let cfg = compile_value(json!({
        "pools": { "root": one_instance("root"), "users": one_instance("users") },
        "apis": [
            {
                "name": "site", "base_path": "/", "pool": "root",
                "routes": [
                    { "name": "home", "methods": ["GET"], "path": "/" },
                    { "name": "health", "methods": ["GET"], "path": "/health" },
                    { "name": "catch-all", "path": "/{*rest}" }
                ]
            },
            {
                "name": "users", "base_path": "/users-api",
                "versions": [{ "name": "v1", "pool": "users" }],
                "routes": [{ "name": "list", "methods": ["GET"], "path": "/users" }]
            }
        ]
    }));
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("GET", "h", "/", H, "", Route("site", "home", None, "/")),
        ("HEAD", "h", "/", H, "", Route("site", "home", None, "/")),
        ("POST", "h", "/", H, "", Route("site", "catch-all", None, "/")),
        ("GET", "h", "/health", H, "", Route("site", "health", None, "/health")),
        ("DELETE", "h", "/health", H, "", Route("site", "catch-all", None, "/health")),
        ("GET", "h", "/users-api/v1/users", H, "", Route("users", "list", Some("v1"), "/users")),
        // Nothing in the users API fits: back up to the root catch-all (any method, even
        // extension ones).
        ("POST", "h", "/users-api/v1/users", H, "",
            Route("site", "catch-all", None, "/users-api/v1/users")),
        ("GET", "h", "/users-api/v9/users", H, "",
            Route("site", "catch-all", None, "/users-api/v9/users")),
        ("PURGE", "h", "/anything/at/all", H, "",
            Route("site", "catch-all", None, "/anything/at/all")),
        ("GET", "h", "/users-api/v1/users/", H, "",
            Route("site", "catch-all", None, "/users-api/v1/users/")),
    ];
    run_table(&cfg, cases);

    // Without the catch-all, `/` routes normally and everything else misses.
    let cfg = compile_value(json!({
        "pools": { "root": one_instance("root") },
        "apis": [{ "name": "site", "base_path": "/", "pool": "root",
                   "routes": [{ "name": "home", "methods": ["GET"], "path": "/" },
                              { "name": "item", "methods": ["GET"], "path": "/{id}" }] }]
    }));
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("GET", "h", "/", H, "", Route("site", "home", None, "/")),
        ("GET", "h", "/42", H, "", Route("site", "item", None, "/42")),
        ("POST", "h", "/", H, "", NotAllowed("GET, HEAD")),
        ("GET", "h", "//", H, "", NotFound),
        ("GET", "h", "/42/", H, "", NotFound),
    ];
    run_table(&cfg, cases);
}

#[test]
fn host_precedence_table() {
    let cfg = compile_value(json!({
        "pools": { "p": one_instance("p") },
        "apis": [{
            "name": "hosts", "base_path": "/", "pool": "p",
            "routes": [
                { "name": "none", "methods": ["GET"], "path": "/h" },
                { "name": "wild", "methods": ["GET"], "path": "/h", "host": "*.example.com" },
                { "name": "exact", "methods": ["GET"], "path": "/h", "host": "api.example.com" },
                { "name": "long-wild", "methods": ["GET"], "path": "/h", "host": "*.eu.example.com" },
                { "name": "exact-post", "methods": ["POST"], "path": "/k", "host": "api.example.com" },
                { "name": "any-get", "methods": ["GET"], "path": "/k" },
                { "name": "only-exact", "methods": ["GET"], "path": "/only", "host": "api.example.com" },
                { "name": "me", "methods": ["GET"], "path": "/u/me", "host": "api.example.com" },
                { "name": "by-id", "methods": ["GET"], "path": "/u/{id}" }
            ]
        }]
    }));
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("GET", "api.example.com", "/h", H, "", Route("hosts", "exact", None, "/h")),
        ("GET", "www.example.com", "/h", H, "", Route("hosts", "wild", None, "/h")),
        ("GET", "a.b.example.com", "/h", H, "", Route("hosts", "wild", None, "/h")),
        ("GET", "x.eu.example.com", "/h", H, "", Route("hosts", "long-wild", None, "/h")),
        ("GET", "eu.example.com", "/h", H, "", Route("hosts", "wild", None, "/h")),
        // A wildcard never matches the bare domain.
        ("GET", "example.com", "/h", H, "", Route("hosts", "none", None, "/h")),
        ("GET", "other.org", "/h", H, "", Route("hosts", "none", None, "/h")),
        ("GET", "badexample.com", "/h", H, "", Route("hosts", "none", None, "/h")),
        // Routes for another host do not count towards 405.
        ("DELETE", "other.org", "/k", H, "", NotAllowed("GET, HEAD")),
        ("DELETE", "api.example.com", "/k", H, "", NotAllowed("GET, HEAD, POST")),
        ("POST", "api.example.com", "/k", H, "", Route("hosts", "exact-post", None, "/k")),
        ("POST", "other.org", "/k", H, "", NotAllowed("GET, HEAD")),
        ("GET", "api.example.com", "/only", H, "", Route("hosts", "only-exact", None, "/only")),
        ("GET", "www.example.com", "/only", H, "", NotFound),
        // A literal restricted to another host: backtrack to the parameter.
        ("GET", "api.example.com", "/u/me", H, "", Route("hosts", "me", None, "/u/me")),
        ("GET", "other.org", "/u/me", H, "", Route("hosts", "by-id", None, "/u/me")),
    ];
    run_table(&cfg, cases);
}

#[test]
fn predicates_table() {
    let cfg = compile_value(json!({
        "pools": { "p": one_instance("p") },
        "apis": [{
            "name": "preds", "base_path": "/", "pool": "p",
            "routes": [
                { "name": "plain", "methods": ["GET"], "path": "/p" },
                { "name": "acme", "methods": ["GET"], "path": "/p",
                  "headers": [{ "name": "X-Tenant", "equals": "acme" }] },
                { "name": "acme-beta", "methods": ["GET"], "path": "/p",
                  "headers": [{ "name": "x-tenant", "equals": "acme" },
                              { "name": "x-beta", "present": true }] },
                { "name": "q-default", "methods": ["GET"], "path": "/q" },
                { "name": "q-gold", "methods": ["GET"], "path": "/q",
                  "query": [{ "name": "tier", "equals": "gold plus" }] },
                { "name": "q-silver", "methods": ["GET"], "path": "/q",
                  "query": [{ "name": "tier", "equals": "silver" }] },
                { "name": "no-debug", "methods": ["GET"], "path": "/d",
                  "query": [{ "name": "debug", "present": false }] },
                { "name": "debug", "methods": ["GET"], "path": "/d",
                  "query": [{ "name": "debug", "present": true }] },
                { "name": "only-with-key", "methods": ["GET", "POST"], "path": "/k",
                  "headers": [{ "name": "x-key", "present": true }] }
            ]
        }]
    }));
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("GET", "h", "/p", H, "", Route("preds", "plain", None, "/p")),
        ("GET", "h", "/p", &[("X-TENANT", "acme")], "", Route("preds", "acme", None, "/p")),
        // Values compare exactly.
        ("GET", "h", "/p", &[("x-tenant", "ACME")], "", Route("preds", "plain", None, "/p")),
        ("GET", "h", "/p", &[("x-tenant", "acme"), ("x-beta", "")], "",
            Route("preds", "acme-beta", None, "/p")),
        ("GET", "h", "/p", &[("x-beta", "1")], "", Route("preds", "plain", None, "/p")),
        // The first value of a repeated header counts.
        ("GET", "h", "/p", &[("x-tenant", "other"), ("x-tenant", "acme")], "",
            Route("preds", "plain", None, "/p")),
        // Query values are form-decoded (`+` and `%20` are spaces, names too).
        ("GET", "h", "/q", H, "tier=gold+plus", Route("preds", "q-gold", None, "/q")),
        ("GET", "h", "/q", H, "tier=gold%20plus", Route("preds", "q-gold", None, "/q")),
        ("GET", "h", "/q", H, "a=1&t%69er=%67old+plus", Route("preds", "q-gold", None, "/q")),
        ("GET", "h", "/q", H, "tier=silver", Route("preds", "q-silver", None, "/q")),
        ("GET", "h", "/q", H, "tier=silver&tier=gold+plus", Route("preds", "q-silver", None, "/q")),
        ("GET", "h", "/q", H, "tier=gold", Route("preds", "q-default", None, "/q")),
        ("GET", "h", "/q", H, "TIER=silver", Route("preds", "q-default", None, "/q")),
        ("GET", "h", "/q", H, "", Route("preds", "q-default", None, "/q")),
        // Presence and absence.
        ("GET", "h", "/d", H, "", Route("preds", "no-debug", None, "/d")),
        ("GET", "h", "/d", H, "debug", Route("preds", "debug", None, "/d")),
        ("GET", "h", "/d", H, "x=1&debug=", Route("preds", "debug", None, "/d")),
        ("GET", "h", "/d", H, "debugging=1", Route("preds", "no-debug", None, "/d")),
        // A route whose predicates fail is not a candidate: 404, not 405.
        ("GET", "h", "/k", H, "", NotFound),
        ("DELETE", "h", "/k", H, "", NotFound),
        ("DELETE", "h", "/k", &[("x-key", "1")], "", NotAllowed("GET, HEAD, POST")),
        ("POST", "h", "/k", &[("x-key", "1")], "", Route("preds", "only-with-key", None, "/k")),
    ];
    run_table(&cfg, cases);
}

#[test]
fn allow_header_lists_methods_in_fixed_order() {
    let cfg = compile_value(json!({
        "pools": { "p": one_instance("p") },
        "apis": [{
            "name": "m", "base_path": "/", "pool": "p",
            "routes": [
                { "name": "a", "methods": ["CONNECT", "TRACE"], "path": "/m" },
                { "name": "b", "methods": ["OPTIONS", "PATCH"], "path": "/m" },
                { "name": "c", "methods": ["DELETE", "PUT", "POST"], "path": "/m/{x}" },
                { "name": "d", "methods": ["HEAD"], "path": "/m/{*rest}" },
                { "name": "e", "methods": ["POST"], "path": "/n" },
                { "name": "f", "methods": ["GET"], "path": "/n/{*rest}" }
            ]
        }]
    }));
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("GET", "h", "/m", H, "", NotAllowed("HEAD, PATCH, OPTIONS, TRACE, CONNECT")),
        ("HEAD", "h", "/m", H, "", Route("m", "d", None, "/m")),
        ("GET", "h", "/m/1", H, "", NotAllowed("HEAD, POST, PUT, DELETE")),
        ("PUT", "h", "/n", H, "", NotAllowed("GET, HEAD, POST")),
        ("TRACE", "h", "/m", H, "", Route("m", "a", None, "/m")),
        ("CONNECT", "h", "/m", H, "", Route("m", "a", None, "/m")),
    ];
    run_table(&cfg, cases);
}

#[test]
fn environments_select_pools_by_host() {
    let cfg = compile_value(json!({
        "pools": {
            "users-v2": one_instance("users-v2"),
            "users-v2-sandbox": one_instance("users-v2-sandbox"),
            "users-v2-eu": one_instance("users-v2-eu"),
            "special": one_instance("special"),
            "special-sandbox": one_instance("special-sandbox")
        },
        "apis": [
            {
                "name": "users", "base_path": "/users-api",
                "versions": [{ "name": "v2", "pool": "users-v2" }],
                "environments": [
                    { "name": "production", "hosts": ["api.example.com", "*.example.com"] },
                    { "name": "eu", "hosts": ["*.eu.example.com"],
                      "pools": { "users-v2": "users-v2-eu" } },
                    { "name": "sandbox", "hosts": ["sandbox.example.com", "*.sandbox.example.net"],
                      "pools": { "users-v2": "users-v2-sandbox", "special": "special-sandbox" } },
                    { "name": "staging" }
                ],
                "routes": [
                    { "name": "get-user", "methods": ["GET"], "path": "/users/{id}" },
                    { "name": "special", "methods": ["GET"], "path": "/special", "pool": "special" }
                ]
            },
            {
                "name": "hosted", "base_path": "/hosted", "pool": "special",
                "environments": [{ "name": "prod", "hosts": ["hosted.example.com"] }],
                "routes": [{ "name": "r", "methods": ["GET"], "path": "/r" }]
            }
        ]
    }));
    // (host, path, api, route, environment, pool)
    #[rustfmt::skip]
    let cases = [
        ("api.example.com", "/users-api/v2/users/1", "users", "get-user", "production", "users-v2"),
        ("www.example.com", "/users-api/v2/users/1", "users", "get-user", "production", "users-v2"),
        ("x.eu.example.com", "/users-api/v2/users/1", "users", "get-user", "eu", "users-v2-eu"),
        ("sandbox.example.com", "/users-api/v2/users/1", "users", "get-user", "sandbox", "users-v2-sandbox"),
        ("a.sandbox.example.net", "/users-api/v2/users/1", "users", "get-user", "sandbox", "users-v2-sandbox"),
        ("localhost", "/users-api/v2/users/1", "users", "get-user", "staging", "users-v2"),
        ("example.com", "/users-api/v2/users/1", "users", "get-user", "staging", "users-v2"),
        // A route's own pool is replaced by the environment map too.
        ("api.example.com", "/users-api/v2/special", "users", "special", "production", "special"),
        ("sandbox.example.com", "/users-api/v2/special", "users", "special", "sandbox", "special-sandbox"),
        ("hosted.example.com", "/hosted/r", "hosted", "r", "prod", "special"),
    ];
    for (host, path, api, route, env, pool) in cases {
        let r = resolve(&cfg, "GET", host, path, H, "")
            .unwrap_or_else(|m| panic!("{host}{path}: {m:?}"));
        assert_eq!(
            (
                r.api.name.as_str(),
                r.route.name.as_str(),
                r.environment,
                r.pool.name.as_str()
            ),
            (api, route, env, pool),
            "{host}{path}"
        );
    }
    // An API without a default environment serves only its hosts.
    for host in ["localhost", "www.example.com", "x.hosted.example.com"] {
        assert_eq!(
            resolve(&cfg, "GET", host, "/hosted/r", H, "").unwrap_err(),
            RouteMiss::NotFound,
            "{host}"
        );
    }
}

#[test]
fn apis_sharing_a_base_path_are_told_apart_by_host() {
    let cfg = compile_value(json!({
        "pools": { "a": one_instance("a"), "b": one_instance("b") },
        "apis": [
            { "name": "api-a", "base_path": "/shared", "pool": "a",
              "environments": [{ "name": "prod", "hosts": ["a.example.com"] }],
              "routes": [{ "name": "r", "methods": ["GET"], "path": "/x" }] },
            { "name": "api-b", "base_path": "/shared", "pool": "b",
              "environments": [{ "name": "prod", "hosts": ["b.example.com"] },
                               { "name": "dev", "hosts": ["*.dev.example.com"] }],
              "routes": [{ "name": "r", "methods": ["GET", "POST"], "path": "/x" }] }
        ]
    }));
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("GET", "a.example.com", "/shared/x", H, "", Route("api-a", "r", None, "/x")),
        ("GET", "b.example.com", "/shared/x", H, "", Route("api-b", "r", None, "/x")),
        ("GET", "q.dev.example.com", "/shared/x", H, "", Route("api-b", "r", None, "/x")),
        ("POST", "a.example.com", "/shared/x", H, "", NotAllowed("GET, HEAD")),
        ("POST", "b.example.com", "/shared/x", H, "", Route("api-b", "r", None, "/x")),
        ("GET", "c.example.com", "/shared/x", H, "", NotFound),
    ];
    run_table(&cfg, cases);
    let r = resolve(&cfg, "GET", "q.dev.example.com", "/shared/x", H, "").unwrap();
    assert_eq!((r.environment, r.pool.name.as_str()), ("dev", "b"));
}

#[test]
fn timeout_precedence() {
    let pools = json!({
        "with-timeout": { "instances": [{ "url": "http://a:1" }], "timeout_ms": 5000 },
        "plain": { "instances": [{ "url": "http://b:1" }] }
    });
    let apis = json!([
        {
            "name": "api-policy", "base_path": "/a", "pool": "with-timeout",
            "policies": { "upstream": { "timeout_ms": 2000 } },
            "routes": [
                { "name": "route-policy", "path": "/route",
                  "policies": { "upstream": { "timeout_ms": 1000 } } },
                { "name": "inherits-api", "path": "/api" },
                { "name": "route-failover-only", "path": "/fo",
                  "policies": { "upstream": { "failover": false } } }
            ]
        },
        {
            "name": "pool-timeout", "base_path": "/b", "pool": "with-timeout",
            "routes": [
                { "name": "pool", "path": "/pool" },
                { "name": "route-beats-pool", "path": "/route",
                  "policies": { "upstream": { "timeout_ms": 7000 } } }
            ]
        },
        {
            "name": "no-pool-timeout", "base_path": "/c", "pool": "plain",
            "routes": [{ "name": "gateway", "path": "/gw" }]
        }
    ]);
    let with_gateway = compile_value(json!({
        "gateway": { "policies": { "upstream": { "timeout_ms": 10000 } } },
        "pools": pools.clone(),
        "apis": apis.clone()
    }));
    let without_gateway = compile_value(json!({ "pools": pools, "apis": apis }));
    for (path, with_gw, without_gw) in [
        ("/a/route", 1000, 1000), // route policy beats everything
        ("/a/api", 2000, 2000),   // API policy beats the pool's timeout
        ("/a/fo", 2000, 2000),    // a route policy without a timeout inherits the API's
        ("/b/pool", 5000, 5000),  // pool timeout beats the gateway policy
        ("/b/route", 7000, 7000), // route policy beats the pool
        ("/c/gw", 10000, 30000),  // gateway policy, else the 30 s default
    ] {
        let r = resolve(&with_gateway, "GET", "h", path, H, "").unwrap();
        assert_eq!(r.timeout_ms, with_gw, "{path} with a gateway policy");
        let r = resolve(&without_gateway, "GET", "h", path, H, "").unwrap();
        assert_eq!(r.timeout_ms, without_gw, "{path} without a gateway policy");
    }
    // Failover and replay size inherit too.
    let r = resolve(&with_gateway, "GET", "h", "/a/fo", H, "").unwrap();
    assert!(!r.route.upstream.failover);
    assert_eq!(r.route.upstream.replay_buffer_bytes, 65536);
    let r = resolve(&with_gateway, "GET", "h", "/a/api", H, "").unwrap();
    assert!(r.route.upstream.failover);
}

#[test]
fn the_demo_config_routes_its_examples() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/demo-config.json"
    ))
    .unwrap();
    let cfg = compile(&text, "demo").unwrap_or_else(|e| panic!("{e}"));
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("GET", "localhost", "/users-api/v2/users/42", H, "",
            Route("users", "get-user", Some("v2"), "/users/42")),
        ("GET", "localhost", "/users-api/v1/users/me", H, "",
            Route("users", "me", Some("v1"), "/whoami")),
        ("POST", "localhost", "/orders-api/v3/orders", H, "",
            Route("orders", "create-order", Some("v3"), "/orders")),
        ("PUT", "localhost", "/orders-api/v3/files/a/b.txt", H, "",
            Route("orders", "files", Some("v3"), "/files/a/b.txt")),
        ("GET", "localhost", "/orders-api/v3/orders", H, "", NotAllowed("POST")),
    ];
    run_table(&cfg, cases);
    let r = resolve(&cfg, "GET", "localhost", "/orders-api/v3/orders/1", H, "").unwrap();
    assert_eq!((r.pool.name.as_str(), r.timeout_ms), ("orders-v3", 10000));
}

/// 1,000+ generated routes compile, and every one of them resolves to itself.
#[test]
fn a_config_with_thousands_of_routes_routes_correctly() {
    const APIS: usize = 12;
    const PER_API: usize = 100;
    let mut pools = serde_json::Map::new();
    let mut apis = Vec::new();
    for a in 0..APIS {
        pools.insert(format!("pool-{a}"), one_instance(&format!("svc-{a}")));
        let mut routes = Vec::new();
        for r in 0..PER_API {
            // Four shapes per resource: collection, literal item, param item, wildcard.
            match r % 4 {
                0 => routes.push(json!({ "name": format!("r{r}"), "methods": ["GET", "POST"],
                                         "path": format!("/res{r}") })),
                1 => routes.push(json!({ "name": format!("r{r}"), "methods": ["GET"],
                                         "path": format!("/res{}/special", r - 1) })),
                2 => routes.push(
                    json!({ "name": format!("r{r}"), "methods": ["GET", "DELETE"],
                                         "path": format!("/res{}/{{id}}", r - 2),
                                         "upstream_path": format!("/items/{{id}}/of/{r}") }),
                ),
                _ => routes.push(json!({ "name": format!("r{r}"), "methods": ["GET"],
                                         "path": format!("/res{}/{{id}}/{{*rest}}", r - 3) })),
            }
        }
        apis.push(json!({
            "name": format!("api-{a}"),
            "base_path": format!("/api-{a}"),
            "versions": [{ "name": "v1", "pool": format!("pool-{a}") },
                         { "name": "v2", "pool": format!("pool-{a}") }],
            "routes": routes
        }));
    }
    let cfg = compile_value(json!({ "pools": pools, "apis": apis }));
    assert_eq!(cfg.routes().len(), APIS * PER_API);
    assert!(cfg.routes().len() >= 1000);
    assert_eq!(cfg.router().len(), APIS * PER_API * 2);

    for a in 0..APIS {
        let api = format!("api-{a}");
        for v in ["v1", "v2"] {
            for r in (0..PER_API).step_by(4) {
                let base = format!("/api-{a}/{v}/res{r}");
                let check = |method: &str, path: String, route: usize, upstream: String| {
                    let got = resolve(&cfg, method, "h", &path, H, "")
                        .unwrap_or_else(|m| panic!("{method} {path}: {m:?}"));
                    assert_eq!(
                        (
                            got.api.name.as_str(),
                            got.route.name.clone(),
                            got.version,
                            got.upstream_path.as_str(),
                            got.pool.name.clone()
                        ),
                        (
                            api.as_str(),
                            format!("r{route}"),
                            Some(v),
                            upstream.as_str(),
                            format!("pool-{a}")
                        ),
                        "{method} {path}"
                    );
                };
                check("POST", base.clone(), r, format!("/res{r}"));
                check(
                    "GET",
                    format!("{base}/special"),
                    r + 1,
                    format!("/res{r}/special"),
                );
                check(
                    "DELETE",
                    format!("{base}/special"),
                    r + 2,
                    format!("/items/special/of/{}", r + 2),
                );
                check(
                    "GET",
                    format!("{base}/42"),
                    r + 2,
                    format!("/items/42/of/{}", r + 2),
                );
                check(
                    "GET",
                    format!("{base}/42/a/b"),
                    r + 3,
                    format!("/res{r}/42/a/b"),
                );
                // The parameter route and the wildcard below it fit all but the method.
                assert_eq!(
                    outcome(resolve(&cfg, "PUT", "h", &format!("{base}/42"), H, "")),
                    "405 Allow: GET, HEAD, DELETE",
                    "PUT {base}/42"
                );
            }
        }
        assert_eq!(
            resolve(&cfg, "GET", "h", &format!("/api-{a}/v3/res0"), H, "").unwrap_err(),
            RouteMiss::NotFound
        );
        assert_eq!(
            resolve(
                &cfg,
                "GET",
                "h",
                &format!("/api-{a}/v1/res{PER_API}"),
                H,
                ""
            )
            .unwrap_err(),
            RouteMiss::NotFound
        );
    }
}
