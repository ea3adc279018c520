//! A timer future on `wasi:clocks/monotonic-clock`, driven by spin-sdk's executor.

use spin_executor::CancelOnDropToken;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use wasi::clocks::monotonic_clock;

/// Resolves once `ms` milliseconds have passed (on the monotonic clock).
pub struct Sleep {
    deadline_ns: u64,
    token: Option<CancelOnDropToken>,
}

/// A future that resolves after `ms` milliseconds without blocking other futures of the
/// request.
pub fn sleep_ms(ms: u64) -> Sleep {
    Sleep {
        deadline_ns: monotonic_clock::now().saturating_add(ms.saturating_mul(1_000_000)),
        token: None,
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if monotonic_clock::now() >= self.deadline_ns {
            self.token = None;
            return Poll::Ready(());
        }
        let pollable = monotonic_clock::subscribe_instant(self.deadline_ns);
        self.token = Some(CancelOnDropToken::from(
            spin_executor::push_waker_and_get_token(pollable, cx.waker().clone()),
        ));
        Poll::Pending
    }
}
