//! # edgegate-core
//!
//! Everything that decides, and nothing that does I/O: config compilation, routing, load
//! balancing, header hygiene, the error table, the access-log record, and the async pipeline
//! driver written against small platform traits ([`platform`]). The Cloudflare Worker and the
//! Spin component implement those traits; `testing::FakePlatform` (feature `testing`)
//! implements them in memory so the whole pipeline runs under `cargo test`.
//!
//! The core never reads a clock (time comes from [`platform::Clock`]), never awaits anything
//! but the platform, and carries no `Send` bounds: Workers and Spin are single-threaded.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod access_log;
pub mod admin;
pub mod auth;
pub mod authz;
pub mod balancer;
pub mod bounded;
pub mod bundle;
pub mod config;
pub mod config_store;
pub mod control;
pub mod headers;
pub mod path;
pub mod pipeline;
pub mod platform;
pub mod problem;
pub mod ratelimit;
pub mod route;
pub mod single_flight;
pub mod snapshot;
#[cfg(feature = "testing")]
pub mod testing;
pub mod trace;
