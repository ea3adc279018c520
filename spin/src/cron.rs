//! The spin-trigger-cron plugin's entry point: the same component also exports
//! `handle-cron-event` (world `fermyon:spin-cron@2.0.0`), so a `[[trigger.cron]]` in spin.toml
//! can name it. Each tick runs the core's [`Gateway::scheduled_run`] — the Workers cron's work
//! and the lazy tick's: config pointer and overrides, the Registry sync (its backoff applies),
//! the snapshot, the JWKS prefetch — and logs the same `config_check` line with
//! `"trigger": "cron"`.
//!
//! The plugin's Rust SDK (`spin-cron-sdk`) is not on crates.io, so the world is declared here;
//! it is the plugin's whole interface.

use crate::platform::SpinPlatform;
use edgegate_core::access_log::event_line;
use edgegate_core::platform::{Clock, Log};

mod bindings {
    wit_bindgen::generate!({
        inline: r#"
            package fermyon:spin-cron@2.0.0;

            interface cron-types {
                record metadata {
                    timestamp: u64,
                }

                variant error {
                    other(string),
                }
            }

            world spin-cron {
                use cron-types.{metadata, error};
                export handle-cron-event: func(metadata: metadata) -> result<_, error>;
            }
        "#,
        world: "spin-cron",
    });
}

use bindings::fermyon::spin_cron::cron_types::{Error, Metadata};

struct Cron;

impl bindings::Guest for Cron {
    /// One cron tick: the scheduled run, on a fresh instance. Never fails the tick: what went
    /// wrong (a Registry outage, an IdP down) is in the `config_check` line and the sync's own
    /// events, and the next tick tries again.
    fn handle_cron_event(metadata: Metadata) -> Result<(), Error> {
        spin_sdk::http::run(async move {
            let platform = SpinPlatform::new();
            let gateway = crate::gateway(&platform);
            let report = gateway.scheduled_run(&platform).await;
            let mut fields = report.fields();
            if let Some(map) = fields.as_object_mut() {
                map.insert("trigger".into(), serde_json::json!("cron"));
                map.insert(
                    "cron_timestamp".into(),
                    serde_json::json!(metadata.timestamp),
                );
            }
            platform.log_line(&event_line("config_check", platform.now_ms(), fields));
        });
        Ok(())
    }
}

bindings::export!(Cron with_types_in bindings);
