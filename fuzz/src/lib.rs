//! What the fuzz targets share: a thread with a guest fiber's stack for
//! the code under test, and the grant and tables of the SQL targets.

use rawalite_host::capabilities::db::DbGrant;
use rawalite_host::capabilities::db::portable::Schema;
use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel};

/// A guest's fiber: what the host's parsers once ran on, and what any
/// recursion they do must fit in (an overflow aborts, which libFuzzer
/// reports as a crash).
const FIBER_STACK: usize = 2 << 20;

type Job = Box<dyn FnOnce() + Send>;

/// Runs `work` on a thread whose stack is a guest fiber's.
pub fn on_fiber_stack<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    static JOBS: Mutex<Option<Sender<Job>>> = Mutex::new(None);
    let (answer, result) = channel();
    let job: Job = Box::new(move || {
        let _ = answer.send(work());
    });
    let mut jobs = JOBS.lock().unwrap();
    let sender = jobs.get_or_insert_with(|| {
        let (sender, receiver) = channel::<Job>();
        std::thread::Builder::new()
            .stack_size(FIBER_STACK)
            .spawn(move || {
                for job in receiver {
                    job();
                }
            })
            .expect("a thread");
        sender
    });
    sender.send(job).expect("the fiber thread runs");
    drop(jobs);
    // A panic on that thread drops the sender: a crash, as it should be.
    result.recv().expect("the work panicked")
}

/// The demo app's tables, as the SQL check knows them.
pub fn schema() -> Schema {
    let columns = |names: &[&str]| names.iter().map(|c| c.to_string()).collect();
    Schema {
        columns: [
            (
                "customers",
                columns(&[
                    "id",
                    "name",
                    "email",
                    "phone",
                    "address",
                    "notes",
                    "created_at",
                    "updated_at",
                ]),
            ),
            (
                "invoices",
                columns(&[
                    "id",
                    "number",
                    "customer_id",
                    "issued_on",
                    "due_on",
                    "status",
                    "paid_on",
                    "tax_rate_bp",
                    "subtotal_cents",
                    "tax_cents",
                    "total_cents",
                    "notes",
                    "created_at",
                ]),
            ),
            (
                "invoice_items",
                columns(&[
                    "id",
                    "invoice_id",
                    "position",
                    "description",
                    "quantity",
                    "unit_price_cents",
                    "line_total_cents",
                ]),
            ),
            ("settings", columns(&["key", "value"])),
        ]
        .into_iter()
        .map(|(t, c)| (t.to_owned(), c))
        .collect(),
        identity: [
            ("customers", "id"),
            ("invoices", "id"),
            ("invoice_items", "id"),
        ]
        .into_iter()
        .map(|(t, c)| (t.to_owned(), c.to_owned()))
        .collect(),
    }
}

/// A guest that reads customers and invoices and writes customers.
pub fn grant() -> DbGrant {
    DbGrant::new(["customers", "invoices"], ["customers"])
}
