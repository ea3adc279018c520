//! The isolate's copy of the emergency overrides.

use super::{ControlCall, ControlState};
use crate::access_log::event_line;
use crate::config_store::refresh_due;
use crate::platform::{Clock, Control, Log};
use crate::single_flight::SingleFlight;
use serde_json::json;
use std::cell::RefCell;
use std::rc::Rc;

/// How often a request waiting for a cold isolate's first read checks whether it is done.
const COLD_TICK_MS: u64 = 5;
/// How many ticks it waits at most (then it serves with whatever state there is).
const COLD_MAX_TICKS: u32 = 400;
/// A held state read longer ago than this many refresh intervals is too old to serve
/// without reading first, even in background mode (see [`ControlCache`]).
const STALE_INTERVALS: u64 = 2;

#[derive(Default)]
struct Inner {
    current: Option<Rc<ControlState>>,
    checked_at: Option<u64>,
    /// When the last read (or install) ended, reached or not: the age of what is held.
    read_at: Option<u64>,
    failures: u64,
    /// Background mode: a warm re-read is due and no host task has taken it yet.
    wanted: bool,
}

/// The overrides as this isolate knows them, re-read from the control object every
/// `refresh_ms` (EDGEGATE_CONTROL_REFRESH_MS, default 3000).
///
/// So a change reaches every isolate within 2 × `refresh_ms` + one round trip to the
/// control object (6 s + a round trip with the default): an isolate that serves no request in
/// between applies it on its next request, which reads first.
///
/// - **Cold isolate** (nothing read yet): requests wait for the first read, shared by all of
///   them (single-flight): no request is served before the overrides are known. If the object
///   cannot be reached, they are served without overrides (fail open: one object must not be
///   able to stop all traffic), a `control_unavailable` event is logged, and the next request
///   after `refresh_ms` tries again.
/// - **Warm isolate**: one request per interval re-reads; the others use the state they
///   have without waiting. When the object cannot be reached, the last known state keeps
///   applying and the failure is logged (`control_unavailable`, with a count).
/// - **Warm isolate, background mode** ([`ControlCache::with_background_refresh`], for hosts
///   that can run work after the response, as Workers' `waitUntil`): a *slightly stale*
///   state (read between `refresh_ms` and 2 × `refresh_ms` ago) is served at once: the
///   request that finds a re-read due serves on it, and the host runs
///   [`ControlCache::take_wanted`] + [`ControlCache::refresh`] after responding.
/// - **Stale isolate** (held state read 2 × `refresh_ms` ago or more, in either mode: an
///   isolate that was idle, or whose host never ran the background read): treated like a
///   cold one: requests wait for one shared read (single-flight) before being served, so a
///   block made during the idle period applies to the first request after it. Unreachable
///   object: the last known state keeps applying (logged), and the failed read counts as
///   the read for the age, so requests do not each retry inline.
///
/// Why 2 × `refresh_ms`: a busy isolate in background mode serves on a state up to
/// `refresh_ms` + one background round trip old, which stays under the bound, so such an
/// isolate never waits; the bound is still within the "applied everywhere within 10 s"
/// requirement at the default 3 s interval.
pub struct ControlCache {
    refresh_ms: u64,
    background: bool,
    inner: RefCell<Inner>,
    flight: SingleFlight,
}

impl ControlCache {
    /// An empty (cold) cache re-reading every `refresh_ms`.
    pub fn new(refresh_ms: u64) -> Self {
        ControlCache {
            refresh_ms,
            background: false,
            inner: RefCell::new(Inner::default()),
            flight: SingleFlight::new(),
        }
    }

    /// This cache leaving warm re-reads to the host (see the type's doc): the host must call
    /// [`ControlCache::take_wanted`] after each request and, when it returns true, run
    /// [`ControlCache::refresh`] (after the response), or the state is never re-read.
    pub fn with_background_refresh(mut self) -> Self {
        self.background = true;
        self
    }

    /// In background mode: true (once) when a warm re-read became due during a request; the
    /// host then runs [`ControlCache::refresh`] after the response. Always false otherwise.
    pub fn take_wanted(&self) -> bool {
        std::mem::take(&mut self.inner.borrow_mut().wanted)
    }

    /// The re-read interval in ms.
    pub fn refresh_ms(&self) -> u64 {
        self.refresh_ms
    }

    /// The overrides for the current request, re-reading first when the interval has passed
    /// (see the type's doc for who waits). `None` only while the object has never been
    /// reached (the request runs without overrides).
    pub async fn current<P: Control + Clock + Log>(&self, p: &P) -> Option<Rc<ControlState>> {
        let now = p.now_ms();
        let (current, due, stale) = {
            let s = self.inner.borrow();
            (
                s.current.clone(),
                refresh_due(s.checked_at, now, self.refresh_ms),
                refresh_due(
                    s.read_at,
                    now,
                    self.refresh_ms.saturating_mul(STALE_INTERVALS),
                ),
            )
        };
        if !due && !stale {
            return current;
        }
        if current.is_some() && !stale {
            // Others keep serving on the known state while this request (or the host, after
            // this request) re-reads.
            {
                let mut s = self.inner.borrow_mut();
                s.checked_at = Some(now);
                s.wanted = self.background;
            }
            if self.background {
                return current;
            }
            self.refresh(p).await;
        } else {
            // Cold, or held too long to serve: every request waits for one shared read.
            self.flight
                .run(
                    async {
                        self.refresh(p).await;
                    },
                    || p.sleep_ms(COLD_TICK_MS),
                    COLD_MAX_TICKS,
                )
                .await;
        }
        self.inner.borrow().current.clone()
    }

    /// The state without reading (admin health).
    pub fn known(&self) -> Option<Rc<ControlState>> {
        self.inner.borrow().current.clone()
    }

    /// Reads the state from the control object now. Returns true if it was reached. A new
    /// revision is logged (`control_updated`); a failure is logged (`control_unavailable`)
    /// and the last known state stays.
    pub async fn refresh<P: Control + Clock + Log>(&self, p: &P) -> bool {
        let result = p.control(&ControlCall::Read).await;
        let now = p.now_ms();
        match result {
            Ok(reply) => {
                self.install(p, reply.state);
                true
            }
            Err(e) => {
                let (failures, serving) = {
                    let mut s = self.inner.borrow_mut();
                    s.checked_at = Some(now);
                    s.read_at = Some(now);
                    s.failures += 1;
                    (s.failures, s.current.as_ref().map(|c| c.revision))
                };
                p.log_line(&event_line(
                    "control_unavailable",
                    now,
                    json!({"error": e.0, "failures": failures, "serving_revision": serving}),
                ));
                false
            }
        }
    }

    /// Takes `state` as the current overrides (after a read, or the reply to an admin
    /// change, so the isolate that made a change applies it at once). An older revision than
    /// the one held is ignored. Logs `control_updated` when the revision changes (and on the
    /// first read when there are overrides).
    pub fn install<P: Clock + Log>(&self, p: &P, state: ControlState) {
        let now = p.now_ms();
        let previous = {
            let mut s = self.inner.borrow_mut();
            s.checked_at = Some(now);
            s.read_at = Some(now);
            let previous = s.current.as_ref().map(|c| c.revision);
            if previous.is_some_and(|r| r >= state.revision) {
                return;
            }
            s.current = Some(Rc::new(state));
            previous
        };
        let s = self.inner.borrow();
        // An isolate's first read of a never-changed state (revision 0) is not news.
        if let Some(c) = s
            .current
            .as_ref()
            .filter(|c| previous.is_some() || c.revision > 0)
        {
            p.log_line(&event_line(
                "control_updated",
                now,
                json!({"revision": c.revision, "previous": previous,
                    "blocks": c.blocks.len(), "disabled_routes": c.disabled_routes.len()}),
            ));
        }
    }
}
