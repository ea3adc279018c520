//! edgegate's Durable Object classes. The worker cdylib re-exports them (`pub use`), as a class
//! must be exported from the same wasm as the worker that binds it.
//!
//! - [`RateCounter`]: one rate-limit counter (one object per counter key): an atomic
//!   check-and-consume over the core's algorithms ([`edgegate_core::ratelimit`]).
//! - [`Control`]: the emergency overrides (one object, "global"): IP blocks and disabled
//!   routes ([`edgegate_core::control`]).

mod control;
mod counter;
mod json_state;

pub use control::{Control, CONTROL_BINDING};
pub use counter::{RateCounter, COUNTER_BINDING};
