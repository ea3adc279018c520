//! `config::compile`: table-driven tests of what a config document is rejected for (every
//! error, each with its JSON path) and of what is *not* an error (route pairs the precedence
//! rules can order).

use edgegate_core::config::{compile, ConfigError};
use serde_json::{json, Value};

// === helpers ===

/// A pool that is always valid.
fn pool() -> Value {
    json!({ "instances": [{ "url": "http://backend:8080" }] })
}

/// A document with pool `p` and one unversioned API `a` at `/a` with these routes.
fn one_api(routes: Value) -> String {
    json!({
        "pools": { "p": pool() },
        "apis": [{ "name": "a", "base_path": "/a", "pool": "p", "routes": routes }]
    })
    .to_string()
}

/// A document with pool `p` and these APIs.
fn with_apis(apis: Value) -> String {
    json!({ "pools": { "p": pool() }, "apis": apis }).to_string()
}

/// A document with these pools and one trivial API on pool `p`.
fn with_pools(pools: Value) -> String {
    json!({
        "pools": pools,
        "apis": [{ "name": "a", "base_path": "/a", "pool": "p",
                   "routes": [{ "name": "r", "path": "/r" }] }]
    })
    .to_string()
}

fn compile_errors(name: &str, text: &str) -> Vec<ConfigError> {
    match compile(text, "test") {
        Ok(_) => panic!("[{name}] compiled, but errors were expected"),
        Err(e) => {
            assert!(
                !e.0.is_empty(),
                "[{name}] an error result must not be empty"
            );
            e.0
        }
    }
}

/// Every expected `(path, message substring)` matches a distinct error, and there are no
/// others.
fn assert_errors(name: &str, text: &str, expected: &[(&str, &str)]) {
    let actual = compile_errors(name, text);
    let dump = || {
        actual
            .iter()
            .map(|e| format!("    {} : {}", e.path, e.message))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut unmatched: Vec<&ConfigError> = actual.iter().collect();
    for (path, substring) in expected {
        let pos = unmatched
            .iter()
            .position(|e| e.path == *path && e.message.contains(substring));
        match pos {
            Some(i) => {
                unmatched.remove(i);
            }
            None => panic!(
                "[{name}] no error at {path} containing {substring:?}; got:\n{}",
                dump()
            ),
        }
    }
    assert!(
        unmatched.is_empty(),
        "[{name}] unexpected extra errors: {unmatched:#?}\nall errors:\n{}",
        dump()
    );
}

type Case = (&'static str, String, Vec<(&'static str, &'static str)>);

fn run_table(cases: Vec<Case>) {
    for (name, text, expected) in &cases {
        assert_errors(name, text, expected);
    }
}

// === structural errors ===

#[test]
fn structural_errors_table() {
    let cases: Vec<Case> = vec![
        (
            "invalid JSON",
            r#"{"pools": {}, "apis": ["#.to_string(),
            vec![("$", "not valid JSON")],
        ),
        (
            "trailing comma is invalid JSON",
            r#"{"pools": {}, "apis": [],}"#.to_string(),
            vec![("$", "not valid JSON")],
        ),
        (
            "not an object (array)",
            "[1, 2]".to_string(),
            vec![("$", "must be a JSON object")],
        ),
        (
            "not an object (string)",
            r#""hello""#.to_string(),
            vec![("$", "must be a JSON object")],
        ),
        (
            "unknown top-level field",
            r#"{"pools": {}, "apis": [], "routes": []}"#.to_string(),
            vec![("$.routes", "unknown field `routes`")],
        ),
        (
            "missing required top-level fields",
            r#"{"gateway": {}}"#.to_string(),
            vec![
                ("$", "missing field `pools`"),
                ("$", "missing field `apis`"),
            ],
        ),
        (
            "unknown field inside a route (deny_unknown_fields)",
            one_api(json!([
                { "name": "ok", "path": "/ok" },
                { "name": "typo", "path": "/typo", "method": ["GET"] }
            ])),
            vec![("$.apis[0].routes[1].method", "unknown field `method`")],
        ),
        (
            "unknown field inside a predicate",
            one_api(json!([
                { "name": "r", "path": "/r",
                  "headers": [{ "name": "x-a", "equals": "1", "regex": ".*" }] }
            ])),
            vec![(
                "$.apis[0].routes[0].headers[0].regex",
                "unknown field `regex`",
            )],
        ),
        (
            "wrong types at top level",
            r#"{"pools": [], "apis": {}}"#.to_string(),
            vec![("$.pools", "invalid type"), ("$.apis", "invalid type")],
        ),
        (
            "structural errors in several routes, APIs, pools and the gateway: all reported",
            json!({
                "gateway": { "trust_forwarded": "yes" },
                "pools": {
                    "good": pool(),
                    "p": { "instances": [{ "url": "http://a", "weight": "heavy" }] },
                    "q": { "instances": [{ "url": "http://b" }], "retries": 3 }
                },
                "apis": [
                    {
                        "name": "a", "base_path": "/a",
                        "versions": [{ "name": "v1", "pool": "good", "deprecated": true }],
                        "routes": [
                            { "name": "r0", "path": 7 },
                            { "name": "r1", "path": "/fine" },
                            { "name": "r2", "path": "/x", "methods": "GET" },
                            { "path": "/no-name" }
                        ]
                    },
                    { "name": "b", "pool": "good", "routes": [] },
                    { "name": "c", "base_path": "/c", "pool": "good",
                      "routes": [{ "name": "r", "path": "/r", "hosts": ["a.com"] }] }
                ]
            })
            .to_string(),
            vec![
                ("$.gateway.trust_forwarded", "invalid type"),
                ("$.pools.p.instances[0].weight", "invalid type"),
                ("$.pools.q.retries", "unknown field `retries`"),
                (
                    "$.apis[0].versions[0].deprecated",
                    "unknown field `deprecated`",
                ),
                ("$.apis[0].routes[0].path", "invalid type"),
                ("$.apis[0].routes[2].methods", "invalid type"),
                ("$.apis[0].routes[3]", "missing field `name`"),
                ("$.apis[1]", "missing field `base_path`"),
                ("$.apis[2].routes[0].hosts", "unknown field `hosts`"),
            ],
        ),
    ];
    run_table(cases);
}

// === semantic errors ===

#[test]
fn pool_errors_table() {
    let cases: Vec<Case> = vec![
        (
            "bad pool URLs",
            with_pools(json!({
                "p": { "instances": [
                    { "url": "ftp://files.example.com" },
                    { "url": "users:8080" },
                    { "url": "http://ok:80" },
                    { "url": "http://h:8080/base?x=1" },
                    { "url": "http://h:0" }
                ] }
            })),
            vec![
                ("$.pools.p.instances[0].url", "scheme must be http or https"),
                ("$.pools.p.instances[1].url", "not an absolute http(s) URL"),
                ("$.pools.p.instances[3].url", "no query or fragment"),
                ("$.pools.p.instances[4].url", "bad port"),
            ],
        ),
        (
            "weight 0 and 1001",
            with_pools(json!({
                "p": { "instances": [
                    { "url": "http://a:1", "weight": 0 },
                    { "url": "http://b:1", "weight": 1000 },
                    { "url": "http://c:1", "weight": 1001 }
                ] }
            })),
            vec![
                ("$.pools.p.instances[0].weight", "weight must be 1 to 1000"),
                ("$.pools.p.instances[2].weight", "weight must be 1 to 1000"),
            ],
        ),
        (
            "pool timeout 0 and > 300000",
            with_pools(json!({
                "p": { "instances": [{ "url": "http://a:1" }], "timeout_ms": 0 },
                "q": { "instances": [{ "url": "http://a:1" }], "timeout_ms": 300001 }
            })),
            vec![
                ("$.pools.p.timeout_ms", "a timeout is 1 to 300000 ms"),
                ("$.pools.q.timeout_ms", "a timeout is 1 to 300000 ms"),
            ],
        ),
        (
            "empty instances",
            with_pools(json!({ "p": { "instances": [] } })),
            vec![("$.pools.p.instances", "at least one instance")],
        ),
        (
            "bad pool name",
            with_pools(json!({ "p": pool(), "has space": pool() })),
            vec![("$.pools.has space", "pool names are")],
        ),
    ];
    run_table(cases);
}

#[test]
fn policy_errors_table() {
    let cases: Vec<Case> = vec![(
        "policy timeouts at every level and replay buffer too large",
        json!({
            "gateway": { "policies": { "upstream": { "timeout_ms": 0 } } },
            "pools": { "p": pool() },
            "apis": [{
                "name": "a", "base_path": "/a", "pool": "p",
                "policies": { "upstream": { "timeout_ms": 300001 } },
                "routes": [{ "name": "r", "path": "/r",
                             "policies": { "upstream": { "timeout_ms": 0,
                                                         "replay_buffer_bytes": 1048577 } } }]
            }]
        })
        .to_string(),
        vec![
            (
                "$.gateway.policies.upstream.timeout_ms",
                "a timeout is 1 to 300000 ms",
            ),
            (
                "$.apis[0].policies.upstream.timeout_ms",
                "a timeout is 1 to 300000 ms",
            ),
            (
                "$.apis[0].routes[0].policies.upstream.timeout_ms",
                "a timeout is 1 to 300000 ms",
            ),
            (
                "$.apis[0].routes[0].policies.upstream.replay_buffer_bytes",
                "at most 1048576 bytes",
            ),
        ],
    )];
    run_table(cases);
}

#[test]
fn reference_errors_table() {
    let cases: Vec<Case> = vec![
        (
            "unknown pool from a version",
            with_apis(json!([{
                "name": "a", "base_path": "/a",
                "versions": [{ "name": "v1", "pool": "p" }, { "name": "v2", "pool": "nope" }],
                "routes": [{ "name": "r", "path": "/r" }]
            }])),
            vec![("$.apis[0].versions[1].pool", "no pool named \"nope\"")],
        ),
        (
            "unknown pool from a route",
            one_api(json!([{ "name": "r", "path": "/r", "pool": "nope" }])),
            vec![("$.apis[0].routes[0].pool", "no pool named \"nope\"")],
        ),
        (
            "unknown pool from an unversioned API",
            with_apis(json!([{ "name": "a", "base_path": "/a", "pool": "nope",
                               "routes": [{ "name": "r", "path": "/r" }] }])),
            vec![("$.apis[0].pool", "no pool named \"nope\"")],
        ),
        (
            "unknown pools in an environment map (key and value)",
            with_apis(json!([{
                "name": "a", "base_path": "/a", "pool": "p",
                "environments": [
                    { "name": "prod", "hosts": ["api.example.com"], "pools": { "nope": "p" } },
                    { "name": "dev", "pools": { "p": "also-nope" } }
                ],
                "routes": [{ "name": "r", "path": "/r" }]
            }])),
            vec![
                (
                    "$.apis[0].environments[0].pools.nope",
                    "no pool named \"nope\"",
                ),
                (
                    "$.apis[0].environments[1].pools.p",
                    "no pool named \"also-nope\"",
                ),
            ],
        ),
        (
            "route versions naming an unknown version",
            with_apis(json!([{
                "name": "a", "base_path": "/a",
                "versions": [{ "name": "v1", "pool": "p" }],
                "routes": [{ "name": "r", "path": "/r", "versions": ["v1", "v9"] }]
            }])),
            vec![("$.apis[0].routes[0].versions[1]", "no version \"v9\"")],
        ),
        (
            "route versions on an unversioned API",
            one_api(json!([{ "name": "r", "path": "/r", "versions": ["v1"] }])),
            vec![("$.apis[0].routes[0].versions", "unversioned")],
        ),
    ];
    run_table(cases);
}

#[test]
fn api_errors_table() {
    let cases: Vec<Case> = vec![
        (
            "duplicate API name",
            with_apis(json!([
                { "name": "a", "base_path": "/a", "pool": "p", "routes": [] },
                { "name": "b", "base_path": "/b", "pool": "p", "routes": [] },
                { "name": "a", "base_path": "/c", "pool": "p", "routes": [] }
            ])),
            vec![("$.apis[2].name", "API name \"a\" is used twice")],
        ),
        (
            "duplicate route name",
            one_api(json!([
                { "name": "r", "path": "/x" },
                { "name": "s", "path": "/y" },
                { "name": "r", "path": "/z" }
            ])),
            vec![("$.apis[0].routes[2].name", "route name \"r\" is used twice")],
        ),
        (
            "the same route name in two APIs is fine, a bad one is not",
            with_apis(json!([
                { "name": "a", "base_path": "/a", "pool": "p",
                  "routes": [{ "name": "r", "path": "/x" }] },
                { "name": "b", "base_path": "/b", "pool": "p",
                  "routes": [{ "name": "r", "path": "/x" }, { "name": "bad name", "path": "/y" }] }
            ])),
            vec![("$.apis[1].routes[1].name", "route names are")],
        ),
        (
            "unversioned API without pool",
            with_apis(json!([{ "name": "a", "base_path": "/a", "routes": [] }])),
            vec![(
                "$.apis[0]",
                "needs `versions` or, when unversioned, a `pool`",
            )],
        ),
        (
            "versions and pool both set",
            with_apis(json!([{
                "name": "a", "base_path": "/a", "pool": "p",
                "versions": [{ "name": "v1", "pool": "p" }], "routes": []
            }])),
            vec![("$.apis[0].pool", "`pool` is for unversioned APIs")],
        ),
        (
            "duplicate version",
            with_apis(json!([{
                "name": "a", "base_path": "/a",
                "versions": [{ "name": "v1", "pool": "p" }, { "name": "v1", "pool": "p" }],
                "routes": []
            }])),
            vec![("$.apis[0].versions[1].name", "listed twice")],
        ),
        (
            "bad base paths",
            with_apis(json!([
                { "name": "a", "base_path": "api", "pool": "p", "routes": [] },
                { "name": "b", "base_path": "/b/{id}", "pool": "p", "routes": [] },
                { "name": "c", "base_path": "/c/", "pool": "p", "routes": [] }
            ])),
            vec![
                ("$.apis[0].base_path", "must start with '/'"),
                ("$.apis[1].base_path", "cannot contain parameters"),
                ("$.apis[2].base_path", "empty segment"),
            ],
        ),
        (
            "two environments without hosts",
            with_apis(json!([{
                "name": "a", "base_path": "/a", "pool": "p",
                "environments": [
                    { "name": "prod", "hosts": ["api.example.com"] },
                    { "name": "dev" },
                    { "name": "test", "hosts": [] }
                ],
                "routes": []
            }])),
            vec![(
                "$.apis[0].environments[2].hosts",
                "only one environment may leave `hosts` empty",
            )],
        ),
        (
            "the same host in two environments (case-insensitive)",
            with_apis(json!([{
                "name": "a", "base_path": "/a", "pool": "p",
                "environments": [
                    { "name": "prod", "hosts": ["api.example.com", "*.example.com"] },
                    { "name": "sandbox", "hosts": ["sandbox.example.com", "API.example.com"] }
                ],
                "routes": []
            }])),
            vec![(
                "$.apis[0].environments[1].hosts[1]",
                "\"API.example.com\" belongs to two environments",
            )],
        ),
        (
            "bad environment host and duplicate environment name",
            with_apis(json!([{
                "name": "a", "base_path": "/a", "pool": "p",
                "environments": [
                    { "name": "prod", "hosts": ["api.example.com:443"] },
                    { "name": "prod", "hosts": ["a.*.com"] }
                ],
                "routes": []
            }])),
            vec![
                (
                    "$.apis[0].environments[0].hosts[0]",
                    "not allowed in a host pattern",
                ),
                ("$.apis[0].environments[1].name", "listed twice"),
                (
                    "$.apis[0].environments[1].hosts[0]",
                    "not allowed in a host pattern",
                ),
            ],
        ),
    ];
    run_table(cases);
}

#[test]
fn route_errors_table() {
    let cases: Vec<Case> = vec![
        (
            "bad path templates, one of each kind",
            one_api(json!([
                { "name": "no-slash", "path": "users" },
                { "name": "partial", "path": "/users/x{id}" },
                { "name": "wild-not-last", "path": "/files/{*rest}/meta" },
                { "name": "dup-param", "path": "/a/{id}/b/{id}" },
                { "name": "dup-param-wild", "path": "/a/{id}/{*id}" },
                { "name": "unclosed", "path": "/users/{id" },
                { "name": "empty-seg", "path": "/a//b" },
                { "name": "dot", "path": "/a/../b" }
            ])),
            vec![
                ("$.apis[0].routes[0].path", "must start with '/'"),
                ("$.apis[0].routes[1].path", "must span the whole segment"),
                ("$.apis[0].routes[2].path", "must be the last segment"),
                ("$.apis[0].routes[3].path", "parameter \"id\" appears twice"),
                ("$.apis[0].routes[4].path", "parameter \"id\" appears twice"),
                ("$.apis[0].routes[5].path", "must span the whole segment"),
                ("$.apis[0].routes[6].path", "empty segment"),
                ("$.apis[0].routes[7].path", "dot segments are not allowed"),
            ],
        ),
        (
            "upstream_path using a parameter the path lacks",
            one_api(json!([
                { "name": "r", "path": "/users/{id}", "upstream_path": "/accounts/{user}/{id}" },
                { "name": "s", "path": "/files/{*rest}", "upstream_path": "/f/{*path}" },
                { "name": "t", "path": "/t", "upstream_path": "t" }
            ])),
            vec![
                (
                    "$.apis[0].routes[0].upstream_path",
                    "{user} is not a parameter of the route path",
                ),
                (
                    "$.apis[0].routes[1].upstream_path",
                    "{path} is not a parameter of the route path",
                ),
                ("$.apis[0].routes[2].upstream_path", "must start with '/'"),
            ],
        ),
        (
            "predicate with both equals and present, and with neither",
            one_api(json!([{
                "name": "r", "path": "/r",
                "headers": [{ "name": "x-a", "equals": "1", "present": true }],
                "query": [{ "name": "q" }]
            }])),
            vec![
                (
                    "$.apis[0].routes[0].headers[0]",
                    "set exactly one of `equals` or `present`",
                ),
                (
                    "$.apis[0].routes[0].query[0]",
                    "set exactly one of `equals` or `present`",
                ),
            ],
        ),
        (
            "two predicates on the same header (names are case-insensitive)",
            one_api(json!([{
                "name": "r", "path": "/r",
                "headers": [
                    { "name": "X-V", "equals": "1" },
                    { "name": "x-v", "present": true }
                ]
            }])),
            vec![("$.apis[0].routes[0]", "two predicates on \"x-v\"")],
        ),
        (
            "two predicates on the same query parameter",
            one_api(json!([{
                "name": "r", "path": "/r",
                "query": [{ "name": "a", "equals": "1" }, { "name": "a", "equals": "2" }]
            }])),
            vec![("$.apis[0].routes[0]", "two predicates on \"a\"")],
        ),
        (
            "bad header predicate name",
            one_api(json!([{
                "name": "r", "path": "/r", "headers": [{ "name": "x a", "present": true }]
            }])),
            vec![("$.apis[0].routes[0].headers[0].name", "is not a valid name")],
        ),
        (
            "bad method names",
            one_api(json!([
                { "name": "lower", "path": "/a", "methods": ["get"] },
                { "name": "twice", "path": "/b", "methods": ["GET", "GET"] },
                { "name": "star-mixed", "path": "/c", "methods": ["*", "GET"] },
                { "name": "unknown", "path": "/d", "methods": ["FETCH"] }
            ])),
            vec![
                ("$.apis[0].routes[0].methods", "\"get\" is not a method"),
                ("$.apis[0].routes[1].methods", "\"GET\" is listed twice"),
                ("$.apis[0].routes[2].methods", "\"*\" is not a method"),
                ("$.apis[0].routes[3].methods", "\"FETCH\" is not a method"),
            ],
        ),
        (
            "bad route host",
            one_api(json!([{ "name": "r", "path": "/r", "host": "*api.example.com" }])),
            vec![("$.apis[0].routes[0].host", "not allowed in a host pattern")],
        ),
        (
            "bad strip_request_headers entry",
            json!({
                "gateway": { "strip_request_headers": ["x-ok", "bad header"] },
                "pools": { "p": pool() },
                "apis": []
            })
            .to_string(),
            vec![("$.gateway.strip_request_headers[1]", "is not a header name")],
        ),
    ];
    run_table(cases);
}

// === route conflicts ===

const CONFLICT: &str = "conflicts with";

#[test]
fn route_conflicts_table() {
    let cases: Vec<Case> = vec![
        (
            "same path, same methods",
            one_api(json!([
                { "name": "a", "methods": ["GET"], "path": "/users" },
                { "name": "b", "methods": ["GET"], "path": "/users" }
            ])),
            vec![("$.apis[0].routes[1]", "conflicts with $.apis[0].routes[0]")],
        ),
        (
            "same shape with different parameter names",
            one_api(json!([
                { "name": "a", "methods": ["GET", "POST"], "path": "/users/{id}" },
                { "name": "b", "methods": ["POST"], "path": "/users/{uid}" }
            ])),
            vec![("$.apis[0].routes[1]", "conflicts with $.apis[0].routes[0]")],
        ),
        (
            "GET brings HEAD, so GET and HEAD overlap",
            one_api(json!([
                { "name": "a", "methods": ["GET"], "path": "/x" },
                { "name": "b", "methods": ["HEAD"], "path": "/x" }
            ])),
            vec![("$.apis[0].routes[1]", "conflicts with $.apis[0].routes[0]")],
        ),
        (
            "any method overlaps everything",
            one_api(json!([
                { "name": "a", "path": "/x" },
                { "name": "b", "methods": ["PATCH"], "path": "/x" }
            ])),
            vec![("$.apis[0].routes[1]", "conflicts with $.apis[0].routes[0]")],
        ),
        (
            "same exact host",
            one_api(json!([
                { "name": "a", "path": "/x", "host": "api.example.com" },
                { "name": "b", "path": "/x", "host": "API.example.com" }
            ])),
            vec![("$.apis[0].routes[1]", "conflicts with $.apis[0].routes[0]")],
        ),
        (
            "same wildcard routes",
            one_api(json!([
                { "name": "a", "path": "/files/{*rest}" },
                { "name": "b", "path": "/files/{*path}" }
            ])),
            vec![("$.apis[0].routes[1]", "conflicts with $.apis[0].routes[0]")],
        ),
        (
            "equal predicates",
            one_api(json!([
                { "name": "a", "path": "/x", "headers": [{ "name": "x-v", "equals": "1" }] },
                { "name": "b", "path": "/x", "headers": [{ "name": "X-V", "equals": "1" }] }
            ])),
            vec![("$.apis[0].routes[1]", "conflicts with $.apis[0].routes[0]")],
        ),
        (
            "predicates neither exclusive nor nested",
            one_api(json!([
                { "name": "a", "path": "/x", "headers": [{ "name": "x-a", "equals": "1" }] },
                { "name": "b", "path": "/x", "query": [{ "name": "b", "equals": "1" }] }
            ])),
            vec![("$.apis[0].routes[1]", "conflicts with $.apis[0].routes[0]")],
        ),
        (
            "equals and present on the same header do not exclude each other",
            one_api(json!([
                { "name": "a", "path": "/x", "headers": [{ "name": "x-v", "equals": "1" }] },
                { "name": "b", "path": "/x", "headers": [{ "name": "x-v", "present": true }] }
            ])),
            vec![("$.apis[0].routes[1]", "conflicts with $.apis[0].routes[0]")],
        ),
        (
            "two APIs on the same base path and every host",
            with_apis(json!([
                { "name": "a", "base_path": "/shared", "pool": "p",
                  "routes": [{ "name": "r", "path": "/x" }] },
                { "name": "b", "base_path": "/shared", "pool": "p",
                  "routes": [{ "name": "r", "path": "/x" }] }
            ])),
            vec![("$.apis[1].routes[0]", "conflicts with $.apis[0].routes[0]")],
        ),
        (
            "base path + route equals another API's base path + route",
            with_apis(json!([
                { "name": "a", "base_path": "/a", "pool": "p",
                  "routes": [{ "name": "r", "path": "/b/c" }] },
                { "name": "b", "base_path": "/a/b", "pool": "p",
                  "routes": [{ "name": "r", "path": "/c" }] }
            ])),
            vec![("$.apis[1].routes[0]", "conflicts with $.apis[0].routes[0]")],
        ),
        (
            "two APIs whose environment hosts overlap",
            with_apis(json!([
                { "name": "a", "base_path": "/shared", "pool": "p",
                  "environments": [{ "name": "e", "hosts": ["*.example.com"] }],
                  "routes": [{ "name": "r", "path": "/x" }] },
                { "name": "b", "base_path": "/shared", "pool": "p",
                  "environments": [{ "name": "e", "hosts": ["api.example.com"] }],
                  "routes": [{ "name": "r", "path": "/x" }] }
            ])),
            vec![("$.apis[1].routes[0]", "conflicts with $.apis[0].routes[0]")],
        ),
        (
            "a version-restricted route conflicts in the version it shares",
            with_apis(json!([{
                "name": "a", "base_path": "/a",
                "versions": [{ "name": "v1", "pool": "p" }, { "name": "v2", "pool": "p" }],
                "routes": [
                    { "name": "old", "path": "/x", "versions": ["v1"] },
                    { "name": "new", "path": "/x", "versions": ["v1", "v2"] }
                ]
            }])),
            vec![("$.apis[0].routes[1]", "conflicts with $.apis[0].routes[0]")],
        ),
        (
            "three routes on one path: every pair is reported",
            one_api(json!([
                { "name": "a", "methods": ["GET"], "path": "/x" },
                { "name": "b", "methods": ["GET", "POST"], "path": "/x" },
                { "name": "c", "methods": ["POST", "GET"], "path": "/x" }
            ])),
            vec![
                ("$.apis[0].routes[1]", "conflicts with $.apis[0].routes[0]"),
                ("$.apis[0].routes[2]", "conflicts with $.apis[0].routes[0]"),
                ("$.apis[0].routes[2]", "conflicts with $.apis[0].routes[1]"),
            ],
        ),
        (
            "several independent conflicts are all reported",
            with_apis(json!([
                { "name": "a", "base_path": "/a", "pool": "p", "routes": [
                    { "name": "users-1", "methods": ["GET"], "path": "/users/{id}" },
                    { "name": "users-2", "methods": ["GET"], "path": "/users/{uid}" },
                    { "name": "fine", "methods": ["GET"], "path": "/users/me" },
                    { "name": "files-1", "path": "/files/{*rest}", "host": "*.example.com" },
                    { "name": "files-2", "methods": ["PUT"], "path": "/files/{*p}",
                      "host": "*.example.com" },
                    { "name": "root-1", "methods": ["DELETE"], "path": "/" },
                    { "name": "root-2", "methods": ["DELETE"], "path": "/" }
                ] },
                { "name": "b", "base_path": "/b", "pool": "p", "routes": [
                    { "name": "x", "path": "/x", "headers": [{ "name": "x-a", "present": true }] },
                    { "name": "y", "path": "/x", "headers": [{ "name": "x-b", "present": true }] }
                ] }
            ])),
            vec![
                ("$.apis[0].routes[1]", "conflicts with $.apis[0].routes[0]"),
                ("$.apis[0].routes[4]", "conflicts with $.apis[0].routes[3]"),
                ("$.apis[0].routes[6]", "conflicts with $.apis[0].routes[5]"),
                ("$.apis[1].routes[1]", "conflicts with $.apis[1].routes[0]"),
            ],
        ),
    ];
    run_table(cases);
}

/// A conflict between two routes that both serve every version of an API is one problem
/// with the config, so it should be reported once, not once per version (the message does
/// not even say which version it is about, so the operator sees identical lines).
#[test]
fn a_conflict_shared_by_every_version_is_reported_once() {
    assert_errors(
        "conflict in a two-version API",
        &with_apis(json!([{
            "name": "a", "base_path": "/a",
            "versions": [{ "name": "v1", "pool": "p" }, { "name": "v2", "pool": "p" }],
            "routes": [
                { "name": "one", "path": "/x" },
                { "name": "two", "path": "/x" }
            ]
        }])),
        &[("$.apis[0].routes[1]", "conflicts with $.apis[0].routes[0]")],
    );
}

/// A route that lists a version twice is a config error, but it should say so, not claim
/// that the route conflicts with itself.
#[test]
fn a_version_listed_twice_in_a_route_is_named_as_such() {
    assert_errors(
        "route versions with a repeat",
        &with_apis(json!([{
            "name": "a", "base_path": "/a",
            "versions": [{ "name": "v1", "pool": "p" }, { "name": "v2", "pool": "p" }],
            "routes": [{ "name": "one", "path": "/x", "versions": ["v1", "v1"] }]
        }])),
        &[("$.apis[0].routes[0].versions[1]", "twice")],
    );
}

/// JSON objects with a repeated key are ambiguous (RFC 8259 §4): the document goes through
/// `serde_json::Value` first, which keeps the last value silently, so a pool defined twice
/// or a route with two `path`s compiles with half of it thrown away. Serde's own derive
/// reports `duplicate field` when it sees the text, but never sees it here.
#[test]
fn repeated_keys_are_rejected() {
    let text = r#"{
        "pools": {
            "p": { "instances": [{ "url": "http://first:1" }] },
            "p": { "instances": [{ "url": "http://second:1" }] }
        },
        "apis": [{ "name": "a", "base_path": "/a", "pool": "p",
                   "routes": [{ "name": "r", "path": "/x", "path": "/y" }] }]
    }"#;
    let errors = compile_errors("repeated keys", text);
    assert!(
        errors
            .iter()
            .any(|e| e.path.starts_with("$.pools") && e.message.contains("duplicate")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.path.starts_with("$.apis[0].routes[0]") && e.message.contains("duplicate")),
        "{errors:#?}"
    );
}

// === valid documents ===

#[test]
fn valid_documents_table() {
    let cases: Vec<(&str, String, usize)> = vec![
        (
            "different methods on the same path",
            one_api(json!([
                { "name": "get", "methods": ["GET"], "path": "/users/{id}" },
                { "name": "put", "methods": ["PUT", "PATCH"], "path": "/users/{id}" },
                { "name": "delete", "methods": ["DELETE"], "path": "/users/{other}" },
                { "name": "post", "methods": ["POST"], "path": "/users/{id}" }
            ])),
            4,
        ),
        (
            "literal next to parameter next to wildcard",
            one_api(json!([
                { "name": "me", "methods": ["GET"], "path": "/users/me" },
                { "name": "by-id", "methods": ["GET"], "path": "/users/{id}" },
                { "name": "rest", "methods": ["GET"], "path": "/users/{*rest}" }
            ])),
            3,
        ),
        (
            "exact host, wildcard host and no host on the same path",
            one_api(json!([
                { "name": "exact", "path": "/x", "host": "api.example.com" },
                { "name": "wild", "path": "/x", "host": "*.example.com" },
                { "name": "longer-wild", "path": "/x", "host": "*.eu.example.com" },
                { "name": "other-wild", "path": "/x", "host": "*.example.org" },
                { "name": "none", "path": "/x" }
            ])),
            5,
        ),
        (
            "predicates that exclude each other",
            one_api(json!([
                { "name": "v1", "path": "/x", "headers": [{ "name": "x-v", "equals": "1" }] },
                { "name": "v2", "path": "/x", "headers": [{ "name": "x-v", "equals": "2" }] },
                { "name": "absent", "path": "/x", "headers": [{ "name": "X-V", "present": false }] },
                { "name": "q-present", "path": "/y", "query": [{ "name": "debug", "present": true }] },
                { "name": "q-absent", "path": "/y", "query": [{ "name": "debug", "present": false }] }
            ])),
            5,
        ),
        (
            "nested predicates (one route's set includes the other's)",
            one_api(json!([
                { "name": "plain", "path": "/x" },
                { "name": "tenant", "path": "/x", "headers": [{ "name": "x-tenant", "equals": "acme" }] },
                { "name": "tenant-beta", "path": "/x",
                  "headers": [{ "name": "x-tenant", "equals": "acme" }],
                  "query": [{ "name": "beta", "present": true }] }
            ])),
            3,
        ),
        (
            "two APIs with the same base path on disjoint environment hosts",
            with_apis(json!([
                { "name": "a", "base_path": "/shared", "pool": "p",
                  "environments": [{ "name": "prod", "hosts": ["a.example.com", "*.a.example.net"] }],
                  "routes": [{ "name": "r", "path": "/x" }] },
                { "name": "b", "base_path": "/shared", "pool": "p",
                  "environments": [
                      { "name": "prod", "hosts": ["b.example.com"] },
                      { "name": "dev", "hosts": ["*.b.example.net"] }
                  ],
                  "routes": [{ "name": "r", "path": "/x" }] }
            ])),
            2,
        ),
        (
            "the same path in different versions",
            with_apis(json!([{
                "name": "a", "base_path": "/a",
                "versions": [{ "name": "v1", "pool": "p" }, { "name": "v2", "pool": "p" }],
                "routes": [
                    { "name": "old", "path": "/x", "versions": ["v1"] },
                    { "name": "new", "path": "/x", "versions": ["v2"] }
                ]
            }])),
            2,
        ),
        (
            "limits at their boundaries",
            json!({
                "gateway": { "policies": { "upstream": { "timeout_ms": 1 } } },
                "pools": {
                    "p": { "instances": [{ "url": "https://a.example.com/base/", "weight": 1000 },
                                         { "url": "http://[::1]:9000", "weight": 1 }],
                           "timeout_ms": 300000, "balance": "random" }
                },
                "apis": [{
                    "name": "a", "base_path": "/", "pool": "p",
                    "routes": [{ "name": "r", "path": "/{*rest}", "methods": ["*"],
                                 "policies": { "upstream": { "timeout_ms": 300000,
                                                             "replay_buffer_bytes": 1048576 } } }]
                }]
            })
            .to_string(),
            1,
        ),
        (
            "$schema and an empty gateway",
            json!({ "$schema": "./schema.json", "gateway": {}, "pools": {}, "apis": [] })
                .to_string(),
            0,
        ),
    ];
    for (name, text, routes) in &cases {
        match compile(text, "v7") {
            Ok(cfg) => {
                assert_eq!(cfg.routes().len(), *routes, "[{name}] route count");
                assert_eq!(cfg.version(), "v7", "[{name}]");
            }
            Err(e) => panic!("[{name}] should compile, got:\n{e}"),
        }
    }
}

#[test]
fn the_demo_config_compiles() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/demo-config.json"
    ))
    .unwrap();
    let cfg = compile(&text, "demo").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.apis().len(), 2);
    assert_eq!(cfg.routes().len(), 8);
    assert_eq!(cfg.pools().len(), 3);
}

// === errors never stop at the first ===

#[test]
fn every_semantic_error_is_reported_not_just_the_first() {
    let text = json!({
        "gateway": { "strip_request_headers": ["ok", "not ok"] },
        "pools": {
            "p": pool(),
            "bad-url": { "instances": [{ "url": "gopher://x" }] },
            "zero": { "instances": [{ "url": "http://z:1", "weight": 0 }], "timeout_ms": 0 },
            "empty": { "instances": [] }
        },
        "apis": [
            {
                "name": "users", "base_path": "/users",
                "versions": [{ "name": "v1", "pool": "missing-pool" }, { "name": "v2", "pool": "p" }],
                "environments": [{ "name": "a" }, { "name": "b" }],
                "routes": [
                    { "name": "r", "path": "no-slash" },
                    { "name": "r", "path": "/ok" },
                    { "name": "m", "path": "/m", "methods": ["get"] },
                    { "name": "v", "path": "/v", "versions": ["v3"] },
                    { "name": "u", "path": "/u/{id}", "upstream_path": "/u/{uid}" },
                    { "name": "c1", "path": "/c", "versions": ["v2"] },
                    { "name": "c2", "path": "/c", "versions": ["v2"] }
                ]
            },
            { "name": "users", "base_path": "/other", "routes": [] }
        ]
    })
    .to_string();
    let expected = [
        ("$.gateway.strip_request_headers[1]", "is not a header name"),
        (
            "$.pools.bad-url.instances[0].url",
            "scheme must be http or https",
        ),
        (
            "$.pools.zero.instances[0].weight",
            "weight must be 1 to 1000",
        ),
        ("$.pools.zero.timeout_ms", "a timeout is 1 to 300000 ms"),
        ("$.pools.empty.instances", "at least one instance"),
        (
            "$.apis[0].versions[0].pool",
            "no pool named \"missing-pool\"",
        ),
        ("$.apis[0].environments[1].hosts", "only one environment"),
        ("$.apis[0].routes[0].path", "must start with '/'"),
        ("$.apis[0].routes[1].name", "used twice"),
        ("$.apis[0].routes[2].methods", "is not a method"),
        ("$.apis[0].routes[3].versions[0]", "no version \"v3\""),
        (
            "$.apis[0].routes[4].upstream_path",
            "{uid} is not a parameter",
        ),
        ("$.apis[0].routes[6]", CONFLICT),
        ("$.apis[1].name", "used twice"),
        ("$.apis[1]", "needs `versions`"),
    ];
    assert!(expected.len() >= 5);
    assert_errors("many semantic errors", &text, &expected);
}

#[test]
fn errors_display_one_per_line_with_their_paths() {
    let err = compile(
        &one_api(json!([
            { "name": "a", "path": "x" },
            { "name": "b", "path": "/b", "methods": ["NOPE"] }
        ])),
        "t",
    )
    .unwrap_err();
    let text = err.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("$.apis[0].routes[0].path: "), "{text}");
    assert!(
        lines[1].starts_with("$.apis[0].routes[1].methods: "),
        "{text}"
    );
    // The errors serialize as a JSON array of {path, message} (the CLI and admin API use it).
    let v = serde_json::to_value(&err).unwrap();
    assert_eq!(v[0]["path"], "$.apis[0].routes[0].path");
    assert!(v[1]["message"].as_str().unwrap().contains("NOPE"));
}
