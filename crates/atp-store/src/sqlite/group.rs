//! Group commit of single enqueues: concurrent `task_enqueue` calls of one
//! process share a transaction.
//!
//! Each call leaves its job in the handle's [`Pending`] list and then asks
//! for the writer; whichever call gets the writer runs every job waiting
//! by then in one `BEGIN IMMEDIATE` transaction and answers each. Calls
//! that get the writer later find their job done (the list empty) and only
//! collect their answer. While one group commits, the next gathers: under
//! load many enqueues pay for one commit (its WAL frames and the writer
//! hand-over), and a lone enqueue is a group of one, as before.
//!
//! Every job runs in a savepoint of its own: a duplicate or a full queue
//! rolls back that job only and is that caller's answer, exactly as alone.
//! The jobs run in the order they arrived, so the queue limit and FIFO
//! order are those of the calls one after the other. A busy database (a
//! writer in another process) retries the whole group; a failed commit is
//! every job's failure, with the same kind (`Unavailable` stays
//! `Unavailable`, so callers retry a full disk as before).

use std::sync::Mutex;

use atp_core::{Error, Result, StoreOptions, Task};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::oneshot;

use super::task;
use super::{db, is_busy, retry_busy};
use crate::shared::Prepared;

/// One caller's enqueue, waiting for a writer.
pub(super) struct Job {
    prepared: Vec<Prepared>,
    answer: oneshot::Sender<Result<Task>>,
}

/// The jobs waiting for a writer, oldest first.
pub(super) type Pending = Mutex<Vec<Job>>;

/// Leaves `prepared` (one task) in `pending`; returns where its answer
/// will come. The caller then runs [`run_pending`] on the writer.
pub(super) fn submit(
    pending: &Pending,
    prepared: Vec<Prepared>,
) -> oneshot::Receiver<Result<Task>> {
    let (answer, receiver) = oneshot::channel();
    pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Job { prepared, answer });
    receiver
}

/// Runs every job waiting in `pending` in one transaction on `writer` and
/// answers each (nothing if another call took them all already).
pub(super) fn run_pending(writer: &mut Connection, pending: &Pending, options: &StoreOptions) {
    let jobs = std::mem::take(&mut *pending.lock().unwrap_or_else(|p| p.into_inner()));
    if jobs.is_empty() {
        return;
    }
    let outcome = retry_busy(|| {
        let tx = writer
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("beginning a transaction"))?;
        let now = options.clock.now_micros();
        if let [job] = jobs.as_slice() {
            // Alone: no savepoint; a failure rolls the transaction back.
            return match task::enqueue_one(&tx, &job.prepared, options, now) {
                Err(e) if is_busy(&e) => Err(e),
                Err(e) => Ok(vec![Err(e)]),
                Ok(task) => {
                    tx.commit().map_err(db("committing"))?;
                    Ok(vec![Ok(task)])
                }
            };
        }
        let answers = jobs
            .iter()
            .map(|job| run_job(&tx, job, options, now))
            .collect::<Result<Vec<_>>>()?;
        tx.commit().map_err(db("committing"))?;
        Ok(answers)
    });
    match outcome {
        Ok(answers) => {
            for (job, answer) in jobs.into_iter().zip(answers) {
                // A caller that went away (its future dropped) no longer
                // wants the answer; its task is enqueued all the same, as
                // with a dropped call that had committed.
                let _ = job.answer.send(answer);
            }
        }
        Err(e) => {
            for job in jobs {
                let _ = job.answer.send(Err(same_kind(&e)));
            }
        }
    }
}

/// One job in a savepoint: its own failure is its answer (`Ok(Err)`) and
/// rolls back only its writes; a busy database or a failing savepoint is
/// the group's failure (`Err`).
fn run_job(
    tx: &Transaction<'_>,
    job: &Job,
    options: &StoreOptions,
    now: i64,
) -> Result<Result<Task>> {
    tx.execute_batch("SAVEPOINT atp_enqueue")
        .map_err(db("beginning an enqueue"))?;
    match task::enqueue_one(tx, &job.prepared, options, now) {
        Ok(task) => {
            tx.execute_batch("RELEASE atp_enqueue")
                .map_err(db("ending an enqueue"))?;
            Ok(Ok(task))
        }
        Err(e) if is_busy(&e) => Err(e),
        Err(e) => {
            tx.execute_batch("ROLLBACK TO atp_enqueue; RELEASE atp_enqueue")
                .map_err(db("rolling an enqueue back"))?;
            Ok(Err(e))
        }
    }
}

/// The group's failure, for one of its callers: the same kind of error
/// with the same message.
fn same_kind(e: &Error) -> Error {
    match e {
        Error::Unavailable { message, .. } => Error::Unavailable {
            message: message.clone(),
            source: e.to_string().into(),
        },
        _ => Error::Database {
            context: "enqueueing (a group commit)".into(),
            source: e.to_string().into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use atp_core::{Error, NewTask, Store};

    use crate::conformance::{ident, register, task_type};
    use crate::testing::{SqliteDb, TestDb, eventually};

    /// Eleven enqueues that arrive while the writer is busy are committed
    /// by one transaction (they share its time), and the duplicate among
    /// them fails alone: the others are enqueued.
    #[tokio::test]
    async fn enqueues_waiting_for_the_writer_commit_together_and_fail_alone() {
        let db = SqliteDb::new().await;
        let s = db.store().clone();
        let t = register(&s, task_type("t")).await;
        s.task_enqueue(NewTask::new(t.clone(), ident("dup")))
            .await
            .unwrap();
        // The writer is busy: a thread holds it until told to let go.
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (held, holding) = std::sync::mpsc::channel::<()>();
        let inner = std::sync::Arc::clone(&s.inner);
        let holder = std::thread::spawn(move || {
            let _writer = inner.writer.lock().unwrap();
            held.send(()).unwrap();
            released.recv().unwrap();
        });
        holding.recv().unwrap();
        let calls: Vec<_> = [
            "a0", "a1", "a2", "a3", "a4", "dup", "a5", "a6", "a7", "a8", "a9",
        ]
        .into_iter()
        .map(|id| {
            let (s, t) = (s.clone(), t.clone());
            tokio::spawn(async move { s.task_enqueue(NewTask::new(t, ident(id))).await })
        })
        .collect();
        eventually(Duration::from_secs(10), "eleven waiting enqueues", || {
            let waiting = s.inner.pending_enqueues.lock().unwrap().len();
            async move { (waiting == 11).then_some(()) }
        })
        .await;
        release.send(()).unwrap();
        holder.join().unwrap();
        let mut times = Vec::new();
        for call in calls {
            match call.await.unwrap() {
                Ok(task) => times.push(task.enqueued_at),
                Err(Error::DuplicateTask { identifier, .. }) => assert_eq!(identifier, "dup"),
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!(times.len(), 10, "every other enqueue went in");
        assert!(
            times.iter().all(|&at| at == times[0]),
            "one transaction: {times:?}"
        );
        assert_eq!(s.queue_size().await.unwrap(), 11);
    }
}
