//! edgegate's Spin test host: runs an unmodified spin-sdk 5.2.0 component (`wasm32-wasip2`,
//! `#[http_component]`) behind an HTTP listener on 127.0.0.1, with the Spin host interfaces
//! edgegate uses — `fermyon:spin/key-value@2.0.0`, `fermyon:spin/variables@2.0.0`,
//! `fermyon:spin/redis@2.0.0` against a real redis-server — and outbound `wasi:http` limited
//! to `allowed_outbound_hosts`. Test-only: `spin up` is the production runtime; this host
//! exists because no Spin CLI can be installed on the project's machines.
//!
//! README.md beside this crate describes the command line, the admin endpoint and what
//! differs from `spin up`.

// One `unsafe` call: loading a compiled component from the host's own cache (compile.rs).
#![deny(unsafe_code)]

pub mod admin;
mod bindings;
pub mod compile;
pub mod config;
pub mod kv;
pub mod outbound;
pub mod resp;
pub mod send;
pub mod server;
pub mod state;
pub mod variables;
