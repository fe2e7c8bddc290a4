//! `serve`'s log writer: a line per request must not cost a request a
//! write to the log's file or pipe. Lines are appended to a bounded buffer
//! (one short lock, no allocation); a thread of their own swaps the buffer
//! out every [`FLUSH_EVERY`] and writes it in one go. Requests never wait
//! for the destination: when it does not keep up and the buffer is full,
//! lines are dropped and counted. Dropping the [`Flush`] writes what is
//! left, so a clean shutdown loses nothing (unless the destination takes
//! nothing for [`LAST_WRITE`]: an exit does not wait for it forever).
//!
//! tracing-appender's non-blocking writer was tried first: it allocates a
//! line and wakes its writer thread through a channel for each one, which
//! on a busy two-core machine cost about as much as writing directly.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

/// How often the buffer is written out.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// How long the last write may take when the process stops.
pub const LAST_WRITE: Duration = Duration::from_secs(5);

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

/// Where log lines go: cheap to clone, one buffer behind every clone.
#[derive(Clone)]
pub struct LogQueue {
    shared: Arc<Shared>,
}

struct Shared {
    buffer: Mutex<Buffer>,
    /// Wakes the writer early, to stop.
    wake: Condvar,
    /// Bytes the buffer holds at most.
    capacity: usize,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    stop: bool,
}

/// Writes what is left and stops the writer thread when dropped.
pub struct Flush {
    shared: Arc<Shared>,
    /// Closed by the writer thread when it is done.
    done: std::sync::mpsc::Receiver<()>,
}

impl LogQueue {
    /// A queue of at most `capacity` bytes in front of `out`, and the
    /// thread that writes it out.
    pub fn start(capacity: usize, mut out: impl Write + Send + 'static) -> (LogQueue, Flush) {
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Buffer::default()),
            wake: Condvar::new(),
            capacity,
            dropped: AtomicU64::new(0),
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
                        let stop = {
                            let buffer = shared.lock();
                            let (mut buffer, _) = shared
                                .wake
                                .wait_timeout_while(buffer, FLUSH_EVERY, |b| !b.stop)
                                .unwrap_or_else(|e| e.into_inner());
                            std::mem::swap(&mut buffer.bytes, &mut spare);
                            buffer.stop
                        };
                        // A destination that fails loses these lines; there
                        // is nowhere else to say so.
                        let _ = out.write_all(&spare).and_then(|()| out.flush());
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
        self.shared.wake.notify_one();
        // Disconnected when the thread is done; a timeout leaves it stuck
        // in a write the process's exit then ends.
        let _ = self.done.recv_timeout(LAST_WRITE);
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
        let (queue, flush) = LogQueue::start(1 << 20, Sink(tx));
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
        let (queue, flush) = LogQueue::start(1000, Stuck(gate.clone(), tx));
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
}
