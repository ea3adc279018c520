//! The emergency-override object: one instance for the whole deployment (named
//! `edgegate_core::control::OBJECT_NAME`, "global"), holding the IP block list and the
//! disabled routes. Every isolate re-reads it every `EDGEGATE_CONTROL_REFRESH_MS`; the admin
//! API changes it.
//!
//! The state is the core's `ControlState`, changed by `ControlCall`s applied exactly and
//! stored before the reply (see [`crate::json_state`]): no admin call is told "changed" for a
//! change a restart could lose.

use crate::json_state::JsonState;
use edgegate_core::control::{ControlCall, ControlState};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

/// The Durable Object namespace binding the worker uses (wrangler.toml).
pub const CONTROL_BINDING: &str = "EDGEGATE_CONTROL";

/// The emergency overrides. Requests: `POST` with a `ControlCall` as JSON; answers a
/// `ControlReply` as JSON, or 400 with the reason for a call that does not parse.
#[durable_object]
pub struct Control {
    state: State,
    overrides: JsonState<ControlState>,
}

impl DurableObject for Control {
    fn new(state: State, _env: Env) -> Self {
        Control {
            state,
            overrides: JsonState::default(),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        self.overrides.serve::<ControlCall>(&self.state, req).await
    }
}
