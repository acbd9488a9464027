//! The reference model: the protocol's rules, written from the `Store`
//! trait's and `decide`'s documentation (not from either engine), over a
//! few tasks, three types and three daemons.
//!
//! Times are the engine's own (microseconds on the store's clock), read
//! back after the step that set them: the model decides *which* times a
//! step sets and checks the engine's values against the step's window;
//! whether a time has passed ("due", "abandoned", "silent") is decided
//! against that window, and a value inside it is reported as ambiguous
//! (the generator's delays keep every value seconds away from it).

use atp_core::{RetryPolicy, Status, TaskId, Transition};

/// The test's task types: each exercises other rules.
#[derive(Debug, Clone, Copy)]
pub struct TypeSpec {
    pub max_starts: u32,
    /// Seconds an ended task is kept; zero or less: forever.
    pub retention_secs: f64,
    pub retry: Option<RetryPolicy>,
    pub timeout_secs: f64,
    pub max_running: Option<u32>,
    pub priority: i32,
}

/// The retry policy of type 1: every delay in (3.75 s, 5 s] (the jitter
/// takes up to a quarter), so it never lands within 3.75 s of a clock move
/// (multiples of 10 s).
pub const POLICY: RetryPolicy = RetryPolicy {
    delay_secs: 5.0,
    max_delay_secs: 5.0,
};

pub const TYPES: [TypeSpec; 3] = [
    // Two starts, no retries, no limit, ended tasks retired after 25 s.
    TypeSpec {
        max_starts: 2,
        retention_secs: 25.0,
        retry: None,
        timeout_secs: 45.0,
        max_running: None,
        priority: 0,
    },
    // Retried by policy, one held at a time, a higher default priority.
    TypeSpec {
        max_starts: 3,
        retention_secs: -1.0,
        retry: Some(POLICY),
        timeout_secs: 25.0,
        max_running: Some(1),
        priority: 1,
    },
    // One start only, two held at a time, a longer timeout.
    TypeSpec {
        max_starts: 1,
        retention_secs: -1.0,
        retry: None,
        timeout_secs: 95.0,
        max_running: Some(2),
        priority: 0,
    },
];

/// The store handle's queue limit.
pub const QUEUE_LIMIT: u64 = 5;
/// The silence after which `daemon_reap_dead` declares a daemon dead.
pub const SILENT_SECS: f64 = 25.0;
/// How many daemons (holders) the cases use.
pub const DAEMONS: usize = 3;

const SEC: i64 = 1_000_000;

/// What a call returned, reduced to what the rules decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    NotFound,
    Stale,
    Invalid(Transition, Status),
    QueueFull,
    Duplicate,
    InvalidArgument,
}

impl Outcome {
    /// Whether an engine's outcome is what the model expects.
    pub fn admits(self, actual: Outcome) -> bool {
        self == actual
    }
}

/// A time the engine set in the current step and the model has not read
/// back yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    /// Read back and checked.
    At(i64),
    /// Set by the current step (its "now").
    Now,
}

/// One task as the rules see it.
#[derive(Debug, Clone)]
pub struct MTask {
    /// The engine's id (set once the enqueue returned).
    pub id: TaskId,
    pub ty: usize,
    pub ident: u8,
    pub status: Status,
    pub starts: u32,
    pub holder: Option<usize>,
    pub lease: u64,
    pub priority: i32,
    pub updated_at: Stamp,
    pub enqueued_at: Stamp,
    /// The due time; `due_after` is set (with `enqueued_at = Now`) while
    /// the engine's value is still to be read back.
    pub due_at: Stamp,
    /// The delay from `enqueued_at` to `due_at` of the current step.
    pub due_after: i64,
    /// A due time given as such (`Due::At`) in the current step, instead.
    pub due_exact: Option<i64>,
    /// The stored response, when the model knows one was stored.
    pub response: Option<Vec<u8>>,
    /// Deleted by an operator or retired.
    pub gone: bool,
    /// How many log records it has.
    pub log: usize,
    /// The latest progress reported since the last start: (percent,
    /// message). A start and an operator's re-enqueue clear it; a rescue,
    /// a hand-back or a retry keep it (what both engines do; the field's
    /// doc says "in the current attempt").
    pub progress: Option<(Option<f64>, String)>,
}

/// An attempt some call returned: the fencing token the driver replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MAttempt {
    pub task: usize,
    pub holder: usize,
    pub lease: u64,
}

/// A holder's change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Finish,
    FinishUnlessTerminal,
    Fail,
    FailUnlessTerminal,
    FailPermanently,
    RetryAfter(u64),
    Pause,
    Resume,
    HandBack,
    /// The holder starts a task it claimed ahead (SCHEDULED → RUNNING).
    Start,
}

/// The window of one step's "now" on the store's clock: after `lo`, not
/// after `hi`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub lo: i64,
    pub hi: i64,
}

/// A timing the window cannot decide.
#[derive(Debug)]
pub struct Ambiguous(pub String);

impl Window {
    /// Whether `t` is at or before the step's now.
    pub fn reached(&self, t: i64, what: &str) -> Result<bool, Ambiguous> {
        if t <= self.lo {
            Ok(true)
        } else if t > self.hi {
            Ok(false)
        } else {
            Err(Ambiguous(format!(
                "{what} at {t} falls inside the step's window {self:?}"
            )))
        }
    }
}

/// A rescued task: (model index, outcome, starts).
pub type Rescue = (usize, Status, u32);

#[derive(Debug, Clone, Default)]
pub struct Model {
    pub tasks: Vec<MTask>,
    pub paused: [bool; 3],
    /// Each daemon's record: its heartbeat time, `None` without a record.
    pub daemons: [Option<Stamp>; DAEMONS],
    pub attempts: Vec<MAttempt>,
}

fn stamp(s: Stamp) -> i64 {
    match s {
        Stamp::At(t) => t,
        Stamp::Now => panic!("a time of this step read before it was read back"),
    }
}

impl Model {
    pub fn live(&self) -> impl Iterator<Item = (usize, &MTask)> {
        self.tasks.iter().enumerate().filter(|(_, t)| !t.gone)
    }

    pub fn accepted(&self) -> u64 {
        self.live()
            .filter(|(_, t)| t.status == Status::Accepted)
            .count() as u64
    }

    fn held_of(&self, ty: usize) -> u32 {
        self.live()
            .filter(|(_, t)| t.ty == ty && t.status.is_held())
            .count() as u32
    }

    fn exists(&self, ty: usize, ident: u8) -> bool {
        self.live().any(|(_, t)| t.ty == ty && t.ident == ident)
    }

    /// The refusal of a batch of `n` new tasks, if any.
    fn refuse_enqueue(&self, keys: &[(usize, u8)]) -> Option<Outcome> {
        let mut seen = Vec::new();
        let mut dup = false;
        for &k in keys {
            dup |= self.exists(k.0, k.1) || seen.contains(&k);
            seen.push(k);
        }
        let full = self.accepted() + keys.len() as u64 > QUEUE_LIMIT;
        // A duplicate is named before a full queue (`Store::task_enqueue`).
        match (dup, full) {
            (true, _) => Some(Outcome::Duplicate),
            (false, true) => Some(Outcome::QueueFull),
            (false, false) => None,
        }
    }

    fn new_task(&mut self, ty: usize, ident: u8, priority: Option<i32>, due_after: i64) -> usize {
        self.tasks.push(MTask {
            id: TaskId(-1),
            ty,
            ident,
            status: Status::Accepted,
            starts: 0,
            holder: None,
            lease: 0,
            priority: priority.unwrap_or(TYPES[ty].priority),
            updated_at: Stamp::Now,
            enqueued_at: Stamp::Now,
            due_at: Stamp::Now,
            due_after,
            due_exact: None,
            response: None,
            gone: false,
            log: 1,
            progress: None,
        });
        self.tasks.len() - 1
    }

    /// One enqueue: the refusal, or the new task's index.
    pub fn enqueue(
        &mut self,
        ty: usize,
        ident: u8,
        priority: Option<i32>,
        due_secs: Option<u64>,
    ) -> Result<usize, Outcome> {
        if let Some(refused) = self.refuse_enqueue(&[(ty, ident)]) {
            return Err(refused);
        }
        let after = due_secs.map_or(0, |s| s as i64 * SEC);
        Ok(self.new_task(ty, ident, priority, after))
    }

    /// One enqueue due at a given time (`Due::At`, in microseconds on the
    /// store's clock; one in the past means at once, ordered by it).
    pub fn enqueue_at(&mut self, ty: usize, ident: u8, at: i64) -> Result<usize, Outcome> {
        if let Some(refused) = self.refuse_enqueue(&[(ty, ident)]) {
            return Err(refused);
        }
        let i = self.new_task(ty, ident, None, 0);
        self.tasks[i].due_exact = Some(at);
        Ok(i)
    }

    /// A holder stores a response: from its attempt while it holds the
    /// task or after it ended it (as status changes are checked).
    pub fn response_put(&mut self, a: MAttempt, body: &[u8]) -> Outcome {
        match self.held(a) {
            Ok(()) => {
                self.tasks[a.task].response = Some(body.to_vec());
                Outcome::Ok
            }
            Err(refused) => refused,
        }
    }

    /// All or none.
    pub fn enqueue_many(
        &mut self,
        items: &[(usize, u8, Option<i32>)],
    ) -> Result<Vec<usize>, Outcome> {
        let keys: Vec<_> = items.iter().map(|&(t, i, _)| (t, i)).collect();
        if let Some(refused) = self.refuse_enqueue(&keys) {
            return Err(refused);
        }
        Ok(items
            .iter()
            .map(|&(t, i, p)| self.new_task(t, i, p, 0))
            .collect())
    }

    /// A claim: which tasks, in order. The queue's order is priority
    /// (higher first), due time, enqueue time, id; due tasks of unpaused
    /// types only, within each type's limit of held tasks.
    pub fn claim(
        &mut self,
        holder: usize,
        limit: u32,
        types: Option<&[usize]>,
        (start, starting): (bool, Option<u32>),
        now: Window,
    ) -> Result<Vec<usize>, Ambiguous> {
        if limit == 0 || types.is_some_and(|t| t.is_empty()) {
            return Ok(Vec::new());
        }
        let mut candidates = Vec::new();
        for (i, t) in self.live() {
            if t.status != Status::Accepted
                || self.paused[t.ty]
                || types.is_some_and(|ts| !ts.contains(&t.ty))
            {
                continue;
            }
            if now.reached(stamp(t.due_at), "a due time")? {
                candidates.push(i);
            }
        }
        candidates.sort_by_key(|&i| {
            let t = &self.tasks[i];
            (
                std::cmp::Reverse(t.priority),
                stamp(t.due_at),
                stamp(t.enqueued_at),
                t.id.0,
            )
        });
        let mut room: Vec<Option<u32>> = (0..TYPES.len())
            .map(|ty| {
                TYPES[ty]
                    .max_running
                    .map(|m| m.saturating_sub(self.held_of(ty)))
            })
            .collect();
        let mut taken = Vec::new();
        for i in candidates {
            if taken.len() as u32 == limit {
                break;
            }
            let ty = self.tasks[i].ty;
            match &mut room[ty] {
                Some(0) => continue,
                Some(n) => *n -= 1,
                None => {}
            }
            taken.push(i);
        }
        for (k, &i) in taken.iter().enumerate() {
            let t = &mut self.tasks[i];
            let started = start && starting.is_none_or(|n| (k as u32) < n);
            t.status = if started {
                Status::Running
            } else {
                Status::Scheduled
            };
            t.holder = Some(holder);
            t.lease += 1;
            t.updated_at = Stamp::Now;
            // SCHEDULED, and RUNNING when started in the same call.
            t.log += 1;
            if start {
                // A claim-and-start begins a new attempt, started or not.
                t.progress = None;
            }
            if started {
                t.starts += 1;
                t.log += 1;
            }
            let lease = t.lease;
            self.attempts.push(MAttempt {
                task: i,
                holder,
                lease,
            });
        }
        Ok(taken)
    }

    /// Whether `a` is the task's current attempt: held by it, or ended by
    /// it (FINISHED or FAILED with its holder and lease; a CANCELLED task
    /// was ended by an operator).
    fn held(&self, a: MAttempt) -> Result<(), Outcome> {
        let t = &self.tasks[a.task];
        if t.gone {
            return Err(Outcome::NotFound);
        }
        let same = t.holder == Some(a.holder) && t.lease == a.lease;
        let ended_by_it = matches!(t.status, Status::Finished | Status::Failed);
        if same && (t.status.is_held() || ended_by_it) {
            Ok(())
        } else {
            Err(Outcome::Stale)
        }
    }

    pub fn start(&mut self, a: MAttempt) -> Result<u32, Outcome> {
        self.held(a)?;
        let t = &mut self.tasks[a.task];
        if t.status != Status::Scheduled {
            return Err(Outcome::Invalid(Transition::Start, t.status));
        }
        t.status = Status::Running;
        t.starts += 1;
        t.updated_at = Stamp::Now;
        t.log += 1;
        t.progress = None;
        Ok(t.starts)
    }

    pub fn heartbeat(&mut self, a: MAttempt) -> Outcome {
        if let Err(e) = self.held(a) {
            return e;
        }
        let t = &mut self.tasks[a.task];
        if !t.status.is_held() {
            return Outcome::Stale;
        }
        t.updated_at = Stamp::Now;
        Outcome::Ok
    }

    /// Back to the queue at once, or FAILED once the starts are used up
    /// (a hand-back, an abandonment, a dead holder's rescue). A holder that
    /// hands back its last start ended the task and stays on it; a rescue
    /// that FAILs the task clears the holder, so the rescued attempt is
    /// stale from then on. A rescue counts a start for a task it finds
    /// SCHEDULED (it may have begun unrecorded); a holder's hand-back of
    /// one puts it back in its place (enqueue and due times kept).
    fn release(&mut self, i: usize, rescue: bool) -> Status {
        let t = &mut self.tasks[i];
        t.updated_at = Stamp::Now;
        t.log += 1;
        let unstarted = t.status == Status::Scheduled;
        if rescue && unstarted {
            t.starts += 1;
        }
        if t.starts >= TYPES[t.ty].max_starts {
            t.status = Status::Failed;
            if rescue {
                t.holder = None;
            }
        } else if unstarted && !rescue {
            t.status = Status::Accepted;
            t.holder = None;
        } else {
            self.requeue(i, 0);
        }
        self.tasks[i].status
    }

    /// Into the queue (the caller counts the log record).
    fn requeue(&mut self, i: usize, after: i64) {
        let t = &mut self.tasks[i];
        t.status = Status::Accepted;
        t.holder = None;
        t.updated_at = Stamp::Now;
        t.enqueued_at = Stamp::Now;
        t.due_at = Stamp::Now;
        t.due_after = after;
        t.due_exact = None;
    }

    pub fn change(&mut self, a: MAttempt, c: Change) -> Outcome {
        if let Err(e) = self.held(a) {
            return e;
        }
        let (status, starts, ty, id) = {
            let t = &self.tasks[a.task];
            (t.status, t.starts, t.ty, t.id)
        };
        let spec = TYPES[ty];
        let leaves_terminal =
            matches!(c, Change::FinishUnlessTerminal | Change::FailUnlessTerminal);
        if leaves_terminal && status.is_terminal() {
            return Outcome::Ok;
        }
        let to = match c {
            Change::Finish | Change::FinishUnlessTerminal => {
                if !status.is_held() {
                    return Outcome::Invalid(Transition::Finish, status);
                }
                Status::Finished
            }
            Change::Pause => {
                if status != Status::Running {
                    return Outcome::Invalid(Transition::Pause, status);
                }
                Status::Paused
            }
            Change::Resume => {
                if status != Status::Paused {
                    return Outcome::Invalid(Transition::Resume, status);
                }
                Status::Running
            }
            Change::HandBack => {
                if !status.is_held() {
                    return Outcome::Invalid(Transition::Reenqueue, status);
                }
                self.release(a.task, false);
                return Outcome::Ok;
            }
            Change::Start => {
                if status != Status::Scheduled {
                    return Outcome::Invalid(Transition::Start, status);
                }
                self.tasks[a.task].starts += 1;
                Status::Running
            }
            Change::Fail
            | Change::FailUnlessTerminal
            | Change::FailPermanently
            | Change::RetryAfter(_) => {
                // Only a held task fails, retried or not: an attempt that
                // ended its task cannot reopen it.
                if !status.is_held() {
                    return Outcome::Invalid(Transition::Fail, status);
                }
                let delay = match (c, spec.retry) {
                    (Change::RetryAfter(s), _) => Some(std::time::Duration::from_secs(s)),
                    (Change::FailPermanently, _) => None,
                    (_, Some(policy)) => Some(policy.delay(id.0, starts)),
                    (_, None) => None,
                };
                match delay {
                    Some(d) if starts < spec.max_starts => {
                        self.requeue(a.task, d.as_micros() as i64);
                        self.tasks[a.task].log += 1;
                        return Outcome::Ok;
                    }
                    _ => Status::Failed,
                }
            }
        };
        let t = &mut self.tasks[a.task];
        t.status = to;
        t.updated_at = Stamp::Now;
        t.log += 1;
        Outcome::Ok
    }

    pub fn cancel(&mut self, i: usize) -> Outcome {
        let t = &mut self.tasks[i];
        if t.gone {
            return Outcome::NotFound;
        }
        if t.status.is_terminal() {
            return Outcome::Invalid(Transition::Cancel, t.status);
        }
        t.status = Status::Cancelled;
        t.holder = None;
        t.updated_at = Stamp::Now;
        t.log += 1;
        Outcome::Ok
    }

    /// An operator's re-enqueue: any status but ACCEPTED, starts reset, due
    /// at once, never refused by the queue limit.
    pub fn reenqueue(&mut self, i: usize) -> Outcome {
        let t = &mut self.tasks[i];
        if t.gone {
            return Outcome::NotFound;
        }
        if t.status == Status::Accepted {
            return Outcome::Invalid(Transition::Reenqueue, t.status);
        }
        t.starts = 0;
        t.log += 1;
        t.progress = None;
        self.requeue(i, 0);
        Outcome::Ok
    }

    /// An operator's re-enqueue of every task in `status` (of `ty` when
    /// given): refused for ACCEPTED (and for a status that cannot be
    /// re-enqueued at all); returns how many.
    pub fn reenqueue_all(&mut self, status: Status, ty: Option<usize>) -> Result<u64, Outcome> {
        if matches!(status, Status::Accepted | Status::Undefined) {
            return Err(Outcome::InvalidArgument);
        }
        let chosen: Vec<usize> = self
            .live()
            .filter(|(_, t)| t.status == status && ty.is_none_or(|ty| t.ty == ty))
            .map(|(i, _)| i)
            .collect();
        for &i in &chosen {
            let outcome = self.reenqueue(i);
            debug_assert_eq!(outcome, Outcome::Ok);
        }
        Ok(chosen.len() as u64)
    }

    /// A holder's progress: refused before anything else when out of
    /// range, then only from the live attempt (it heartbeats too).
    pub fn progress(&mut self, a: MAttempt, percent: Option<f64>, message: &str) -> Outcome {
        if percent.is_some_and(|p| !(0.0..=100.0).contains(&p)) {
            return Outcome::InvalidArgument;
        }
        match self.heartbeat(a) {
            Outcome::Ok => {
                self.tasks[a.task].progress = Some((percent, message.to_owned()));
                Outcome::Ok
            }
            refused => refused,
        }
    }

    /// The ended tasks of types with a positive retention whose last
    /// change is older than it.
    pub fn retirable(&self, now: Window) -> Result<Vec<usize>, Ambiguous> {
        let mut found = Vec::new();
        for (i, t) in self.live() {
            let keep = TYPES[t.ty].retention_secs;
            if !t.status.is_terminal() || keep <= 0.0 {
                continue;
            }
            let keep = (keep * SEC as f64) as i64;
            if now.reached(stamp(t.updated_at) + keep + 1, "a retention")? {
                found.push(i);
            }
        }
        Ok(found)
    }

    pub fn delete(&mut self, i: usize) -> Outcome {
        let t = &mut self.tasks[i];
        if t.gone {
            return Outcome::NotFound;
        }
        t.gone = true;
        Outcome::Ok
    }

    /// Held tasks not updated within their type's timeout.
    pub fn requeue_abandoned(&mut self, now: Window) -> Result<Vec<Rescue>, Ambiguous> {
        let mut found = Vec::new();
        for (i, t) in self.live() {
            if !t.status.is_held() {
                continue;
            }
            let timeout = (TYPES[t.ty].timeout_secs * SEC as f64) as i64;
            // Abandoned when `updated_at < now - timeout`.
            if now.reached(stamp(t.updated_at) + timeout + 1, "an abandonment")? {
                found.push(i);
            }
        }
        Ok(found
            .into_iter()
            .map(|i| {
                let outcome = self.release(i, true);
                (i, outcome, self.tasks[i].starts)
            })
            .collect())
    }

    /// Removes silent daemons, and rescues the held tasks of holders
    /// without a record (those just removed included) that were not updated
    /// for as long: (daemon, its rescues), by daemon.
    pub fn reap_dead(&mut self, now: Window) -> Result<Vec<(usize, Vec<Rescue>)>, Ambiguous> {
        let silent = (SILENT_SECS * SEC as f64) as i64;
        let mut reaped = std::collections::BTreeMap::<usize, Vec<Rescue>>::new();
        for d in 0..DAEMONS {
            if let Some(beat) = self.daemons[d]
                && now.reached(stamp(beat) + silent + 1, "a daemon's silence")?
            {
                self.daemons[d] = None;
                reaped.insert(d, Vec::new());
            }
        }
        // A holder without a record (found dead now by its silence, removed
        // earlier, or never registered) loses the tasks that were quiet as
        // long as a dead daemon is silent: one that touched a task lately
        // may be alive. (Only a daemon *shown gone* loses every task at
        // once; this model has no process to show gone: `DeadRule`'s two
        // thresholds are equal here.)
        let mut orphans = Vec::new();
        for (i, t) in self.live() {
            let Some(h) = t.holder.filter(|_| t.status.is_held()) else {
                continue;
            };
            if self.daemons[h].is_none()
                && now.reached(stamp(t.updated_at) + silent + 1, "an orphan's silence")?
            {
                orphans.push(i);
            }
        }
        for i in orphans {
            let holder = self.tasks[i].holder.expect("held");
            let outcome = self.release(i, true);
            let starts = self.tasks[i].starts;
            reaped.entry(holder).or_default().push((i, outcome, starts));
        }
        Ok(reaped.into_iter().collect())
    }

    pub fn daemon_register(&mut self, d: usize) {
        self.daemons[d] = Some(Stamp::Now);
    }

    pub fn daemon_heartbeat(&mut self, d: usize) -> bool {
        match self.daemons[d] {
            Some(_) => {
                self.daemons[d] = Some(Stamp::Now);
                true
            }
            None => false,
        }
    }

    pub fn daemon_deregister(&mut self, d: usize) {
        self.daemons[d] = None;
    }
}
