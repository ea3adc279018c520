//! The rate-limit counter object. One instance per counter key (`id_from_name(key)`), so every
//! request for a key, from every edge location, goes through one single-threaded object, and
//! applies the core's `CounterCall` to its `CounterState` exactly (see [`crate::json_state`]).
//! A state written by another algorithm or with other parameters is reset by the core
//! (`CounterState`), never misread.

use crate::json_state::JsonState;
use edgegate_core::platform::CounterCall;
use edgegate_core::ratelimit::CounterState;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

/// The Durable Object namespace binding the worker uses (wrangler.toml).
pub const COUNTER_BINDING: &str = "EDGEGATE_COUNTERS";

/// One rate-limit counter. Requests: `POST` with a [`CounterCall`] as JSON; answers a
/// `CounterReply` as JSON, or 400 with the reason for a call that does not parse.
#[durable_object]
pub struct RateCounter {
    state: State,
    counter: JsonState<CounterState>,
}

impl DurableObject for RateCounter {
    fn new(state: State, _env: Env) -> Self {
        RateCounter {
            state,
            counter: JsonState::default(),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        self.counter.serve::<CounterCall>(&self.state, req).await
    }
}
