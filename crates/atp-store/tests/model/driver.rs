//! Runs one case against an engine and the model side by side: each step's
//! result must be what the model expects, and after each step every task,
//! the queue counter, the counts and the daemon records read back through
//! the `Store` API must be the model's.

use std::collections::{BTreeMap, BTreeSet};

use atp_core::{
    Attempt, ClaimParams, DaemonId, DaemonInfo, Due, Error, NewTask, Retry, Status, StatusChange,
    Store, StoreExt, TaskFilter, TaskId, TaskIdentifier, TaskRef, TaskType, TestClock, TypeName,
};

use crate::ops::{Forge, Op, Pick};
use crate::rules::{
    Change, DAEMONS, MAttempt, Model, Outcome, Rescue, SILENT_SECS, Stamp, TYPES, Window,
};

/// How far a time the engine wrote may lie outside the step's window
/// (clock reads of the test and the engine are not one instant).
const SLACK_MICROS: i64 = 2_000;
/// How far a due time may be from its enqueue time plus the delay (the
/// engines round a delay to the microsecond in their own way).
const DUE_TOLERANCE_MICROS: i64 = 1_000;

/// One case's handle, types and daemons.
pub struct Case<'a, S> {
    pub store: &'a S,
    pub clock: &'a TestClock,
    pub types: Vec<TypeName>,
    pub daemons: [DaemonId; DAEMONS],
}

fn wall() -> i64 {
    atp_core::time::to_micros(time::OffsetDateTime::now_utc())
}

fn outcome(e: &Error) -> Result<Outcome, String> {
    Ok(match e {
        Error::TaskNotFound(_) => Outcome::NotFound,
        Error::StaleAttempt { .. } => Outcome::Stale,
        Error::InvalidTransition { source, .. } => Outcome::Invalid(source.transition, source.from),
        Error::QueueFull { .. } => Outcome::QueueFull,
        Error::DuplicateTask { .. } => Outcome::Duplicate,
        Error::InvalidArgument(_) => Outcome::InvalidArgument,
        other => return Err(format!("an engine error outside the rules: {other}")),
    })
}

fn of<T>(r: &Result<T, Error>) -> Result<Outcome, String> {
    match r {
        Ok(_) => Ok(Outcome::Ok),
        Err(e) => outcome(e),
    }
}

/// How often each kind of step had each outcome, over a run: printed at
/// the end, so a generator that stops reaching a rule shows.
pub static SEEN: std::sync::Mutex<BTreeMap<String, u64>> = std::sync::Mutex::new(BTreeMap::new());

/// Counts `what` for `engine` (both engines' runs share the process).
fn seen(engine: &str, what: String) {
    *SEEN
        .lock()
        .unwrap()
        .entry(format!("{engine}: {what}"))
        .or_default() += 1;
}

fn kind(step: &str) -> &str {
    step.split([' ', '(', '{']).next().unwrap_or(step)
}

fn agree(engine: &str, step: &str, expected: Outcome, actual: Outcome) -> Result<(), String> {
    seen(engine, format!("{} -> {actual:?}", kind(step)));
    if expected.admits(actual) {
        Ok(())
    } else {
        Err(format!(
            "{step}: the model expects {expected:?}, the engine returned {actual:?}"
        ))
    }
}

/// The case's types registered under fresh names (so one database serves
/// every case).
pub fn task_types(prefix: &str) -> Vec<TaskType> {
    TYPES
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let mut t = TaskType::new(
                TypeName::new(format!("{prefix}_t{i}")).expect("a valid type name"),
                atp_core::Handler::new("builtin:noop").expect("a valid handler"),
            )
            .with_timeout_secs(spec.timeout_secs)
            .with_retention_secs(spec.retention_secs)
            .with_max_starts(spec.max_starts)
            .with_priority(spec.priority);
            if let Some(p) = spec.retry {
                t = t.with_retry(p);
            }
            if let Some(m) = spec.max_running {
                t = t.with_max_running(m);
            }
            t
        })
        .collect()
}

impl<S: Store> Case<'_, S> {
    fn window(&self, lo_wall: i64) -> Window {
        let shift = self.clock.clock().shift_micros();
        Window {
            lo: lo_wall + shift,
            hi: wall() + shift,
        }
    }

    fn attempt(&self, model: &Model, a: MAttempt) -> Attempt {
        Attempt {
            task: model.tasks[a.task].id,
            holder: self.daemons[a.holder],
            lease: a.lease,
        }
    }

    /// The attempt a pick names, as the model and as the engine see it.
    fn pick(&self, model: &Model, p: Pick) -> Option<MAttempt> {
        if model.attempts.is_empty() {
            return None;
        }
        let mut a = model.attempts[p.index % model.attempts.len()];
        match p.forge {
            None => {}
            Some(Forge::Holder(k)) => a.holder = (a.holder + k) % DAEMONS,
            Some(Forge::NextLease) => a.lease += 1,
        }
        Some(a)
    }

    fn ident(n: u8) -> TaskIdentifier {
        TaskIdentifier::new(format!("i{n}")).expect("a valid identifier")
    }

    fn index_of(model: &Model, id: TaskId) -> Result<usize, String> {
        model
            .tasks
            .iter()
            .position(|t| t.id == id && !t.gone)
            .ok_or_else(|| format!("the engine returned task {id}, which the model does not have"))
    }

    fn rescues(model: &Model, found: &[atp_core::Rescued]) -> Result<Vec<Rescue>, String> {
        let mut out = found
            .iter()
            .map(|r| Ok((Self::index_of(model, r.id)?, r.outcome, r.starts)))
            .collect::<Result<Vec<_>, String>>()?;
        out.sort();
        Ok(out)
    }

    /// Runs one step on the engine and the model.
    pub async fn step(&self, model: &mut Model, op: &Op) -> Result<(), String> {
        let step = format!("{op:?}");
        let lo = wall();
        let s = self.store;
        match op {
            Op::Enqueue {
                ty,
                ident,
                priority,
                due_secs,
            } => {
                let mut new = NewTask::new(self.types[*ty].clone(), Self::ident(*ident));
                if let Some(p) = priority {
                    new = new.with_priority(*p);
                }
                if let Some(d) = due_secs {
                    new = new.with_due(Due::After(std::time::Duration::from_secs(*d)));
                }
                let got = s.task_enqueue(new).await;
                let expected = model.enqueue(*ty, *ident, *priority, *due_secs);
                agree(
                    s.engine(),
                    &step,
                    expected.err().unwrap_or(Outcome::Ok),
                    of(&got)?,
                )?;
                if let (Ok(i), Ok(task)) = (expected, got) {
                    model.tasks[i].id = task.id;
                }
            }
            Op::EnqueueMany { items } => {
                let news = items
                    .iter()
                    .map(|&(ty, ident, p)| {
                        let n = NewTask::new(self.types[ty].clone(), Self::ident(ident));
                        match p {
                            Some(p) => n.with_priority(p),
                            None => n,
                        }
                    })
                    .collect();
                let got = s.task_enqueue_many(news).await;
                let expected = model.enqueue_many(items);
                agree(
                    s.engine(),
                    &step,
                    expected.as_ref().err().copied().unwrap_or(Outcome::Ok),
                    of(&got)?,
                )?;
                if let (Ok(is), Ok(ids)) = (expected, got) {
                    if is.len() != ids.len() {
                        return Err(format!("{step}: {} ids for {} tasks", ids.len(), is.len()));
                    }
                    for (i, id) in is.into_iter().zip(ids) {
                        model.tasks[i].id = id;
                    }
                }
            }
            Op::Claim {
                holder,
                limit,
                types,
                start,
                starting,
            } => {
                let mut params = ClaimParams::new(self.daemons[*holder], *limit);
                if let Some(ts) = types {
                    params = params.with_types(ts.iter().map(|&t| self.types[t].clone()).collect());
                }
                if let Some(n) = starting {
                    params = params.starting(*n);
                }
                // The start number of a task left SCHEDULED is the one its
                // start will have: compared with the model's after it.
                let got: Vec<(Attempt, Option<u32>)> = if *start {
                    s.task_claim_start(&params)
                        .await
                        .map_err(|e| format!("{step}: {e}"))?
                        .into_iter()
                        .map(|t| {
                            let counted = t.start - u32::from(t.status == Status::Scheduled);
                            (t.attempt, Some(counted))
                        })
                        .collect()
                } else {
                    s.task_claim(&params)
                        .await
                        .map_err(|e| format!("{step}: {e}"))?
                        .into_iter()
                        .map(|t| (t.attempt, None))
                        .collect()
                };
                let now = self.window(lo);
                let expected = model
                    .claim(*holder, *limit, types.as_deref(), (*start, *starting), now)
                    .map_err(|a| format!("{step}: ambiguous timing: {}", a.0))?;
                let actual = got
                    .iter()
                    .map(|(a, _)| Self::index_of(model, a.task))
                    .collect::<Result<Vec<_>, _>>()?;
                seen(
                    s.engine(),
                    format!("{} -> {} task(s)", kind(&step), actual.len()),
                );
                if actual != expected {
                    return Err(format!(
                        "{step}: the model claims tasks {expected:?} (in this order), the engine claimed {actual:?}"
                    ));
                }
                for (i, (a, started)) in expected.iter().zip(&got) {
                    let t = &model.tasks[*i];
                    if a.holder != self.daemons[*holder] || a.lease != t.lease {
                        return Err(format!(
                            "{step}: task {i} claimed as {a:?}, the model's lease is {}",
                            t.lease
                        ));
                    }
                    if let Some(n) = started
                        && *n != t.starts
                    {
                        return Err(format!(
                            "{step}: task {i} is at start {n}, the model's is {}",
                            t.starts
                        ));
                    }
                }
            }
            Op::Start(p) => {
                let Some(a) = self.pick(model, *p) else {
                    return Ok(());
                };
                let got = s.task_start(self.attempt(model, a)).await;
                let expected = model.start(a);
                agree(
                    s.engine(),
                    &step,
                    expected.err().unwrap_or(Outcome::Ok),
                    of(&got)?,
                )?;
                if let (Ok(n), Ok(started)) = (expected, got)
                    && started.start != n
                {
                    return Err(format!(
                        "{step}: start {} returned, the model counts {n}",
                        started.start
                    ));
                }
            }
            Op::Heartbeat(p) => {
                let Some(a) = self.pick(model, *p) else {
                    return Ok(());
                };
                let got = s.task_heartbeat(self.attempt(model, a)).await;
                agree(s.engine(), &step, model.heartbeat(a), of(&got)?)?;
            }
            Op::Change(p, c) => {
                let Some(a) = self.pick(model, *p) else {
                    return Ok(());
                };
                let at = self.attempt(model, a);
                let change = match c {
                    Change::Finish => StatusChange::finish(at, "done"),
                    Change::FinishUnlessTerminal => {
                        StatusChange::finish_unless_terminal(at, "done")
                    }
                    Change::Fail => StatusChange::fail(at, "failed"),
                    Change::FailUnlessTerminal => StatusChange::fail_unless_terminal(at, "failed"),
                    Change::FailPermanently => StatusChange::fail_permanently(at, "failed"),
                    Change::RetryAfter(secs) => StatusChange::retry_after(
                        at,
                        "again",
                        std::time::Duration::from_secs(*secs),
                    ),
                    Change::Pause => StatusChange::pause(at, "pause"),
                    Change::Resume => StatusChange::resume(at, "resume"),
                    Change::HandBack => StatusChange::hand_back(at, "back"),
                    Change::Start => StatusChange::start(at),
                };
                debug_assert!(
                    !matches!(c, Change::Fail) || change.retry() == Retry::ByPolicy,
                    "a plain failure follows the policy"
                );
                let got = s.task_set_status(change).await;
                agree(s.engine(), &step, model.change(a, *c), of(&got)?)?;
            }
            Op::Cancel(k) | Op::Reenqueue(k) | Op::Delete(k) => {
                if model.tasks.is_empty() {
                    return Ok(());
                }
                let i = k % model.tasks.len();
                let task = TaskRef::Id(model.tasks[i].id);
                let (expected, actual) = match op {
                    Op::Cancel(_) => (model.cancel(i), of(&s.task_cancel(&task, None).await)?),
                    Op::Reenqueue(_) => {
                        (model.reenqueue(i), of(&s.task_reenqueue(&task, "").await)?)
                    }
                    _ => (model.delete(i), of(&s.task_delete(&task).await)?),
                };
                agree(s.engine(), &step, expected, actual)?;
            }
            Op::RequeueAbandoned => {
                let got = s
                    .task_requeue_abandoned()
                    .await
                    .map_err(|e| format!("{step}: {e}"))?;
                let now = self.window(lo);
                let actual = Self::rescues(model, &got)?;
                seen(
                    s.engine(),
                    format!("RequeueAbandoned -> {} task(s)", actual.len()),
                );
                let expected = model
                    .requeue_abandoned(now)
                    .map_err(|a| format!("{step}: ambiguous timing: {}", a.0))?;
                if actual != expected {
                    return Err(format!(
                        "{step}: the model rescues {expected:?}, the engine rescued {actual:?}"
                    ));
                }
            }
            Op::ReapDead => {
                let got = s
                    .daemon_reap_dead(atp_core::DeadRule::silent_for(SILENT_SECS))
                    .await
                    .map_err(|e| format!("{step}: {e}"))?;
                let now = self.window(lo);
                let mut actual = Vec::new();
                for r in &got {
                    let d = self
                        .daemons
                        .iter()
                        .position(|&d| d == r.id)
                        .ok_or_else(|| format!("{step}: reaped an unknown daemon {}", r.id))?;
                    actual.push((d, Self::rescues(model, &r.rescued)?));
                }
                actual.sort();
                seen(
                    s.engine(),
                    format!("ReapDead -> {} daemon(s)", actual.len()),
                );
                let expected = model
                    .reap_dead(now)
                    .map_err(|a| format!("{step}: ambiguous timing: {}", a.0))?;
                if actual != expected {
                    return Err(format!(
                        "{step}: the model reaps {expected:?}, the engine reaped {actual:?}"
                    ));
                }
            }
            Op::DaemonRegister(d) => {
                let now = atp_core::time::now();
                s.daemon_register(&DaemonInfo {
                    id: self.daemons[*d],
                    host: "model".into(),
                    pid: 1,
                    started_at: now,
                    heartbeat_at: now,
                    handlers: vec!["builtin:noop".into()],
                })
                .await
                .map_err(|e| format!("{step}: {e}"))?;
                model.daemon_register(*d);
            }
            Op::DaemonHeartbeat(d) => {
                let got = s
                    .daemon_heartbeat(self.daemons[*d])
                    .await
                    .map_err(|e| format!("{step}: {e}"))?;
                let expected = model.daemon_heartbeat(*d);
                if got != expected {
                    return Err(format!(
                        "{step}: the model says {expected}, the engine {got}"
                    ));
                }
            }
            Op::DaemonDeregister(d) => {
                s.daemon_deregister(self.daemons[*d])
                    .await
                    .map_err(|e| format!("{step}: {e}"))?;
                model.daemon_deregister(*d);
            }
            Op::Advance(secs) => self.clock.advance(std::time::Duration::from_secs(*secs)),
            Op::EnqueueAt { ty, ident, secs } => {
                // Whole microseconds, as both engines keep times.
                let at = lo + self.clock.clock().shift_micros() + secs * 1_000_000;
                let new = NewTask::new(self.types[*ty].clone(), Self::ident(*ident))
                    .with_due(Due::At(atp_core::time::from_micros(at)));
                let got = s.task_enqueue(new).await;
                let expected = model.enqueue_at(*ty, *ident, at);
                agree(
                    s.engine(),
                    &step,
                    expected.err().unwrap_or(Outcome::Ok),
                    of(&got)?,
                )?;
                if let (Ok(i), Ok(task)) = (expected, got) {
                    model.tasks[i].id = task.id;
                }
            }
            Op::ResponsePut(p) => {
                let Some(a) = self.pick(model, *p) else {
                    return Ok(());
                };
                let body = format!("response of {a:?}").into_bytes();
                let response = atp_core::Response::new("text/plain", body.clone());
                let got = s.task_response_put(self.attempt(model, a), &response).await;
                agree(s.engine(), &step, model.response_put(a, &body), of(&got)?)?;
                let t = &model.tasks[a.task];
                if !t.gone {
                    let stored = s
                        .task_response_get(&TaskRef::Id(t.id))
                        .await
                        .map_err(|e| format!("{step}: {e}"))?
                        .map(|r| r.body);
                    if stored != t.response {
                        return Err(format!(
                            "{step}: the response reads {stored:?}, the model's is {:?}",
                            t.response
                        ));
                    }
                }
            }
            Op::ReenqueueAll(status, ty) => {
                let got = s
                    .task_reenqueue_all(&atp_core::BulkReenqueue {
                        status: *status,
                        task_type: ty.map(|t| self.types[t].clone()),
                        message: String::new(),
                    })
                    .await;
                let expected = model.reenqueue_all(*status, *ty);
                agree(
                    s.engine(),
                    &step,
                    expected.err().unwrap_or(Outcome::Ok),
                    of(&got)?,
                )?;
                if let (Ok(n), Ok(m)) = (got, expected)
                    && n != m
                {
                    return Err(format!(
                        "{step}: {n} re-enqueued, the model re-enqueues {m}"
                    ));
                }
            }
            Op::Progress(p, percent) => {
                let Some(a) = self.pick(model, *p) else {
                    return Ok(());
                };
                let progress = atp_core::Progress {
                    percent: *percent,
                    message: format!("at {percent:?}"),
                };
                let got = s.task_progress(self.attempt(model, a), &progress).await;
                agree(
                    s.engine(),
                    &step,
                    model.progress(a, *percent, &progress.message),
                    of(&got)?,
                )?;
            }
            Op::DeleteRetired(limit) => {
                let got = s
                    .task_delete_retired(*limit)
                    .await
                    .map_err(|e| format!("{step}: {e}"))?;
                let now = self.window(lo);
                let candidates = model
                    .retirable(now)
                    .map_err(|a| format!("{step}: ambiguous timing: {}", a.0))?;
                let want = candidates.len().min(*limit as usize);
                let mut deleted = Vec::new();
                for r in &got {
                    let i = Self::index_of(model, r.id)?;
                    if !candidates.contains(&i) {
                        return Err(format!(
                            "{step}: task {i} was retired, the model keeps it (retirable: {candidates:?})"
                        ));
                    }
                    deleted.push(i);
                }
                seen(
                    s.engine(),
                    format!("DeleteRetired -> {} task(s)", deleted.len()),
                );
                if deleted.len() != want {
                    return Err(format!(
                        "{step}: {} retired, the model retires {want} of {candidates:?}",
                        deleted.len()
                    ));
                }
                for i in deleted {
                    model.tasks[i].gone = true;
                }
            }
            Op::PauseType(t, paused) => {
                let got = s
                    .task_type_set_paused(&self.types[*t], *paused)
                    .await
                    .map_err(|e| format!("{step}: {e}"))?;
                if got.paused != *paused {
                    return Err(format!("{step}: the type reads paused = {}", got.paused));
                }
                model.paused[*t] = *paused;
            }
        }
        let now = self.window(lo);
        self.check_state(model, now)
            .await
            .map_err(|e| format!("after {step}: {e}"))
    }

    /// Reads every task, the queue counter, the counts and the daemon
    /// records back and compares them with the model; resolves the times
    /// the step set.
    async fn check_state(&self, model: &mut Model, now: Window) -> Result<(), String> {
        let s = self.store;
        let page = s
            .task_list(&TaskFilter {
                limit: 1000,
                ..TaskFilter::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let mine: BTreeSet<&TypeName> = self.types.iter().collect();
        let mut listed: BTreeMap<TaskId, atp_core::Task> = page
            .tasks
            .into_iter()
            .filter(|t| mine.contains(&t.task_type))
            .map(|t| (t.id, t))
            .collect();
        let in_window = |what: &str, i: usize, t: i64| {
            if t < now.lo - SLACK_MICROS || t > now.hi + SLACK_MICROS {
                Err(format!(
                    "task {i}'s {what} {t} is outside the step's window {now:?}"
                ))
            } else {
                Ok(t)
            }
        };
        for (i, m) in model.tasks.iter_mut().enumerate() {
            if m.gone {
                continue;
            }
            let e = listed
                .remove(&m.id)
                .ok_or_else(|| format!("task {i} ({}) is missing", m.id))?;
            let holder = m.holder.map(|h| self.daemons[h]);
            let want = (
                self.types[m.ty].as_str(),
                format!("i{}", m.ident),
                m.status,
                m.starts,
                holder,
                m.lease,
                m.priority,
            );
            let got = (
                e.task_type.as_str(),
                e.identifier.to_string(),
                e.status,
                e.starts,
                e.holder,
                e.lease,
                e.priority,
            );
            if want != got {
                return Err(format!(
                    "task {i}: the model has (type, identifier, status, starts, holder, lease, priority) = {want:?}, the engine {got:?}"
                ));
            }
            let progress = e.progress.as_ref().map(|p| (p.percent, p.message.clone()));
            if progress != m.progress {
                return Err(format!(
                    "task {i}: the model's progress is {:?}, the engine's {progress:?}",
                    m.progress
                ));
            }
            let log = s
                .task_log(&TaskRef::Id(m.id))
                .await
                .map_err(|e| e.to_string())?;
            if log.len() != m.log || log.last().map(|r| r.status) != Some(m.status) {
                return Err(format!(
                    "task {i}: the model has {} log records ending {:?}, the engine {} ending {:?}",
                    m.log,
                    m.status,
                    log.len(),
                    log.last().map(|r| (r.status, &r.message))
                ));
            }
            let (updated, enqueued, due) = (
                atp_core::time::to_micros(e.updated_at),
                atp_core::time::to_micros(e.enqueued_at),
                atp_core::time::to_micros(e.due_at),
            );
            match m.updated_at {
                Stamp::Now => m.updated_at = Stamp::At(in_window("update time", i, updated)?),
                Stamp::At(t) if t != updated => {
                    return Err(format!(
                        "task {i}'s update time moved from {t} to {updated} in a step that did not touch it"
                    ));
                }
                Stamp::At(_) => {}
            }
            match m.enqueued_at {
                Stamp::Now => {
                    m.enqueued_at = Stamp::At(in_window("enqueue time", i, enqueued)?);
                    if let Some(at) = m.due_exact.take() {
                        if due != at {
                            return Err(format!(
                                "task {i} is due at {due}, it was enqueued due at {at}"
                            ));
                        }
                    } else if (due - (enqueued + m.due_after)).abs() > DUE_TOLERANCE_MICROS {
                        return Err(format!(
                            "task {i} is due at {due}, the model expects its enqueue time {enqueued} + {} µs",
                            m.due_after
                        ));
                    }
                    m.due_at = Stamp::At(due);
                }
                Stamp::At(t) => {
                    if t != enqueued {
                        return Err(format!(
                            "task {i}'s enqueue time moved from {t} to {enqueued}"
                        ));
                    }
                    if m.due_at != Stamp::At(due) {
                        return Err(format!(
                            "task {i}'s due time moved from {:?} to {due}",
                            m.due_at
                        ));
                    }
                }
            }
        }
        if let Some((id, t)) = listed.into_iter().next() {
            return Err(format!(
                "the engine has task {id} ({:?}), which the model does not",
                t.status
            ));
        }
        let queued = s.queue_size().await.map_err(|e| e.to_string())?;
        if queued != model.accepted() {
            return Err(format!(
                "the queue counter is {queued}, the model has {} queued",
                model.accepted()
            ));
        }
        let counts = s.task_counts().await.map_err(|e| e.to_string())?;
        for status in Status::ALL {
            let want = model.live().filter(|(_, t)| t.status == status).count() as u64;
            if counts.status(status) != want {
                return Err(format!(
                    "{} tasks counted {status}, the model has {want}",
                    counts.status(status)
                ));
            }
        }
        let daemons = s.daemon_list().await.map_err(|e| e.to_string())?;
        for d in 0..DAEMONS {
            let found = daemons.iter().find(|r| r.id == self.daemons[d]);
            match (model.daemons[d], found) {
                (None, None) => {}
                (Some(Stamp::Now), Some(r)) => {
                    let beat = atp_core::time::to_micros(r.heartbeat_at);
                    if beat < now.lo - SLACK_MICROS || beat > now.hi + SLACK_MICROS {
                        return Err(format!(
                            "daemon {d}'s heartbeat {beat} is outside the step's window {now:?}"
                        ));
                    }
                    model.daemons[d] = Some(Stamp::At(beat));
                }
                (Some(Stamp::At(t)), Some(r)) if atp_core::time::to_micros(r.heartbeat_at) == t => {
                }
                (want, got) => {
                    return Err(format!(
                        "daemon {d}: the model has {want:?}, the engine {:?}",
                        got.map(|r| r.heartbeat_at)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Removes what the case made, whatever its result.
    pub async fn clean_up(&self) {
        for t in &self.types {
            let _ = self.store.task_type_delete(t, true).await;
        }
        for d in self.daemons {
            let _ = self.store.daemon_deregister(d).await;
        }
    }
}
