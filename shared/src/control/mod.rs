//! Emergency overrides: blocked client addresses and disabled routes, applied by every
//! isolate within seconds.
//!
//! The state lives in one Durable Object (`Control`, named [`OBJECT_NAME`]), not in KV: a KV
//! write can take up to 60 s to reach every location, while each isolate re-reads the object
//! every `EDGEGATE_CONTROL_REFRESH_MS` (default 3000 ms), so a change applies everywhere
//! within that interval plus one round trip ([`ControlCache`]). Every change goes through
//! [`ControlCall::apply`], shared by the object and the fake platform.
//!
//! In the pipeline: a client whose address is blocked gets 403 `ip_blocked` before routing;
//! a request that routes to a disabled route gets 503 `route_disabled`; both write an audit
//! line. The admin API is not subject to either (an operator cannot lock themselves out).

mod cache;
mod state;

pub use cache::ControlCache;
pub use state::{
    is_route_name, ControlCall, ControlOutcome, ControlReply, ControlState, DisabledRoute, IpBlock,
    MAX_BLOCKS, MAX_DISABLED_ROUTES, MAX_REASON_CHARS, MAX_TTL_S, OBJECT_NAME,
};
