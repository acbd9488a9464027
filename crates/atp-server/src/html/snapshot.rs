//! What live pages and the event stream share: the counts by status and a
//! token that changes whenever any task does. Pages render a snapshot
//! (`layout.rs`), `/events` sends new ones (`live.rs`); neither needs the
//! other.

use std::fmt::Write as _;

use atp_core::{Status, Store, TaskCounts, TaskCursor, TaskFilter};

/// Statuses a task can have (UNDEFINED is never stored).
pub fn statuses() -> impl Iterator<Item = Status> {
    Status::ALL.into_iter().filter(|s| *s != Status::Undefined)
}

/// The counts and a token that changes whenever any task does.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Tasks by status.
    pub counts: TaskCounts,
    /// The newest update's position (time and id) and every count: a
    /// status change, progress or heartbeat moves the first, an enqueue or
    /// delete the others.
    pub token: String,
}

impl Snapshot {
    /// Reads the counts and the newest update.
    pub async fn read<S: Store>(store: &S) -> atp_core::Result<Snapshot> {
        let counts = store.task_counts().await?;
        let newest = store
            .task_list(&TaskFilter {
                limit: 1,
                ..TaskFilter::default()
            })
            .await?;
        let mut token = newest
            .tasks
            .first()
            .map_or_else(|| "none".to_owned(), |t| TaskCursor::after(t).to_string());
        for s in statuses() {
            let _ = write!(token, ":{}", counts.status(s));
        }
        Ok(Snapshot { counts, token })
    }

    /// The event's data: `{"token", "total", "counts": {NAME: n}}`.
    pub fn to_json(&self) -> String {
        let counts: serde_json::Map<String, serde_json::Value> = statuses()
            .map(|s| (s.name().to_owned(), self.counts.status(s).into()))
            .collect();
        serde_json::json!({
            "token": self.token,
            "total": self.counts.total(),
            "counts": counts,
        })
        .to_string()
    }
}
