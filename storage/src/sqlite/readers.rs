//! Reader threads: a few long-lived threads that each own one SQLite connection and run the
//! reads handed to them, most recently idle thread first.
//!
//! Why not `spawn_blocking` over a connection pool: tokio's blocking pool grows to as many threads
//! as reads ever ran at once (31 after 4,000 dashboard reads 8 at a time on this 2-core box) and
//! hands each read to whichever of them wakes, so a sequential client's reads wander across
//! threads and their caches. Here the threads are capped, an idle thread waits on its own
//! channel, and a read goes to the thread that went idle last (its connection's page cache and
//! its CPU caches are the warm ones); reads beyond the cap wait in a FIFO queue.
//!
//! Invariants: every read handed in is either run exactly once or answered with an error (a
//! connection that cannot be opened, a read that panicked) — its caller never waits forever; a
//! panicking read does not take its thread down; threads never outnumber the cap.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;
use tally_domain::store::StoreError;

use crate::failure::{Failure, Result};

/// A read as the threads run it: given the thread's connection, or why it has none, it reads
/// and returns the delivery of its answer, which the thread calls once it is ready for the
/// next read (so a caller that sends its next read on the answer finds the thread idle).
type Job = Box<dyn FnOnce(std::result::Result<&Connection, &Failure>) -> Deliver + Send>;

/// Hands a read's answer to its caller.
type Deliver = Box<dyn FnOnce() + Send>;

/// Opens a reader's connection (on the reader's own thread).
type Open = dyn Fn() -> Result<Connection> + Send + Sync;

/// The reader threads of one database file.
pub(crate) struct Readers {
    shared: Arc<Shared>,
}

struct Shared {
    open: Box<Open>,
    name: String,
    cap: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Channels of the idle threads; the last pushed went idle last.
    idle: Vec<SyncSender<Job>>,
    /// Reads waiting for a thread (all threads busy, cap reached).
    queue: VecDeque<Job>,
    threads: usize,
    /// The owner is gone: threads finish the queue, then close their connections and end.
    closed: bool,
}

impl Readers {
    /// Up to `cap` threads named `name`, each opening its connection with `open` when it starts.
    pub(crate) fn new(
        name: &str,
        cap: usize,
        open: impl Fn() -> Result<Connection> + Send + Sync + 'static,
    ) -> Readers {
        Readers {
            shared: Arc::new(Shared {
                open: Box::new(open),
                name: name.to_string(),
                cap: cap.max(1),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Runs `f` on a reader thread's connection and waits (asynchronously) for its answer.
    pub(crate) async fn read<T, F>(&self, f: F) -> std::result::Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.shared.hand(Box::new(move |conn| {
            let answer = match conn {
                Ok(conn) => catch_unwind(AssertUnwindSafe(|| f(conn)))
                    .unwrap_or_else(|_| Err(Failure::Backend("a read panicked".into()))),
                Err(failure) => Err(Failure::Backend(format!("no reader connection: {failure}"))),
            };
            Box::new(move || {
                let _ = tx.send(answer);
            })
        }))?;
        rx.await
            .map_err(|_| StoreError::Backend("a reader thread stopped before answering".into()))?
            .map_err(StoreError::from)
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        state.closed = true;
        // Dropping an idle thread's channel ends its wait; busy threads see `closed` when done.
        state.idle.clear();
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A read never runs under this lock, so poisoning cannot leave the state half-changed.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives `job` to the thread that went idle last, to a new thread, or to the queue.
    fn hand(self: &Arc<Self>, job: Job) -> std::result::Result<(), StoreError> {
        let mut state = self.state();
        if let Some(idle) = state.idle.pop() {
            drop(state);
            // An idle thread waits on its channel until it gets a job; its receiver lives as
            // long as it does, so the send only fails if the thread is gone — then try again.
            return match idle.send(job) {
                Ok(()) => Ok(()),
                Err(back) => self.hand(back.0),
            };
        }
        if state.threads >= self.cap {
            state.queue.push_back(job);
            return Ok(());
        }
        state.threads += 1;
        drop(state);
        let shared = Arc::clone(self);
        std::thread::Builder::new()
            .name(self.name.clone())
            .spawn(move || shared.serve(job))
            .map(|_| ())
            .map_err(|e| {
                self.state().threads -= 1;
                StoreError::Backend(format!("cannot start a reader thread: {e}"))
            })
    }

    /// A reader thread's life: open the connection, run `first`, then every job handed to it.
    fn serve(self: Arc<Self>, first: Job) {
        let conn = (self.open)();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            let deliver = match &conn {
                Ok(conn) => job(Ok(conn)),
                Err(failure) => job(Err(failure)),
            };
            let mut state = self.state();
            if let Some(queued) = state.queue.pop_front() {
                drop(state);
                deliver();
                next = Some(queued);
                continue;
            }
            if conn.is_err() || state.closed {
                // No connection: leave, so the next read starts a thread that tries again.
                state.threads -= 1;
                drop(state);
                deliver();
                return;
            }
            // A fresh channel per wait: the thread keeps only the receiver, so dropping the
            // sender (the owner going away) ends the wait.
            let (tx, rx): (SyncSender<Job>, Receiver<Job>) = sync_channel(1);
            state.idle.push(tx);
            drop(state);
            deliver();
            next = rx.recv().ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn memory() -> Result<Connection> {
        Ok(Connection::open_in_memory()?)
    }

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("").to_string()
    }

    #[tokio::test]
    async fn a_sequential_client_is_served_by_one_thread() {
        let readers = Readers::new("reader", 4, memory);
        let mut ids = Vec::new();
        for _ in 0..20 {
            ids.push(
                readers
                    .read(|_| Ok(std::thread::current().id()))
                    .await
                    .expect("read"),
            );
        }
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
        assert_eq!(readers.shared.state().threads, 1);
        assert_eq!(
            readers.read(|_| Ok(thread_name())).await.expect("read"),
            "reader"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn threads_never_outnumber_the_cap_and_every_read_is_answered() {
        let readers = Arc::new(Readers::new("reader", 3, memory));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..40u64 {
            let (readers, running, most) = (readers.clone(), running.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                readers
                    .read(move |conn| {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        let doubled: i64 = conn.query_row("SELECT ?1 * 2", [i], |r| r.get(0))?;
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok(doubled)
                    })
                    .await
            }));
        }
        for (i, task) in tasks.into_iter().enumerate() {
            assert_eq!(task.await.expect("task").expect("read"), 2 * i as i64);
        }
        assert_eq!(most.load(Ordering::SeqCst), 3, "reads ran 3 at a time");
        assert_eq!(readers.shared.state().threads, 3);
        assert!(readers.shared.state().queue.is_empty());
    }

    #[tokio::test]
    async fn the_threads_end_when_their_owner_is_dropped() {
        let readers = Readers::new("reader", 2, memory);
        let shared = Arc::downgrade(&readers.shared);
        readers.read(|_| Ok(())).await.expect("read");
        drop(readers);
        for _ in 0..200 {
            if shared.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("a reader thread outlived its owner");
    }

    #[tokio::test]
    async fn a_panicking_read_is_an_error_and_its_thread_serves_on() {
        let readers = Readers::new("reader", 1, memory);
        let panicked = readers.read(|_| -> Result<()> { panic!("boom") }).await;
        assert!(matches!(panicked, Err(StoreError::Backend(m)) if m.contains("panicked")));
        let one: i64 = readers
            .read(|conn| Ok(conn.query_row("SELECT 1", [], |r| r.get(0))?))
            .await
            .expect("read");
        assert_eq!(one, 1);
        assert_eq!(readers.shared.state().threads, 1);
    }

    #[tokio::test]
    async fn a_connection_that_cannot_open_is_an_error_and_the_next_read_tries_again() {
        let tries = Arc::new(AtomicUsize::new(0));
        let counted = tries.clone();
        let readers = Readers::new("reader", 2, move || {
            if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(Failure::Backend("disk gone".into()))
            } else {
                memory()
            }
        });
        let first = readers.read(|_| Ok(())).await;
        assert!(matches!(first, Err(StoreError::Backend(m)) if m.contains("disk gone")));
        readers.read(|_| Ok(())).await.expect("read");
        assert_eq!(tries.load(Ordering::SeqCst), 2);
    }
}
