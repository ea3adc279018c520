//! The rate-limit counter object. One instance per counter key (`id_from_name(key)`), so every
//! request for a key, from every edge location, goes through one single-threaded object.
//!
//! Exactness: the state is loaded once into memory; each call then checks and updates it
//! synchronously (no `await` between reading and writing the in-memory state), so concurrent
//! calls cannot both see the same remaining count. The new state is written (as a JSON string)
//! with storage's JS `put`, issued before the reply and not awaited: the runtime's output gate
//! holds the reply until the write is durable, so an admitted request is never forgotten by a
//! restart. (workers-rs `Storage::put` would write nothing unless awaited.) A state written by
//! another algorithm or with other parameters is reset by the core (`CounterState`), never
//! misread.

use edgegate_core::platform::CounterCall;
use edgegate_core::ratelimit::CounterState;
use std::cell::RefCell;
use worker::wasm_bindgen::JsValue;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

/// The Durable Object namespace binding the worker uses (wrangler.toml).
pub const COUNTER_BINDING: &str = "EDGEGATE_COUNTERS";
const STATE_KEY: &str = "state";

/// One rate-limit counter. Requests: `POST` with a [`CounterCall`] as JSON; answers a
/// `CounterReply` as JSON (no content type: only the worker reads it), or 400 with the reason
/// for a call that does not parse.
#[durable_object]
pub struct RateCounter {
    state: State,
    counter: RefCell<Option<CounterState>>,
}

impl RateCounter {
    /// The stored state: a JSON string (as written since the raw `put`), or the object an
    /// earlier version stored through serde-wasm-bindgen.
    async fn load(&self) -> Result<Option<CounterState>> {
        let storage = self.state.storage();
        let raw = JsFuture::from(storage.as_raw().get(STATE_KEY)?).await?;
        if let Some(json) = raw.as_string() {
            return Ok(Some(serde_json::from_str(&json)?));
        }
        if raw.is_undefined() {
            return Ok(None);
        }
        storage.get(STATE_KEY).await
    }
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
            let stored = self.load().await?;
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
            let json = serde_json::to_string(&snapshot)?;
            // The raw JS `put`, not awaited: the write is issued now and the output gate holds
            // this reply (and every later one) until it is durable; a failed write breaks the
            // object, so no reply ever reports a state that was not stored.
            let _pending = self
                .state
                .storage()
                .as_raw()
                .put(STATE_KEY, JsValue::from_str(&json))
                .map_err(worker::Error::from)?;
        }
        Response::ok(serde_json::to_string(&reply)?)
    }
}
