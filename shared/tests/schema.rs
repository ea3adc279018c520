//! The published JSON Schema (`schema/edgegate-config.schema.json`) is exactly what the config
//! types generate. Regenerate with `UPDATE_SCHEMA=1 cargo test -p edgegate-core --test schema`.

use edgegate_core::config::json_schema;

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../schema/edgegate-config.schema.json"
);

#[test]
fn published_schema_is_in_sync_with_the_types() {
    let generated = serde_json::to_string_pretty(&json_schema()).unwrap() + "\n";
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(PATH, &generated).unwrap();
    }
    let published = std::fs::read_to_string(PATH).unwrap_or_default();
    assert!(
        published == generated,
        "schema/edgegate-config.schema.json is out of date: run UPDATE_SCHEMA=1 cargo test -p edgegate-core --test schema"
    );
}

#[test]
fn schema_rejects_unknown_fields_like_the_compiler() {
    let schema = json_schema();
    assert_eq!(schema["additionalProperties"], false);
    let route = &schema["$defs"]["RouteSpec"];
    assert_eq!(route["additionalProperties"], false);
    assert!(route["required"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r == "path"));
}
