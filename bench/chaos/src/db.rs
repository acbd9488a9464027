//! What the database says, read with plain SQL over ATP's tables.
//!
//! The checks read every task and the log records that matter in a few
//! statements (a million tasks through the `Store` trait one by one would
//! take longer than the soak); the columns read are the stable core of
//! both schemas (`atp_task`, `atp_task_log`, `atp_task_type`).

use std::collections::HashMap;

use anyhow::Context as _;
use atp_core::Status;

/// One task's final state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskFact {
    /// Its status.
    pub status: Status,
}

/// What the checks need from the database.
#[derive(Debug, Default, Clone)]
pub struct Facts {
    /// Every task of the suite's types, by identifier.
    pub tasks: HashMap<String, TaskFact>,
    /// Tasks with more than one FINISHED log record, and how many.
    pub finished_twice: Vec<(String, u64)>,
    /// The times (UTC µs) of each task's ACCEPTED records after its first:
    /// a rescue, a hand-back, a retry, a re-enqueue. A second run of a
    /// handler is legitimate only after one of them.
    pub requeues: HashMap<String, Vec<i64>>,
    /// The time (UTC µs) of each task's last FINISHED record: on
    /// PostgreSQL the settle transaction's start (`now()`), on SQLite the
    /// store's clock when it wrote the record.
    pub finished_at: HashMap<String, i64>,
}

/// Either engine's connection, for the harness's own reads and faults.
pub enum Db {
    /// A PostgreSQL client (application_name `atp-chaos`, so the
    /// backend-kill fault spares it).
    Postgres(tokio_postgres::Client),
    /// A SQLite file.
    Sqlite(std::path::PathBuf),
}

const TASKS_PG: &str = "SELECT t.identifier, t.status::bigint FROM atp_task t \
     JOIN atp_task_type y ON y.id = t.type_id WHERE y.name LIKE 'chaos%'";
const TASKS_SQLITE: &str = "SELECT t.identifier, t.status FROM atp_task t \
     JOIN atp_task_type y ON y.id = t.type_id WHERE y.name LIKE 'chaos%'";
const FINISHED_TWICE: &str = "SELECT t.identifier, count(*) FROM atp_task_log l \
     JOIN atp_task t ON t.id = l.task_id WHERE l.status = 5 \
     GROUP BY t.identifier HAVING count(*) > 1";
const REQUEUES_PG: &str = "SELECT t.identifier, (extract(epoch FROM l.time) * 1000000)::bigint \
     FROM atp_task_log l JOIN atp_task t ON t.id = l.task_id \
     WHERE l.status = 1 AND l.id > (SELECT min(m.id) FROM atp_task_log m WHERE m.task_id = l.task_id)";
const REQUEUES_SQLITE: &str = "SELECT t.identifier, l.time \
     FROM atp_task_log l JOIN atp_task t ON t.id = l.task_id \
     WHERE l.status = 1 AND l.id > (SELECT min(m.id) FROM atp_task_log m WHERE m.task_id = l.task_id)";
const FINISHED_AT_PG: &str = "SELECT t.identifier, (extract(epoch FROM max(l.time)) * 1000000)::bigint \
     FROM atp_task_log l JOIN atp_task t ON t.id = l.task_id WHERE l.status = 5 GROUP BY t.identifier";
const FINISHED_AT_SQLITE: &str = "SELECT t.identifier, max(l.time) \
     FROM atp_task_log l JOIN atp_task t ON t.id = l.task_id WHERE l.status = 5 GROUP BY t.identifier";
const OPEN: &str = "SELECT count(*) FROM atp_task t JOIN atp_task_type y ON y.id = t.type_id \
     WHERE y.name LIKE 'chaos%' AND t.status IN (1, 2, 3, 4)";

impl Db {
    /// Connects to `url` (`postgres://…` or `sqlite://PATH`).
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            let path = path.split_once('?').map_or(path, |(p, _)| p);
            return Ok(Db::Sqlite(path.into()));
        }
        let mut config: tokio_postgres::Config = url.parse().context("PostgreSQL URL")?;
        config.application_name("atp-chaos");
        config.connect_timeout(std::time::Duration::from_secs(5));
        let (client, conn) = config
            .connect(tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Db::Postgres(client))
    }

    fn sqlite(path: &std::path::Path) -> anyhow::Result<rusqlite::Connection> {
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        Ok(conn)
    }

    /// Tasks of the suite's types not yet ended (queued or held).
    pub async fn open_tasks(&self) -> anyhow::Result<u64> {
        match self {
            Db::Postgres(c) => {
                let n: i64 = c.query_one(OPEN, &[]).await?.get(0);
                Ok(u64::try_from(n)?)
            }
            Db::Sqlite(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    let n: i64 = Self::sqlite(&path)?.query_row(OPEN, [], |r| r.get(0))?;
                    Ok(u64::try_from(n)?)
                })
                .await?
            }
        }
    }

    /// Reads the facts the checks need.
    pub async fn facts(&self) -> anyhow::Result<Facts> {
        let mut facts = Facts::default();
        let status = |code: i64| Status::from_code(code).unwrap_or(Status::Undefined);
        match self {
            Db::Postgres(c) => {
                for r in c.query(TASKS_PG, &[]).await? {
                    facts.tasks.insert(
                        r.get(0),
                        TaskFact {
                            status: status(r.get(1)),
                        },
                    );
                }
                for r in c.query(FINISHED_TWICE, &[]).await? {
                    let n: i64 = r.get(1);
                    facts.finished_twice.push((r.get(0), u64::try_from(n)?));
                }
                for r in c.query(REQUEUES_PG, &[]).await? {
                    facts.requeues.entry(r.get(0)).or_default().push(r.get(1));
                }
                for r in c.query(FINISHED_AT_PG, &[]).await? {
                    facts.finished_at.insert(r.get(0), r.get(1));
                }
            }
            Db::Sqlite(path) => {
                let path = path.clone();
                facts = tokio::task::spawn_blocking(move || -> anyhow::Result<Facts> {
                    let conn = Self::sqlite(&path)?;
                    let mut facts = Facts::default();
                    let mut q = conn.prepare(TASKS_SQLITE)?;
                    let rows = q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))?;
                    for row in rows {
                        let (id, code) = row?;
                        facts.tasks.insert(
                            id,
                            TaskFact {
                                status: status(code),
                            },
                        );
                    }
                    let mut q = conn.prepare(FINISHED_TWICE)?;
                    let rows = q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))?;
                    for row in rows {
                        let (id, n): (String, i64) = row?;
                        facts.finished_twice.push((id, u64::try_from(n)?));
                    }
                    let mut q = conn.prepare(REQUEUES_SQLITE)?;
                    let rows = q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))?;
                    for row in rows {
                        let (id, t): (String, i64) = row?;
                        facts.requeues.entry(id).or_default().push(t);
                    }
                    let mut q = conn.prepare(FINISHED_AT_SQLITE)?;
                    let rows = q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))?;
                    for row in rows {
                        let (id, t): (String, i64) = row?;
                        facts.finished_at.insert(id, t);
                    }
                    Ok(facts)
                })
                .await??;
            }
        }
        for times in facts.requeues.values_mut() {
            times.sort_unstable();
        }
        Ok(facts)
    }

    /// One task's log, for a violation's report: `time status message`.
    pub async fn log_of(&self, identifier: &str) -> anyhow::Result<Vec<String>> {
        const PG: &str = "SELECT l.time::text, l.status::bigint, l.message FROM atp_task_log l \
             JOIN atp_task t ON t.id = l.task_id WHERE t.identifier = $1 ORDER BY l.id";
        const LITE: &str = "SELECT l.time, l.status, l.message FROM atp_task_log l \
             JOIN atp_task t ON t.id = l.task_id WHERE t.identifier = ?1 ORDER BY l.id";
        let name = |code: i64| Status::from_code(code).map_or("?", |s| s.name());
        match self {
            Db::Postgres(c) => Ok(c
                .query(PG, &[&identifier])
                .await?
                .iter()
                .map(|r| {
                    let t: String = r.get(0);
                    format!("{t} {} {}", name(r.get(1)), r.get::<_, String>(2))
                })
                .collect()),
            Db::Sqlite(path) => {
                let path = path.clone();
                let identifier = identifier.to_owned();
                tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
                    let conn = Self::sqlite(&path)?;
                    let mut q = conn.prepare(LITE)?;
                    let rows = q.query_map([&identifier], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, String>(2)?,
                        ))
                    })?;
                    let mut out = Vec::new();
                    for row in rows {
                        let (t, s, m) = row?;
                        out.push(format!("{t}us {} {m}", name(s)));
                    }
                    Ok(out)
                })
                .await?
            }
        }
    }

    /// `PRAGMA integrity_check` (SQLite); `None` on PostgreSQL.
    pub async fn integrity_check(&self) -> anyhow::Result<Option<String>> {
        match self {
            Db::Postgres(_) => Ok(None),
            Db::Sqlite(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || -> anyhow::Result<Option<String>> {
                    let conn = Self::sqlite(&path)?;
                    let mut q = conn.prepare("PRAGMA integrity_check")?;
                    let rows = q.query_map([], |r| r.get::<_, String>(0))?;
                    let lines = rows.collect::<Result<Vec<_>, _>>()?;
                    Ok(Some(lines.join("; ")))
                })
                .await?
            }
        }
    }

    /// The PostgreSQL client (faults that need one).
    pub fn pg(&self) -> Option<&tokio_postgres::Client> {
        match self {
            Db::Postgres(c) => Some(c),
            Db::Sqlite(_) => None,
        }
    }
}
