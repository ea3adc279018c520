//! Where the fixed cost of compiling an ABAC rule goes (timing only; run with
//! `cargo test -p edgegate-core --release --test cedar_cost -- --ignored --nocapture`).

use cedar_policy::{PolicySet, Schema, ValidationMode, Validator};
use edgegate_core::authz::cedar::schema_text;
use edgegate_core::authz::ClaimPath;
use std::str::FromStr;
use std::time::Instant;

fn policies(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "@id(\"p{i}\")\npermit(principal, action in [Edgegate::Action::\"GET\"], resource) when {{ resource.api == \"api{i}\" && principal.roles.contains(\"viewer\") && context.headers has \"x-tenant\" && context.headers[\"x-tenant\"] == \"t1\" }};\n"
        ));
    }
    s
}

// A timing test measures wall time on purpose (the core itself never reads the clock).
#[allow(clippy::disallowed_methods)]
fn time<T>(label: &str, n: u32, mut f: impl FnMut() -> T) {
    let _ = f();
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(f());
    }
    eprintln!("{label}: {:?}", t.elapsed() / n);
}

#[test]
#[ignore = "timing"]
fn cedar_compile_cost() {
    let claims = vec![ClaimPath::parse("tenant").expect("path")];
    let headers = vec!["x-tenant".to_string()];
    let text = schema_text(&claims, &headers);
    for n in [1, 20] {
        let p = policies(n);
        eprintln!("--- {n} policies");
        time("schema text -> Schema", 50, || {
            Schema::from_cedarschema_str(&text).expect("schema")
        });
        time("policies parse", 50, || {
            PolicySet::from_str(&p).expect("parse")
        });
        let schema = Schema::from_cedarschema_str(&text).expect("schema").0;
        let set = PolicySet::from_str(&p).expect("parse");
        time("validator new", 50, || Validator::new(schema.clone()));
        time("validate", 50, || {
            Validator::new(schema.clone())
                .validate(&set, ValidationMode::Strict)
                .validation_passed()
        });
        time("compile_policies", 50, || {
            edgegate_core::authz::cedar::compile_policies(&p, &claims, &headers).expect("ok")
        });
        time("parse_validated_policies", 50, || {
            edgegate_core::authz::cedar::parse_validated_policies(&p).expect("ok")
        });
    }
}
