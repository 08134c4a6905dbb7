//! A single-threaded broadcast notification: tasks wait for "something changed",
//! then re-check their condition. The `listen()`-then-check-then-await pattern cannot
//! miss a wake-up because everything runs on one thread and nothing awaits between
//! the check and the listen.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct Event {
    generation: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Event {
    /// Wakes every listener created before this call.
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for w in wakers {
            w.wake();
        }
    }

    /// A future that completes at the next `notify_all`.
    pub fn listen(self: &Rc<Self>) -> Listener {
        Listener {
            event: self.clone(),
            generation: self.generation.get(),
            registered: false,
        }
    }
}

pub struct Listener {
    event: Rc<Event>,
    generation: u64,
    registered: bool,
}

impl Future for Listener {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.event.generation.get() != self.generation {
            return Poll::Ready(());
        }
        // Register once: the list is only drained by `notify_all`, which also bumps the
        // generation, so a registered listener's waker is still in the list here. A
        // glommio task never changes its waker.
        if !self.registered {
            self.event.wakers.borrow_mut().push(cx.waker().clone());
            self.registered = true;
        }
        Poll::Pending
    }
}

/// Polls all futures concurrently and returns their outputs in order.
///
/// Each future is polled only when its own waker fires (`FuturesOrdered`), never on
/// another one's wake-up: a glommio I/O future keeps a clone of the waker from every poll
/// until the I/O completes, so re-polling all pending writes of a large group on each
/// completion grew the clones quadratically and overflowed the task's reference count.
pub(crate) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    use futures::StreamExt;
    futures
        .into_iter()
        .collect::<futures::stream::FuturesOrdered<F>>()
        .collect()
        .await
}
