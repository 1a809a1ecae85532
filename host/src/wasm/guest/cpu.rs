//! A tenant's share of the worker threads: its guests run only while they
//! hold one of its CPU permits, so a tenant whose guests compute (or loop)
//! cannot take every core from the others.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One permit per worker thread a tenant's guests may run on at once.
/// Cheap to clone: clones are the same share (a tenant keeps its share
/// across a reload by handing on a clone).
#[derive(Clone, Debug)]
pub struct CpuShare(Arc<Semaphore>);

impl CpuShare {
    /// A share of `workers` threads (at least one).
    pub fn new(workers: usize) -> Self {
        Self(Arc::new(Semaphore::new(workers.max(1))))
    }

    /// What a WASI 0.3 instance's guest awaits at each epoch tick (its
    /// event loop runs on wasmtime-wasi-http's own task, which cannot be
    /// [`Rationed`]): a permit of this share, held for one tick. Of a
    /// tenant's guests, only as many compute in any tick as it has permits.
    pub(crate) fn tick(&self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let cpu = self.0.clone();
        Box::pin(async move {
            let permit = cpu
                .acquire_owned()
                .await
                .expect("a tenant's CPU semaphore is never closed");
            tokio::spawn(async move {
                tokio::time::sleep(super::limits::EPOCH_TICK).await;
                drop(permit);
            });
        })
    }

    /// `guest`, run only while it holds a permit of this share.
    pub(crate) fn ration<F: Future>(&self, guest: F) -> Rationed<F> {
        Rationed {
            guest: Box::pin(guest),
            cpu: self.0.clone(),
            waiting: None,
        }
    }
}

/// A guest that takes a CPU permit for each poll and gives it back when the
/// poll returns, which is within an epoch tick (`EPOCH_TICK`) however long
/// the guest computes. The semaphore queues waiters in order, so a tenant's
/// guests take turns on the workers it may use while other tenants' guests
/// run on the rest.
pub(crate) struct Rationed<F> {
    guest: Pin<Box<F>>,
    cpu: Arc<Semaphore>,
    waiting: Option<Pin<Box<dyn Future<Output = OwnedSemaphorePermit> + Send>>>,
}

impl<F: Future> Future for Rationed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        // Succeeds only when no other guest of the tenant waits: released
        // permits go to waiters first.
        let permit = match this.cpu.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let cpu = this.cpu.clone();
                let waiting = this.waiting.get_or_insert_with(|| {
                    Box::pin(async move {
                        cpu.acquire_owned()
                            .await
                            .expect("a tenant's CPU semaphore is never closed")
                    })
                });
                let permit = ready!(waiting.as_mut().poll(cx));
                this.waiting = None;
                permit
            }
        };
        let polled = this.guest.as_mut().poll(cx);
        drop(permit);
        polled
    }
}
