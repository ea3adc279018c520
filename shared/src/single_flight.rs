//! Single-flight: concurrent tasks of one isolate share one run of some async work.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Lets the tasks of one single-threaded isolate share one run of a piece of work (a key
/// fetch): the first caller runs it; callers that arrive while it runs wait for it to end and
/// then read what it stored. If the running task is dropped mid-way, the waiters are released
/// all the same (and may run the work themselves).
#[derive(Debug, Default)]
pub struct SingleFlight {
    waiters: RefCell<Option<Vec<Waker>>>,
    generation: Cell<u64>,
}

impl SingleFlight {
    /// A flight with nothing running.
    pub fn new() -> Self {
        SingleFlight::default()
    }

    /// Runs `work` unless a run is in progress, in which case it waits for that run to end.
    /// Returns true if this call ran the work.
    pub async fn run<F: Future<Output = ()>>(&self, work: F) -> bool {
        if self.waiters.borrow().is_some() {
            Wait {
                flight: self,
                generation: self.generation.get(),
            }
            .await;
            return false;
        }
        *self.waiters.borrow_mut() = Some(Vec::new());
        let _landing = Landing(self);
        work.await;
        true
    }

    /// True while a run is in progress.
    pub fn is_running(&self) -> bool {
        self.waiters.borrow().is_some()
    }
}

/// Ends a run (also when the running future is dropped): wakes every waiter.
struct Landing<'a>(&'a SingleFlight);

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        let flight = self.0;
        flight
            .generation
            .set(flight.generation.get().wrapping_add(1));
        let waiters = flight.waiters.borrow_mut().take().unwrap_or_default();
        for w in waiters {
            w.wake();
        }
    }
}

struct Wait<'a> {
    flight: &'a SingleFlight,
    generation: u64,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.flight.generation.get() != self.generation {
            return Poll::Ready(());
        }
        match self.flight.waiters.borrow_mut().as_mut() {
            Some(list) => {
                list.push(cx.waker().clone());
                Poll::Pending
            }
            None => Poll::Ready(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

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
        let tasks = (0..50).map(|_| {
            let runs = runs.clone();
            let flight = &flight;
            async move {
                flight
                    .run(async {
                        runs.set(runs.get() + 1);
                        YieldOnce(false).await;
                        YieldOnce(false).await;
                    })
                    .await
            }
        });
        let ran = futures::executor::block_on(futures::future::join_all(tasks));
        assert_eq!(runs.get(), 1);
        assert_eq!(ran.iter().filter(|r| **r).count(), 1);
        assert!(!flight.is_running());
        // A later call runs again.
        futures::executor::block_on(flight.run(async {}));
    }
}
