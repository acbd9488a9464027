//! Types with a limit of running tasks (`max_running`): claims that may
//! take their tasks lock their type rows first.
//!
//! A claim counts a limited type's held tasks and takes at most the room
//! left (`queue.rs: picked_cte`, `limited`). Two claims counting at once
//! would both see the same room, so a claim that may take limited tasks
//! runs in a transaction that first locks the rows of the limited types it
//! may take (`FOR NO KEY UPDATE`, in id order, which an enqueue's foreign
//! key check, `FOR KEY SHARE`, does not wait for). Its claim statement
//! starts after the lock is granted, so under READ COMMITTED its snapshot
//! includes everything the previous holder of the lock committed: the
//! count is exact until this claim commits. Claims of other types never
//! take the lock: the one-statement picks leave limited types out.
//!
//! Whether a database has limited types at all is learnt from the
//! promotion statement that goes before every claim (`due.rs`) and kept
//! per handle: a stale "no" only means the next claim leaves the limited
//! types' tasks for later (never too many), a stale "yes" costs one
//! transaction.

use std::future::Future;

use atp_core::Result;
use atp_core::store::ClaimParams;

use super::Conn;

/// Runs `claim` after locking the limited types' rows the claim may take,
/// when `limited`; else just runs it.
pub(super) async fn locked_then<T>(
    c: Conn<'_>,
    limited: bool,
    p: &ClaimParams,
    claim: impl Future<Output = Result<T>>,
) -> Result<T> {
    if limited {
        match &p.types {
            Some(names) => {
                let names: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
                c.query(
                    "locking limited types",
                    "SELECT id FROM atp_task_type
                     WHERE max_running IS NOT NULL AND name = ANY($1)
                     ORDER BY id FOR NO KEY UPDATE",
                    &[&names],
                )
                .await?;
            }
            None => {
                c.query(
                    "locking limited types",
                    "SELECT id FROM atp_task_type WHERE max_running IS NOT NULL
                     ORDER BY id FOR NO KEY UPDATE",
                    &[],
                )
                .await?;
            }
        }
    }
    claim.await
}
