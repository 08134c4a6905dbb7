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
pub(crate) struct Event {
    generation: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Event {
    /// Wakes every listener created before this call.
    pub(crate) fn notify_all(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for w in wakers {
            w.wake();
        }
    }

    /// A future that completes at the next `notify_all`.
    pub(crate) fn listen(self: &Rc<Self>) -> Listener {
        Listener {
            event: self.clone(),
            generation: self.generation.get(),
            registered: false,
        }
    }
}

pub(crate) struct Listener {
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

/// Polls all futures concurrently and returns their outputs in order (a small
/// `join_all`, to keep the dependency list short). Every future is polled on each wake,
/// which is fine for the handful of writes of one group.
pub(crate) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(move |cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(outputs.iter_mut().filter_map(Option::take).collect())
        }
    })
    .await
}
