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
//! Invariants: every read handed in is run at most once and its caller is always answered —
//! with the read's result, or with an error (a connection that cannot be opened, a thread that
//! cannot start, a read that panicked); a read whose caller has stopped waiting is skipped. A
//! panicking read or open does not take its thread down; threads never outnumber the cap.

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
                // Its caller is gone (a cancelled request): nothing to read for.
                Ok(_) if tx.is_closed() => Err(Failure::Backend("read cancelled".into())),
                Ok(conn) => catch_unwind(AssertUnwindSafe(|| f(conn)))
                    .unwrap_or_else(|_| Err(Failure::Backend("a read panicked".into()))),
                Err(failure) => Err(failure.clone()),
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
            // An idle thread keeps its receiver until it gets a job, and only `Drop` (which
            // needs the owner, so cannot run during this call) clears the idle list: the send
            // lands. Should it ever not, the job is handed again rather than lost.
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
        match std::thread::Builder::new()
            .name(self.name.clone())
            .spawn(move || shared.serve(job))
        {
            Ok(_) => Ok(()),
            Err(e) => {
                // The job went down with the closure (its caller gets this error). Reads queued
                // meanwhile, while the slot looked taken, are answered now if no thread is left
                // to serve them.
                let failure = Failure::Backend(format!("cannot start a reader thread: {e}"));
                let stranded = {
                    let mut state = self.state();
                    state.threads -= 1;
                    if state.threads == 0 {
                        std::mem::take(&mut state.queue)
                    } else {
                        VecDeque::new()
                    }
                };
                for job in stranded {
                    job(Err(&failure))();
                }
                Err(failure.into())
            }
        }
    }

    /// Opens a connection; a panic in `open` is a failure like any other.
    fn open(&self) -> Result<Connection> {
        catch_unwind(AssertUnwindSafe(|| (self.open)())).unwrap_or_else(|_| {
            Err(Failure::Backend(
                "opening a reader connection panicked".into(),
            ))
        })
    }

    /// A reader thread's life: open the connection, run `first`, then every job handed to it.
    /// Nothing in it can panic: jobs catch their reads' panics and `open` is caught too, so
    /// the thread count is always given back.
    fn serve(self: Arc<Self>, first: Job) {
        let mut conn = self.open();
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
                if conn.is_err() {
                    // A failed open may be passing (a busy file): try again for this read.
                    conn = self.open();
                }
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
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Barrier;
    use std::time::Duration;

    fn memory() -> Result<Connection> {
        Ok(Connection::open_in_memory()?)
    }

    /// `f`, failing the test instead of hanging if it never finishes.
    async fn soon<T>(f: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(20), f)
            .await
            .expect("a read never finished")
    }

    #[tokio::test]
    async fn a_sequential_client_is_served_by_one_thread() {
        let readers = Readers::new("reader", 4, memory);
        let mut ids = Vec::new();
        for _ in 0..20 {
            ids.push(
                soon(readers.read(|_| Ok(std::thread::current().id())))
                    .await
                    .expect("read"),
            );
        }
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
        assert_eq!(readers.shared.state().threads, 1);
        let name =
            soon(readers.read(|_| Ok(std::thread::current().name().unwrap_or("").to_string())))
                .await
                .expect("read");
        assert_eq!(name, "reader");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_thread_that_went_idle_last_takes_the_next_read() {
        let readers = Arc::new(Readers::new("reader", 2, memory));
        let both = Arc::new(Barrier::new(2));
        let read = |wait_ms: u64| {
            let (readers, both) = (readers.clone(), both.clone());
            tokio::spawn(async move {
                readers
                    .read(move |_| {
                        // Both reads run at once (two threads), then one finishes 100 ms later.
                        both.wait();
                        std::thread::sleep(Duration::from_millis(wait_ms));
                        Ok(std::thread::current().id())
                    })
                    .await
            })
        };
        let (early, late) = (read(0), read(100));
        let early = soon(early).await.expect("task").expect("read");
        let late = soon(late).await.expect("task").expect("read");
        assert_ne!(early, late, "two threads");
        let next = soon(readers.read(|_| Ok(std::thread::current().id())))
            .await
            .expect("read");
        assert_eq!(next, late);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn threads_never_outnumber_the_cap_and_every_read_is_answered() {
        let readers = Arc::new(Readers::new("reader", 3, memory));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        // The first three reads wait for one another: they can only all get past this if the
        // cap lets three run at once.
        let first_three = Arc::new(Barrier::new(3));
        let mut tasks = Vec::new();
        for i in 0..40u64 {
            let (readers, running, most, started, first_three) = (
                readers.clone(),
                running.clone(),
                most.clone(),
                started.clone(),
                first_three.clone(),
            );
            tasks.push(tokio::spawn(async move {
                readers
                    .read(move |conn| {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        if started.fetch_add(1, Ordering::SeqCst) < 3 {
                            first_three.wait();
                        }
                        std::thread::sleep(Duration::from_millis(2));
                        let doubled: i64 = conn.query_row("SELECT ?1 * 2", [i], |r| r.get(0))?;
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok(doubled)
                    })
                    .await
            }));
        }
        for (i, task) in tasks.into_iter().enumerate() {
            assert_eq!(soon(task).await.expect("task").expect("read"), 2 * i as i64);
        }
        assert_eq!(most.load(Ordering::SeqCst), 3, "reads ran 3 at a time");
        assert_eq!(readers.shared.state().threads, 3);
        assert!(readers.shared.state().queue.is_empty());
    }

    #[tokio::test]
    async fn cancelled_reads_are_skipped_and_the_threads_end_with_their_owner() {
        let readers = Arc::new(Readers::new("reader", 1, memory));
        let shared = Arc::downgrade(&readers.shared);
        let ran = Arc::new(AtomicUsize::new(0));
        let inside = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Barrier::new(2));
        // One read holds the only thread until the test opens the gate.
        let held = {
            let (readers, ran, inside, gate) =
                (readers.clone(), ran.clone(), inside.clone(), gate.clone());
            tokio::spawn(async move {
                readers
                    .read(move |_| {
                        inside.store(1, Ordering::SeqCst);
                        gate.wait();
                        ran.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    })
                    .await
            })
        };
        while inside.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Five more are handed in (queued) and their callers give up at once, as a cancelled
        // request does; then the test lets go of the owner.
        for _ in 0..5 {
            let counted = ran.clone();
            let read = readers.read(move |_| {
                counted.fetch_add(1, Ordering::SeqCst);
                Ok(())
            });
            assert!(tokio::time::timeout(Duration::ZERO, read).await.is_err());
        }
        assert_eq!(readers.shared.state().queue.len(), 5);
        drop(readers);
        gate.wait();
        soon(held).await.expect("task").expect("the held read");
        for _ in 0..500 {
            if shared.strong_count() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            shared.strong_count(),
            0,
            "a reader thread outlived its owner"
        );
        // Only the held read did its work: the cancelled ones were taken off the queue and
        // skipped, since nobody waited for their answers.
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_panicking_read_is_an_error_and_its_thread_serves_on() {
        let readers = Readers::new("reader", 1, memory);
        let panicked = soon(readers.read(|_| -> Result<()> { panic!("boom") })).await;
        assert!(matches!(panicked, Err(StoreError::Backend(m)) if m.contains("panicked")));
        let one: i64 = soon(readers.read(|conn| Ok(conn.query_row("SELECT 1", [], |r| r.get(0))?)))
            .await
            .expect("read");
        assert_eq!(one, 1);
        assert_eq!(readers.shared.state().threads, 1);
    }

    #[tokio::test]
    async fn a_connection_that_cannot_open_is_an_error_and_the_next_read_tries_again() {
        let tries = Arc::new(AtomicUsize::new(0));
        let counted = tries.clone();
        let readers = Readers::new("reader", 1, move || {
            match counted.fetch_add(1, Ordering::SeqCst) {
                0 => Err(Failure::Unavailable("disk gone".into())),
                1 => panic!("open panicked"),
                _ => memory(),
            }
        });
        let first = soon(readers.read(|_| Ok(()))).await;
        assert!(
            matches!(first, Err(StoreError::Unavailable(ref m)) if m.contains("disk gone")),
            "the failure keeps its kind: {first:?}"
        );
        let second = soon(readers.read(|_| Ok(()))).await;
        assert!(
            matches!(second, Err(StoreError::Backend(ref m)) if m.contains("panicked")),
            "{second:?}"
        );
        soon(readers.read(|_| Ok(())))
            .await
            .expect("third open works");
        assert_eq!(tries.load(Ordering::SeqCst), 3);
        assert_eq!(readers.shared.state().threads, 1);
    }
}
