//! edgegate's Durable Object classes. The worker cdylib re-exports them (`pub use`), as a class
//! must be exported from the same wasm as the worker that binds it.
//!
//! - [`RateCounter`]: one rate-limit counter (one object per counter key): an atomic
//!   check-and-consume over the core's algorithms ([`edgegate_core::ratelimit`]).

mod counter;

pub use counter::{RateCounter, COUNTER_BINDING};
