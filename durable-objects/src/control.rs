//! The emergency-override object: one instance for the whole deployment (named
//! `edgegate_core::control::OBJECT_NAME`, "global"), holding the IP block list and the
//! disabled routes. Every isolate re-reads it every `EDGEGATE_CONTROL_REFRESH_MS`; the admin
//! API changes it.
//!
//! As the rate-limit counter: the state is loaded once into memory, each call is applied
//! synchronously (`ControlCall::apply`, no `await` between reading and writing the state),
//! and a changed state is written with storage's raw JS `put`, issued before the reply and not
//! awaited: the output gate holds the reply until the write is durable, so no admin call is
//! told "changed" for a change a restart could lose.

use edgegate_core::control::{ControlCall, ControlState};
use std::cell::RefCell;
use worker::wasm_bindgen::JsValue;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

/// The Durable Object namespace binding the worker uses (wrangler.toml).
pub const CONTROL_BINDING: &str = "EDGEGATE_CONTROL";
const STATE_KEY: &str = "state";

/// The emergency overrides. Requests: `POST` with a `ControlCall` as JSON; answers a
/// `ControlReply` as JSON, or 400 with the reason for a call that does not parse.
#[durable_object]
pub struct Control {
    state: State,
    overrides: RefCell<Option<ControlState>>,
}

impl Control {
    /// The stored state (a JSON string), if any.
    async fn load(&self) -> Result<Option<ControlState>> {
        let raw = JsFuture::from(self.state.storage().as_raw().get(STATE_KEY)?).await?;
        match raw.as_string() {
            Some(json) => Ok(Some(serde_json::from_str(&json)?)),
            None => Ok(None),
        }
    }
}

impl DurableObject for Control {
    fn new(state: State, _env: Env) -> Self {
        Control {
            state,
            overrides: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let call: ControlCall = match req.json().await {
            Ok(c) => c,
            Err(e) => return Response::error(format!("bad control call: {e}"), 400),
        };
        if self.overrides.borrow().is_none() {
            let stored = self.load().await?;
            let mut slot = self.overrides.borrow_mut();
            if slot.is_none() {
                *slot = Some(stored.unwrap_or_default());
            }
        }
        let now_ms = worker::Date::now().as_millis();
        let (reply, changed) = {
            let mut slot = self.overrides.borrow_mut();
            call.apply(slot.get_or_insert_with(ControlState::default), now_ms)
        };
        if changed {
            let json = serde_json::to_string(&reply.state)?;
            // Not awaited on purpose: see the module doc (output gate).
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
