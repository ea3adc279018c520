//! The shipped demo config compiles and routes the spec's example.

use edgegate_core::config::compile;
use edgegate_core::headers::HeaderList;
use edgegate_core::route::{QueryView, RouteRequest};

#[test]
fn demo_config_compiles_and_routes_the_spec_example() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/demo-config.json"
    ))
    .unwrap();
    let cfg = compile(&text, "demo").unwrap_or_else(|e| panic!("{e}"));
    let headers = HeaderList::new();
    let req = RouteRequest {
        method: "GET",
        host: "localhost",
        path: "/users-api/v2/users/42",
        headers: &headers,
        query: QueryView::new(""),
    };
    let r = cfg.resolve(&req).unwrap();
    assert_eq!(
        (
            r.api.name.as_str(),
            r.route.name.as_str(),
            r.version,
            r.upstream_path.as_str()
        ),
        ("users", "get-user", Some("v2"), "/users/42")
    );
    assert_eq!(r.pool.name, "users-v2");
    assert_eq!(r.timeout_ms, 5000);
}
