//! What both objects share: one state value kept in memory, changed by calls applied
//! synchronously, and stored as a JSON string.
//!
//! Exactness: the state is loaded once into memory; each call then reads and updates it with
//! no `await` in between, so concurrent calls are applied one after the other. A changed state
//! is written with storage's raw JS `put`, issued before the reply and not awaited: the
//! runtime's output gate holds the reply (and every later one) until the write is durable,
//! and a failed write breaks the object, so no reply reports a state that was not stored.
//! (workers-rs `Storage::put` would write nothing unless awaited.)

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::cell::RefCell;
use worker::wasm_bindgen::JsValue;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Request, Response, Result, State};

const STATE_KEY: &str = "state";

/// A call an object applies to its state (the core's `CounterCall`, `ControlCall`).
pub(crate) trait StateCall: DeserializeOwned {
    /// The object's state.
    type State: Default + Serialize + DeserializeOwned;
    /// The answer to the caller.
    type Reply: Serialize;
    /// Applies the call at `now_ms`: the reply and whether the state changed.
    fn apply_to(&self, state: &mut Self::State, now_ms: u64) -> (Self::Reply, bool);
}

impl StateCall for edgegate_core::platform::CounterCall {
    type State = edgegate_core::ratelimit::CounterState;
    type Reply = edgegate_core::platform::CounterReply;
    fn apply_to(&self, state: &mut Self::State, now_ms: u64) -> (Self::Reply, bool) {
        self.apply(state, now_ms)
    }
}

impl StateCall for edgegate_core::control::ControlCall {
    type State = edgegate_core::control::ControlState;
    type Reply = edgegate_core::control::ControlReply;
    fn apply_to(&self, state: &mut Self::State, now_ms: u64) -> (Self::Reply, bool) {
        self.apply(state, now_ms)
    }
}

/// An object's in-memory state (loaded on its first call).
pub(crate) struct JsonState<S>(RefCell<Option<S>>);

impl<S> Default for JsonState<S> {
    fn default() -> Self {
        JsonState(RefCell::new(None))
    }
}

impl<S: Default + Serialize + DeserializeOwned> JsonState<S> {
    /// Answers one request: `POST` with a call as JSON → the reply as JSON (no content type:
    /// only the worker reads it); 400 with the reason for a call that does not parse.
    ///
    /// Errors: storage failures (the runtime answers 500 and the worker's policy decides).
    pub(crate) async fn serve<C: StateCall<State = S>>(
        &self,
        state: &State,
        mut req: Request,
    ) -> Result<Response> {
        let call: C = match req.json().await {
            Ok(c) => c,
            Err(e) => return Response::error(format!("bad call: {e}"), 400),
        };
        if self.0.borrow().is_none() {
            // Input gates hold other events while this read is in flight; a second call that
            // still got here first finds the state loaded below and keeps it.
            let stored = load::<S>(state).await?;
            let mut slot = self.0.borrow_mut();
            if slot.is_none() {
                *slot = Some(stored.unwrap_or_default());
            }
        }
        let now_ms = worker::Date::now().as_millis();
        let mut slot = self.0.borrow_mut();
        let current = slot.get_or_insert_with(S::default);
        let (reply, changed) = call.apply_to(current, now_ms);
        if changed {
            let json = serde_json::to_string(current)?;
            let _pending = state
                .storage()
                .as_raw()
                .put(STATE_KEY, JsValue::from_str(&json))
                .map_err(worker::Error::from)?;
        }
        drop(slot);
        Response::ok(serde_json::to_string(&reply)?)
    }
}

/// The stored state: a JSON string (as written by the raw `put`), or an object an earlier
/// version stored through serde-wasm-bindgen.
async fn load<S: DeserializeOwned>(state: &State) -> Result<Option<S>> {
    let storage = state.storage();
    let raw = JsFuture::from(storage.as_raw().get(STATE_KEY)?).await?;
    if let Some(json) = raw.as_string() {
        return Ok(Some(serde_json::from_str(&json)?));
    }
    if raw.is_undefined() {
        return Ok(None);
    }
    storage.get(STATE_KEY).await
}
