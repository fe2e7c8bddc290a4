//! `serve`'s log writer: a line per request must not cost a request a
//! write to the log's file or pipe. Lines are appended to a bounded buffer
//! (one short lock, no allocation); a thread of their own swaps the buffer
//! out every [`FLUSH_EVERY`] and writes it in one go.
//!
//! Two kinds of line. Most (access lines, guests' output, the ordinary
//! audit events) never wait for the destination: when it does not keep up
//! and the buffer is full, they are dropped and counted. The evidence an
//! operator needs after an attack (a denied call, a sign-in, a sign-out, a
//! revoke: events emitted inside [`keep`]) is never dropped: it may use a
//! reserve of the buffer the others cannot, and past that its writer waits
//! for the destination, off the async workers ([`crate::blocking`]), so
//! only the request that caused it waits. Dropping the [`Flush`] writes
//! what is left, so a clean shutdown loses nothing (unless the destination
//! takes nothing for [`LAST_WRITE`], [`KEPT_LAST_WRITE`] while kept lines
//! wait: an exit does not wait for it forever).
//!
//! tracing-appender's non-blocking writer was tried first: it allocates a
//! line and wakes its writer thread through a channel for each one, which
//! on a busy two-core machine cost about as much as writing directly.

use std::cell::Cell;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

/// How often the buffer is written out.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// How long the last write may take when the process stops.
pub const LAST_WRITE: Duration = Duration::from_secs(5);
/// ... and while lines that must not be dropped are still waiting.
pub const KEPT_LAST_WRITE: Duration = Duration::from_secs(60);

/// The process's log queue, once `serve` installed one, and its format.
pub struct Installed {
    pub queue: LogQueue,
    /// One JSON object per line (`serve --log-format json`), else text.
    pub json: bool,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Makes `queue` the one the access log writes to, in its format.
pub fn install(queue: LogQueue, json: bool) {
    let _ = INSTALLED.set(Installed { queue, json });
}

pub fn installed() -> Option<&'static Installed> {
    INSTALLED.get()
}

/// Log lines dropped so far because the destination did not keep up.
pub fn dropped() -> u64 {
    installed().map_or(0, |log| log.queue.dropped())
}

thread_local! {
    static KEEP: Cell<bool> = const { Cell::new(false) };
}

/// Emits the events of `event` as lines the log never drops, when `keep`
/// (a denied call, a sign-in, …); as ordinary lines otherwise.
pub fn keep<R>(keep: bool, event: impl FnOnce() -> R) -> R {
    if !keep {
        return event();
    }
    let before = KEEP.with(|k| k.replace(true));
    let result = event();
    KEEP.with(|k| k.set(before));
    result
}

/// Where log lines go: cheap to clone, one buffer behind every clone.
#[derive(Clone)]
pub struct LogQueue {
    shared: Arc<Shared>,
}

struct Shared {
    buffer: Mutex<Buffer>,
    /// Wakes the writer early, to stop.
    wake: Condvar,
    /// Wakes writers of kept lines when the buffer was taken.
    room: Condvar,
    /// Bytes the buffer holds for lines that may be dropped.
    capacity: usize,
    /// Bytes more it holds for kept lines before their writers wait.
    reserve: usize,
    dropped: AtomicU64,
    /// Kept lines appended so far, and written out so far.
    kept: AtomicU64,
    kept_written: AtomicU64,
}

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    /// How many kept lines `bytes` holds.
    kept: u64,
    stop: bool,
}

/// Writes what is left and stops the writer thread when dropped.
pub struct Flush {
    shared: Arc<Shared>,
    /// Closed by the writer thread when it is done.
    done: std::sync::mpsc::Receiver<()>,
}

impl LogQueue {
    /// A queue of at most `capacity` bytes (and `reserve` more for kept
    /// lines) in front of `out`, and the thread that writes it out.
    pub fn start(
        capacity: usize,
        reserve: usize,
        mut out: impl Write + Send + 'static,
    ) -> (LogQueue, Flush) {
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Buffer::default()),
            wake: Condvar::new(),
            room: Condvar::new(),
            capacity,
            reserve,
            dropped: AtomicU64::new(0),
            kept: AtomicU64::new(0),
            kept_written: AtomicU64::new(0),
        });
        let (finished, done) = std::sync::mpsc::channel::<()>();
        {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("log".into())
                .spawn(move || {
                    let _finished = finished;
                    let mut spare = Vec::new();
                    loop {
                        let (stop, kept) = {
                            let buffer = shared.lock();
                            let (mut buffer, _) = shared
                                .wake
                                .wait_timeout_while(buffer, FLUSH_EVERY, |b| !b.stop)
                                .unwrap_or_else(|e| e.into_inner());
                            std::mem::swap(&mut buffer.bytes, &mut spare);
                            (buffer.stop, std::mem::take(&mut buffer.kept))
                        };
                        shared.room.notify_all();
                        // A destination that fails loses these lines; there
                        // is nowhere else to say so.
                        let _ = out.write_all(&spare).and_then(|()| out.flush());
                        shared.kept_written.fetch_add(kept, Ordering::Relaxed);
                        spare.clear();
                        if stop {
                            return;
                        }
                    }
                })
                .expect("a thread for the log");
        }
        (
            LogQueue {
                shared: shared.clone(),
            },
            Flush { shared, done },
        )
    }

    /// Lines dropped so far because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Appends a line that must not be dropped: into the reserve if need
    /// be, else once the writer thread has taken the buffer.
    fn write_kept(&self, line: &[u8]) {
        let shared = &self.shared;
        let full = |b: &Buffer| {
            !b.bytes.is_empty() && b.bytes.len() + line.len() > shared.capacity + shared.reserve
        };
        let mut buffer = shared.lock();
        if full(&buffer) {
            buffer = crate::blocking::blocking(|| {
                shared
                    .room
                    .wait_while(buffer, |b| full(b) && !b.stop)
                    .unwrap_or_else(|e| e.into_inner())
            });
        }
        buffer.bytes.extend_from_slice(line);
        buffer.kept += 1;
        shared.kept.fetch_add(1, Ordering::Relaxed);
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Each write is one whole line (tracing's formatter writes an event at
/// once), kept or dropped whole.
impl Write for &LogQueue {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        if KEEP.with(Cell::get) {
            self.write_kept(line);
            return Ok(line.len());
        }
        let mut buffer = self.shared.lock();
        if buffer.bytes.len() + line.len() > self.shared.capacity {
            drop(buffer);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            buffer.bytes.extend_from_slice(line);
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogQueue {
    type Writer = &'a LogQueue;

    fn make_writer(&'a self) -> &'a LogQueue {
        self
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        let waiting = self.shared.kept.load(Ordering::Relaxed)
            > self.shared.kept_written.load(Ordering::Relaxed);
        self.shared.wake.notify_one();
        self.shared.room.notify_all();
        // Disconnected when the thread is done; a timeout leaves it stuck
        // in a write the process's exit then ends.
        let _ = self
            .done
            .recv_timeout(if waiting { KEPT_LAST_WRITE } else { LAST_WRITE });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A destination that hands each write to the test.
    struct Sink(mpsc::Sender<Vec<u8>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.send(bytes.to_vec());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_in_order_by_the_time_the_flush_is_dropped() {
        let (tx, rx) = mpsc::channel();
        let (queue, flush) = LogQueue::start(1 << 20, 0, Sink(tx));
        for i in 0..10_000 {
            (&queue)
                .write_all(format!("line {i}\n").as_bytes())
                .unwrap();
        }
        drop(flush);
        let written: Vec<u8> = rx.try_iter().flatten().collect();
        let expected: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(String::from_utf8(written).unwrap(), expected);
        assert_eq!(queue.dropped(), 0);
    }

    /// A destination that takes nothing until the test lets it.
    struct Stuck(Arc<(Mutex<bool>, Condvar)>, mpsc::Sender<usize>);

    impl Write for Stuck {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let (open, turn) = &*self.0;
            let _open = turn
                .wait_while(open.lock().unwrap(), |open| !*open)
                .unwrap();
            let _ = self.1.send(bytes.len());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_destination_drops_and_counts_lines_and_never_holds_a_writer() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let (tx, rx) = mpsc::channel();
        let (queue, flush) = LogQueue::start(1000, 0, Stuck(gate.clone(), tx));
        let line = [b'x'; 100];
        // The first line reaches the destination and sticks there.
        (&queue).write_all(&line).unwrap();
        let waited = std::time::Instant::now();
        while queue.shared.lock().bytes.len() == line.len() {
            assert!(waited.elapsed() < Duration::from_secs(10), "never taken");
            std::thread::sleep(FLUSH_EVERY);
        }
        // Ten more fill the buffer; the rest are dropped, at once.
        let started = std::time::Instant::now();
        for _ in 0..100 {
            (&queue).write_all(&line).unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(queue.dropped(), 90);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        drop(flush);
        assert_eq!(rx.try_iter().sum::<usize>(), 11 * line.len());
    }

    #[test]
    fn kept_lines_are_never_dropped_and_only_their_writer_waits() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let (tx, rx) = mpsc::channel();
        let (queue, flush) = LogQueue::start(1000, 500, Stuck(gate.clone(), tx));
        let (line, kept) = ([b'x'; 100], [b'k'; 100]);
        // The first line reaches the destination and sticks there.
        (&queue).write_all(&line).unwrap();
        let waited = std::time::Instant::now();
        while queue.shared.lock().bytes.len() == line.len() {
            assert!(waited.elapsed() < Duration::from_secs(10), "never taken");
            std::thread::sleep(FLUSH_EVERY);
        }
        // Ten ordinary lines fill the buffer, ten more are dropped; five
        // kept lines go into the reserve.
        for _ in 0..20 {
            (&queue).write_all(&line).unwrap();
        }
        for _ in 0..5 {
            keep(true, || (&queue).write_all(&kept)).unwrap();
        }
        assert_eq!(queue.dropped(), 10);
        // A sixth kept line has no room until the destination takes some:
        // its writer waits, and ordinary writers still do not.
        let sixth = {
            let queue = queue.clone();
            std::thread::spawn(move || keep(true, || (&queue).write_all(&kept)).unwrap())
        };
        let started = std::time::Instant::now();
        for _ in 0..100 {
            (&queue).write_all(&line).unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(queue.dropped(), 110);
        assert!(
            !sixth.is_finished(),
            "the buffer is full until the gate opens"
        );
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        sixth.join().unwrap();
        drop(flush);
        let written: usize = rx.try_iter().sum();
        assert_eq!(written, (1 + 10 + 6) * line.len());
        assert_eq!(queue.shared.kept.load(Ordering::Relaxed), 6);
        assert_eq!(queue.shared.kept_written.load(Ordering::Relaxed), 6);
    }
}
