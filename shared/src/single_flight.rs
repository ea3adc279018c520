//! Single-flight: concurrent requests of one isolate share one run of some async work.

use std::cell::Cell;
use std::future::Future;

/// Lets the requests of one single-threaded isolate share one run of a piece of work (a key
/// fetch): the first caller runs it; callers that arrive while it runs wait for it to end and
/// then read what it stored.
///
/// Waiters are never woken by the running request: on Workers a request may not resume
/// another request's tasks (the runtime cancels them as hung). Each waiter instead checks,
/// on a timer of its own (`tick`), whether the run has ended, for at most `max_ticks` ticks;
/// then it goes on and reads whatever state there is. A running future that is dropped
/// ends the run all the same.
#[derive(Debug, Default)]
pub struct SingleFlight {
    running: Cell<bool>,
    generation: Cell<u64>,
}

impl SingleFlight {
    /// A flight with nothing running.
    pub fn new() -> Self {
        SingleFlight::default()
    }

    /// Runs `work` unless a run is in progress, in which case it waits (polling with `tick`,
    /// at most `max_ticks` times) for that run to end. Returns true if this call ran the work.
    pub async fn run<W, T, TF>(&self, work: W, tick: T, max_ticks: u32) -> bool
    where
        W: Future<Output = ()>,
        T: Fn() -> TF,
        TF: Future<Output = ()>,
    {
        if self.running.get() {
            let generation = self.generation.get();
            for _ in 0..max_ticks {
                if self.generation.get() != generation {
                    break;
                }
                tick().await;
            }
            return false;
        }
        self.running.set(true);
        let _landing = Landing(self);
        work.await;
        true
    }

    /// True while a run is in progress.
    pub fn is_running(&self) -> bool {
        self.running.get()
    }
}

/// Ends a run (also when the running future is dropped).
struct Landing<'a>(&'a SingleFlight);

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        let flight = self.0;
        flight
            .generation
            .set(flight.generation.get().wrapping_add(1));
        flight.running.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::rc::Rc;
    use std::task::{Context, Poll};

    /// Pending once, then ready: lets other tasks run in between.
    struct YieldOnce(bool);
    impl Future for YieldOnce {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                Poll::Ready(())
            } else {
                self.0 = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }

    #[test]
    fn concurrent_callers_share_one_run() {
        let flight = SingleFlight::new();
        let runs = Rc::new(Cell::new(0));
        let done = Rc::new(Cell::new(false));
        let tasks = (0..50).map(|_| {
            let (runs, done, flight) = (runs.clone(), done.clone(), &flight);
            async move {
                let ran = flight
                    .run(
                        async {
                            runs.set(runs.get() + 1);
                            YieldOnce(false).await;
                            YieldOnce(false).await;
                            done.set(true);
                        },
                        || YieldOnce(false),
                        1000,
                    )
                    .await;
                // Every caller sees the run's result once it returns.
                assert!(done.get());
                ran
            }
        });
        let ran = futures::executor::block_on(futures::future::join_all(tasks));
        assert_eq!(runs.get(), 1);
        assert_eq!(ran.iter().filter(|r| **r).count(), 1);
        assert!(!flight.is_running());
        futures::executor::block_on(flight.run(async {}, || YieldOnce(false), 1));
    }

    #[test]
    fn waiters_give_up_after_max_ticks() {
        let flight = SingleFlight::new();
        let never = std::future::pending::<()>();
        let mut runner = Box::pin(flight.run(never, || YieldOnce(false), 1));
        let waker = futures::task::noop_waker();
        assert!(runner
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        let waited = futures::executor::block_on(flight.run(async {}, || YieldOnce(false), 3));
        assert!(!waited, "gave up waiting, did not run the work");
        drop(runner);
        assert!(!flight.is_running(), "a dropped run ends");
    }
}
