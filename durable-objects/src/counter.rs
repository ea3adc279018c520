//! The rate-limit counter object. One instance per counter key (`id_from_name(key)`), so every
//! request for a key, from every edge location, goes through one single-threaded object.
//!
//! Exactness: the state is loaded once into memory; each call then checks and updates it
//! synchronously (no `await` between reading and writing the in-memory state), so concurrent
//! calls cannot both see the same remaining count. The new state is written with an awaited
//! `storage.put`; the runtime's output gate holds the reply until the write is durable, so an
//! admitted request is never forgotten by a restart. A state written by another algorithm or
//! with other parameters is reset by the core (`CounterState`), never misread.

use edgegate_core::platform::CounterCall;
use edgegate_core::ratelimit::CounterState;
use std::cell::RefCell;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

/// The Durable Object namespace binding the worker uses (wrangler.toml).
pub const COUNTER_BINDING: &str = "EDGEGATE_COUNTERS";
const STATE_KEY: &str = "state";

/// One rate-limit counter. Requests: `POST` with a [`CounterCall`] as JSON; answers a
/// `CounterReply` as JSON, or 400 with the reason for a call that does not parse.
#[durable_object]
pub struct RateCounter {
    state: State,
    counter: RefCell<Option<CounterState>>,
}

impl DurableObject for RateCounter {
    fn new(state: State, _env: Env) -> Self {
        RateCounter {
            state,
            counter: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let call: CounterCall = match req.json().await {
            Ok(c) => c,
            Err(e) => return Response::error(format!("bad counter call: {e}"), 400),
        };
        if self.counter.borrow().is_none() {
            // Input gates hold other events while this read is in flight; a second call that
            // still got here first finds the state loaded below and keeps it.
            let stored: Option<CounterState> = self.state.storage().get(STATE_KEY).await?;
            let mut slot = self.counter.borrow_mut();
            if slot.is_none() {
                *slot = Some(stored.unwrap_or_default());
            }
        }
        let now_ms = worker::Date::now().as_millis();
        let (reply, changed) = {
            let mut slot = self.counter.borrow_mut();
            call.apply(slot.get_or_insert_with(CounterState::default), now_ms)
        };
        if changed {
            let snapshot = (*self.counter.borrow()).unwrap_or_default();
            self.state.storage().put(STATE_KEY, snapshot).await?;
        }
        Response::from_json(&reply)
    }
}
