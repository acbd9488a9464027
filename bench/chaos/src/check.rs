//! The checks: from the producers' logs, the handlers' journals, the
//! harness's kill times and the database, what was lost, what completed
//! twice, which attempts overlapped, and how long the system took to heal.
//!
//! The rules:
//! - **lost**: acknowledged, and after the drain not FINISHED (CANCELLED
//!   counts as accounted for when the harness cancelled it); a batch with
//!   an intent and no ack must be in the database whole or not at all.
//! - **double completion**: two FINISHED log records for one task; or two
//!   journal `end ok`s of one task with no re-enqueue record (rescue,
//!   hand-back, retry) logged between the first's end and the second's
//!   start, or of one attempt (same lease).
//! - **overlap**: two attempts of one task whose journal intervals
//!   intersect. An attempt with no `end` whose worker was SIGKILLed ends
//!   at the kill time; one whose worker was not killed is taken as still
//!   running (it overlaps anything after it).
//! - **heal** (a figure): per-second windows of completions and pick-up
//!   latency (journal start − when the task last entered the queue); the
//!   time from a fault's end to the first of three windows in a row with
//!   throughput ≥ 90 % of the baseline and pick-up p99 under the limit.
//! - **window losses** (a figure): tasks whose handler returned success
//!   and which then ran again (the daemon died before FINISHED was
//!   written, and the task was rescued): the cost of the settle batch.

use std::collections::{BTreeMap, HashMap, HashSet};

use atp_core::Status;

use crate::db::Facts;
use crate::journal::{Line, Outcome};
use crate::produce::Produced;

/// A SIGKILL the harness sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kill {
    /// The process.
    pub pid: u32,
    /// When (monotonic µs), after `kill(2)` returned.
    pub mono: i64,
    /// The same moment on the wall clock (UTC µs), to compare with the
    /// task log.
    pub utc: i64,
}

/// One attempt as the journal shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// The task.
    pub identifier: String,
    /// Its lease.
    pub lease: u64,
    /// The worker process.
    pub pid: u32,
    /// Start (monotonic µs).
    pub start: i64,
    /// Start (UTC µs).
    pub start_utc: i64,
    /// Pick-up latency (µs): start − when the task last entered the queue.
    pub pickup: i64,
    /// End (monotonic µs): the journal's, the kill's, or `i64::MAX`.
    pub end: i64,
    /// End (UTC µs) when the journal has one.
    pub end_utc: Option<i64>,
    /// How it ended, when the journal says.
    pub outcome: Option<Outcome>,
    /// Its worker was SIGKILLed while it ran.
    pub killed: bool,
    /// That kill's wall-clock time (UTC µs).
    pub kill_utc: Option<i64>,
}

/// Pairs the journal's starts and ends into attempts, ending the killed
/// ones at their kill time.
pub fn attempts(lines: &[Line], kills: &[Kill]) -> Vec<Attempt> {
    let mut open: HashMap<(String, u64, u32), Attempt> = HashMap::new();
    let mut done = Vec::new();
    for line in lines {
        match line {
            Line::Start {
                identifier,
                lease,
                pid,
                mono,
                utc,
                ready,
                ..
            } => {
                let a = Attempt {
                    identifier: identifier.clone(),
                    lease: *lease,
                    pid: *pid,
                    start: *mono,
                    start_utc: *utc,
                    pickup: utc - ready,
                    end: i64::MAX,
                    end_utc: None,
                    outcome: None,
                    killed: false,
                    kill_utc: None,
                };
                if let Some(prev) = open.insert((identifier.clone(), *lease, *pid), a) {
                    done.push(prev);
                }
            }
            Line::End {
                identifier,
                lease,
                pid,
                mono,
                utc,
                outcome,
            } => {
                if let Some(mut a) = open.remove(&(identifier.clone(), *lease, *pid)) {
                    a.end = *mono;
                    a.end_utc = Some(*utc);
                    a.outcome = Some(*outcome);
                    done.push(a);
                }
            }
        }
    }
    for mut a in open.into_values() {
        // The first kill of this pid after the start ended the attempt.
        if let Some(k) = kills
            .iter()
            .filter(|k| k.pid == a.pid && k.mono >= a.start)
            .min_by_key(|k| k.mono)
        {
            a.end = k.mono;
            a.killed = true;
            a.kill_utc = Some(k.utc);
        }
        done.push(a);
    }
    done.sort_by(|a, b| (&a.identifier, a.start).cmp(&(&b.identifier, b.start)));
    done
}

/// What the checks found.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Acknowledged tasks.
    pub acked: u64,
    /// Of which FINISHED.
    pub finished: u64,
    /// Of which CANCELLED by the harness.
    pub cancelled: u64,
    /// Lost: (identifier, why).
    pub lost: Vec<(String, String)>,
    /// Batches neither whole nor absent: (batch, present, size).
    pub partial_batches: Vec<(u64, usize, usize)>,
    /// Double completions: (identifier, why).
    pub double: Vec<(String, String)>,
    /// Overlapping attempts: (identifier, why).
    pub overlaps: Vec<(String, String)>,
    /// Tasks that ran again after their handler returned success.
    pub window_losses: u64,
    /// Attempts cut by a SIGKILL.
    pub killed_attempts: u64,
    /// Kill → the next start of a killed attempt's task (µs), each.
    pub rescue_delays: Vec<i64>,
    /// Unacknowledged batches that did land whole.
    pub unacked_landed: u64,
    /// Unacknowledged batches absent.
    pub unacked_absent: u64,
}

impl Report {
    /// Whether any rule was broken.
    pub fn violations(&self) -> usize {
        self.lost.len() + self.partial_batches.len() + self.double.len() + self.overlaps.len()
    }
}

/// Runs the lost, double-completion and overlap checks.
pub fn check(
    produced: &Produced,
    attempts: &[Attempt],
    facts: &Facts,
    cancelled: &HashSet<String>,
) -> Report {
    let mut r = Report {
        acked: produced.acked.len() as u64,
        ..Report::default()
    };
    for id in &produced.acked {
        match facts.tasks.get(id).map(|f| f.status) {
            Some(Status::Finished) => {
                r.finished += 1;
                if cancelled.contains(id) {
                    r.double
                        .push((id.clone(), "FINISHED after a cancel that succeeded".into()));
                }
            }
            Some(Status::Cancelled) if cancelled.contains(id) => r.cancelled += 1,
            Some(s) => r.lost.push((id.clone(), format!("ended {}", s.name()))),
            None => r.lost.push((id.clone(), "not in the database".into())),
        }
    }
    for (batch, ids) in &produced.unacked {
        let present = ids.iter().filter(|i| facts.tasks.contains_key(*i)).count();
        if present == 0 {
            r.unacked_absent += 1;
        } else if present == ids.len() {
            r.unacked_landed += 1;
        } else {
            r.partial_batches.push((*batch, present, ids.len()));
        }
    }
    for (id, n) in &facts.finished_twice {
        r.double
            .push((id.clone(), format!("{n} FINISHED log records")));
    }
    let mut by_task: BTreeMap<&str, Vec<&Attempt>> = BTreeMap::new();
    for a in attempts {
        by_task.entry(&a.identifier).or_default().push(a);
        if a.killed {
            r.killed_attempts += 1;
        }
    }
    let no_requeues = Vec::new();
    for (id, list) in &by_task {
        // `attempts` sorted them by start.
        let mut latest_end = i64::MIN;
        let mut latest: Option<&Attempt> = None;
        for a in list {
            if a.start < latest_end {
                let p = latest.expect("an earlier attempt");
                r.overlaps.push((
                    (*id).to_owned(),
                    format!(
                        "lease {} (pid {}) started at {} µs before lease {} (pid {}) ended at {}",
                        a.lease,
                        a.pid,
                        a.start,
                        p.lease,
                        p.pid,
                        if p.end == i64::MAX {
                            "never (still running)".to_owned()
                        } else {
                            format!("{} µs", p.end)
                        }
                    ),
                ));
            }
            if a.end > latest_end {
                latest_end = a.end;
                latest = Some(a);
            }
        }
        let requeues = facts.requeues.get(*id).unwrap_or(&no_requeues);
        let oks: Vec<&&Attempt> = list
            .iter()
            .filter(|a| a.outcome == Some(Outcome::Ok))
            .collect();
        for pair in oks.windows(2) {
            let (first, second) = (pair[0], pair[1]);
            let first_end = first.end_utc.unwrap_or(first.start_utc);
            // The database's clock and the workers' are one machine's; a
            // millisecond covers rounding.
            let requeued = requeues
                .iter()
                .any(|&t| t >= first_end - 1_000 && t <= second.start_utc + 1_000);
            if first.lease == second.lease {
                r.double.push((
                    (*id).to_owned(),
                    format!("lease {} ended with success twice", first.lease),
                ));
            } else if !requeued {
                r.double.push((
                    (*id).to_owned(),
                    format!(
                        "handler succeeded under lease {} (pid {}) and again under lease {} (pid {}) with no re-enqueue record between",
                        first.lease, first.pid, second.lease, second.pid
                    ),
                ));
            }
        }
        if let Some(pos) = list.iter().position(|a| a.outcome == Some(Outcome::Ok))
            && pos + 1 < list.len()
        {
            r.window_losses += 1;
        }
        for (i, a) in list.iter().enumerate() {
            if a.killed
                && let Some(next) = list[i + 1..].iter().find(|n| n.start >= a.end)
            {
                r.rescue_delays.push(next.start - a.end);
            }
        }
    }
    r
}

/// One second of the run.
#[derive(Debug, Default, Clone)]
pub struct Window {
    /// Handlers that returned success in it.
    pub completions: u64,
    /// Pick-up latencies (µs) of the attempts started in it.
    pub pickups: Vec<i64>,
}

impl Window {
    /// The 99th percentile of the pick-ups (µs); 0 when none started.
    pub fn p99(&self) -> i64 {
        percentile(&self.pickups, 0.99)
    }
}

/// The `q` quantile of `values` (nearest rank); 0 when empty.
pub fn percentile(values: &[i64], q: f64) -> i64 {
    if values.is_empty() {
        return 0;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Per-second windows from `t0` (monotonic µs). Pick-ups of attempts that
/// follow a failed attempt of the same task are left out: their wait is
/// the retry's back-off, by design.
pub fn windows(attempts: &[Attempt], t0: i64) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::new();
    let slot = |t: i64, out: &mut Vec<Window>| -> Option<usize> {
        if t < t0 || t == i64::MAX {
            return None;
        }
        let i = usize::try_from((t - t0) / 1_000_000).ok()?;
        if out.len() <= i {
            out.resize(i + 1, Window::default());
        }
        Some(i)
    };
    let mut previous: Option<&Attempt> = None;
    for a in attempts {
        let same = previous.filter(|p| p.identifier == a.identifier);
        let after_failure = same.is_some_and(|p| p.outcome == Some(Outcome::Fail));
        // A task whose attempt a kill cut was ready again from the kill
        // on: its wait for the rescue is pick-up latency too (the queue
        // time the store reports starts only at the rescue).
        let pickup = match same {
            Some(p) if p.killed => a.start - p.end,
            _ => a.pickup,
        };
        if !after_failure && let Some(i) = slot(a.start, &mut out) {
            out[i].pickups.push(pickup);
        }
        if a.outcome == Some(Outcome::Ok)
            && let Some(i) = slot(a.end, &mut out)
        {
            out[i].completions += 1;
        }
        previous = Some(a);
    }
    out
}

/// The baseline of a run: mean completions per second and pick-up p99
/// over whole windows `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    /// Completions per second.
    pub throughput: f64,
    /// Pick-up p99 (µs).
    pub pickup_p99: i64,
}

/// Computes the baseline over windows `from..to` (indices).
pub fn baseline(w: &[Window], from: usize, to: usize) -> Baseline {
    let to = to.min(w.len());
    let from = from.min(to);
    let slice = &w[from..to];
    let n = slice.len().max(1) as f64;
    let throughput = slice.iter().map(|w| w.completions as f64).sum::<f64>() / n;
    let all: Vec<i64> = slice.iter().flat_map(|w| w.pickups.clone()).collect();
    Baseline {
        throughput,
        pickup_p99: percentile(&all, 0.99),
    }
}

/// Healthy windows in a row needed to call the system healed.
pub const HEALED_RUN: usize = 3;

/// Seconds (µs) from `fault_end` (monotonic) to the start of the first of
/// [`HEALED_RUN`] healthy windows in a row, looking no further than
/// `until` (monotonic); `None` if it never healed by then. A window is
/// healthy when its completions reach 90 % of the baseline and its
/// pick-up p99 is under `pickup_limit` µs. The search begins at
/// `not_before` when that is later than the fault's end: the moment the
/// last task the fault caught ran again (a task held by a killed daemon
/// is invisible to the windows until it starts again).
pub fn heal(
    w: &[Window],
    t0: i64,
    fault_end: i64,
    not_before: i64,
    until: i64,
    base: Baseline,
    pickup_limit: i64,
) -> Option<i64> {
    let healthy =
        |x: &Window| x.completions as f64 >= 0.9 * base.throughput && x.p99() < pickup_limit;
    // The first whole window after the fault's end (and the resumption).
    let from = fault_end.max(not_before);
    let first = usize::try_from((from - t0 + 999_999).max(0) / 1_000_000).ok()?;
    let last = usize::try_from((until - t0).max(0) / 1_000_000)
        .ok()?
        .min(w.len());
    let mut k = first;
    while k + HEALED_RUN <= last {
        if w[k..k + HEALED_RUN].iter().all(healthy) {
            let at = t0 + i64::try_from(k).ok()? * 1_000_000;
            return Some((at - fault_end).max(0));
        }
        k += 1;
    }
    None
}

/// For each attempt a kill cut, the delay from the kill to the task's
/// next re-enqueue record (the rescue): how long a SIGKILLed daemon's
/// tasks stayed held before they were back in the queue (the issue's
/// "back in the queue within 5 s"). Timed per task from the kill that cut
/// it, so that a rescue slower than the interval between kills is not
/// taken for a quick one after the next kill. (Tasks the daemon had
/// claimed but not yet started have no journal line and are not timed.)
pub fn requeue_delays(attempts: &[Attempt], facts: &Facts) -> Vec<i64> {
    attempts
        .iter()
        .filter_map(|a| {
            let k = a.kill_utc?;
            let r = facts
                .requeues
                .get(&a.identifier)?
                .iter()
                .find(|&&r| r >= k - 1_000)?;
            Some((r - k).max(0))
        })
        .collect()
}

/// For each task that finished, the time (µs) from its last successful
/// handler's return (the journal's `end ok`, UTC) to its FINISHED record
/// (the database's time of the settle; on PostgreSQL the settle
/// transaction's start, its commit follows within the transaction): the
/// window in which a daemon's death loses work already done.
pub fn settle_windows(attempts: &[Attempt], facts: &Facts) -> Vec<i64> {
    let mut last_ok: HashMap<&str, i64> = HashMap::new();
    for a in attempts {
        if a.outcome == Some(Outcome::Ok)
            && let Some(end) = a.end_utc
        {
            last_ok.insert(&a.identifier, end);
        }
    }
    last_ok
        .into_iter()
        .filter_map(|(id, end)| facts.finished_at.get(id).map(|f| (f - end).max(0)))
        .collect()
}

/// When the last task whose attempt a kill in `[from, to]` (monotonic)
/// cut started again (monotonic); `None` when none was cut.
pub fn resumed(attempts: &[Attempt], from: i64, to: i64) -> Option<i64> {
    attempts
        .iter()
        .enumerate()
        .filter(|(_, a)| a.killed && a.end >= from && a.end <= to)
        .filter_map(|(i, a)| {
            attempts[i + 1..]
                .iter()
                .take_while(|n| n.identifier == a.identifier)
                .find(|n| n.start >= a.end)
                .map(|n| n.start)
        })
        .max()
}

/// The first start after `t` (monotonic), minus `t`.
pub fn first_start_after(attempts: &[Attempt], t: i64) -> Option<i64> {
    attempts
        .iter()
        .filter(|a| a.start >= t)
        .map(|a| a.start - t)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::TaskFact;

    fn start(id: &str, lease: u64, pid: u32, mono: i64) -> Line {
        Line::Start {
            identifier: id.into(),
            lease,
            pid,
            mono,
            // One clock for both in these tests: UTC = monotonic.
            utc: mono,
            ready: mono - 1_000,
            start: 1,
        }
    }

    fn end(id: &str, lease: u64, pid: u32, mono: i64, outcome: Outcome) -> Line {
        Line::End {
            identifier: id.into(),
            lease,
            pid,
            mono,
            utc: mono,
            outcome,
        }
    }

    fn facts(tasks: &[(&str, Status)]) -> Facts {
        Facts {
            tasks: tasks
                .iter()
                .map(|(i, s)| ((*i).to_owned(), TaskFact { status: *s }))
                .collect(),
            ..Facts::default()
        }
    }

    fn produced(ids: &[&str]) -> Produced {
        Produced {
            acked: ids.iter().map(|s| (*s).to_owned()).collect(),
            ..Produced::default()
        }
    }

    #[test]
    fn an_acknowledged_task_not_finished_is_lost_unless_the_harness_cancelled_it() {
        let f = facts(&[
            ("done", Status::Finished),
            ("queued", Status::Accepted),
            ("failed", Status::Failed),
            ("cut", Status::Cancelled),
            ("stray-cancel", Status::Cancelled),
        ]);
        let p = produced(&["done", "queued", "failed", "cut", "stray-cancel", "gone"]);
        let cancelled: HashSet<String> = ["cut".to_owned()].into();
        let r = check(&p, &[], &f, &cancelled);
        let lost: Vec<&str> = r.lost.iter().map(|(i, _)| i.as_str()).collect();
        assert_eq!(lost, ["queued", "failed", "stray-cancel", "gone"]);
        assert_eq!((r.finished, r.cancelled), (1, 1));
        assert_eq!(r.violations(), 4);
    }

    #[test]
    fn a_batch_without_ack_must_be_whole_or_absent() {
        let f = facts(&[("a", Status::Finished), ("b", Status::Finished)]);
        let p = Produced {
            unacked: vec![
                (1, vec!["a".into(), "b".into()]),
                (2, vec!["c".into(), "d".into()]),
                (3, vec!["a".into(), "e".into()]),
            ],
            ..Produced::default()
        };
        let r = check(&p, &[], &f, &HashSet::new());
        assert_eq!(r.partial_batches, vec![(3, 1, 2)]);
        assert_eq!((r.unacked_landed, r.unacked_absent), (1, 1));
    }

    #[test]
    fn two_successes_need_a_re_enqueue_between_them() {
        let lines = [
            start("t", 1, 10, 1_000_000),
            end("t", 1, 10, 1_010_000, Outcome::Ok),
            start("t", 2, 11, 3_000_000),
            end("t", 2, 11, 3_010_000, Outcome::Ok),
        ];
        let a = attempts(&lines, &[]);
        let mut f = facts(&[("t", Status::Finished)]);
        let r = check(&produced(&["t"]), &a, &f, &HashSet::new());
        assert_eq!(r.double.len(), 1, "{:?}", r.double);
        // A rescue logged between the first end and the second start makes
        // the second run legitimate: a window loss, not a violation.
        f.requeues.insert("t".into(), vec![2_000_000]);
        let r = check(&produced(&["t"]), &a, &f, &HashSet::new());
        assert!(r.double.is_empty(), "{:?}", r.double);
        assert_eq!(r.window_losses, 1);
        // A re-enqueue before the first success does not count.
        f.requeues.insert("t".into(), vec![500_000]);
        let r = check(&produced(&["t"]), &a, &f, &HashSet::new());
        assert_eq!(r.double.len(), 1);
    }

    #[test]
    fn two_finished_records_are_a_double_completion() {
        let mut f = facts(&[("t", Status::Finished)]);
        f.finished_twice.push(("t".into(), 2));
        let r = check(&produced(&["t"]), &[], &f, &HashSet::new());
        assert_eq!(r.double.len(), 1);
        assert_eq!(r.violations(), 1);
    }

    #[test]
    fn intersecting_attempts_overlap_and_a_killed_one_ends_at_its_kill() {
        let f = facts(&[("t", Status::Finished)]);
        let kill = Kill {
            pid: 10,
            mono: 2_000_000,
            utc: 2_000_000,
        };
        // Killed at 2 s; the rescued attempt starts at 2.5 s: no overlap.
        let lines = [
            start("t", 1, 10, 1_000_000),
            start("t", 2, 11, 2_500_000),
            end("t", 2, 11, 2_510_000, Outcome::Ok),
        ];
        let a = attempts(&lines, &[kill]);
        let r = check(&produced(&["t"]), &a, &f, &HashSet::new());
        assert!(r.overlaps.is_empty(), "{:?}", r.overlaps);
        assert_eq!(r.killed_attempts, 1);
        assert_eq!(r.rescue_delays, vec![500_000]);
        // The second attempt starts before the kill: overlap.
        let lines = [
            start("t", 1, 10, 1_000_000),
            start("t", 2, 11, 1_500_000),
            end("t", 2, 11, 1_510_000, Outcome::Ok),
        ];
        let r = check(
            &produced(&["t"]),
            &attempts(&lines, &[kill]),
            &f,
            &HashSet::new(),
        );
        assert_eq!(r.overlaps.len(), 1);
        // Without a kill, an attempt with no end is still running.
        let r = check(
            &produced(&["t"]),
            &attempts(&lines, &[]),
            &f,
            &HashSet::new(),
        );
        assert_eq!(r.overlaps.len(), 1);
        // Two ended attempts that intersect.
        let lines = [
            start("t", 1, 10, 1_000_000),
            start("t", 2, 11, 1_005_000),
            end("t", 1, 10, 1_010_000, Outcome::Fail),
            end("t", 2, 11, 1_020_000, Outcome::Ok),
        ];
        let r = check(
            &produced(&["t"]),
            &attempts(&lines, &[]),
            &f,
            &HashSet::new(),
        );
        assert_eq!(r.overlaps.len(), 1);
    }

    /// Attempts with one completion each at the given seconds, picked up
    /// after `pickup` µs.
    fn steady(seconds: std::ops::Range<i64>, per_second: i64, pickup: i64) -> Vec<Attempt> {
        let mut out = Vec::new();
        for s in seconds {
            for i in 0..per_second {
                let t = s * 1_000_000 + i * (1_000_000 / per_second);
                out.push(Attempt {
                    identifier: format!("{s}-{i}"),
                    lease: 1,
                    pid: 1,
                    start: t,
                    start_utc: t,
                    pickup,
                    end: t + 1_000,
                    end_utc: Some(t + 1_000),
                    outcome: Some(Outcome::Ok),
                    killed: false,
                    kill_utc: None,
                });
            }
        }
        out.sort_by(|a, b| (&a.identifier, a.start).cmp(&(&b.identifier, b.start)));
        out
    }

    #[test]
    fn heal_is_the_first_of_three_healthy_seconds_after_the_fault() {
        // 0–10 s healthy, 10–14 s nothing, 14–15 s slow pick-ups, then healthy.
        let mut a = steady(0..10, 100, 2_000);
        a.extend(steady(14..15, 100, 50_000));
        a.extend(steady(15..30, 100, 2_000));
        let w = windows(&a, 0);
        let base = baseline(&w, 2, 10);
        assert_eq!(base.throughput, 100.0);
        assert_eq!(base.pickup_p99, 2_000);
        // The fault ended at 12.5 s: healed at 15 s.
        assert_eq!(
            heal(&w, 0, 12_500_000, 0, 30_000_000, base, 10_000),
            Some(2_500_000)
        );
        // A caught task ran again only at 20.5 s: healed from 21 s on.
        assert_eq!(
            heal(&w, 0, 12_500_000, 20_500_000, 30_000_000, base, 10_000),
            Some(8_500_000)
        );
        // Too few windows before `until`: not healed.
        assert_eq!(heal(&w, 0, 12_500_000, 0, 17_000_000, base, 10_000), None);
        // Throughput below 90 % of the baseline is not healthy.
        let mut b = steady(0..10, 100, 2_000);
        b.extend(steady(10..30, 80, 2_000));
        let w = windows(&b, 0);
        assert_eq!(heal(&w, 0, 10_000_000, 0, 30_000_000, base, 10_000), None);
    }

    #[test]
    fn a_requeue_is_timed_from_the_kill_that_cut_the_attempt() {
        let kills = [
            Kill {
                pid: 10,
                mono: 10_000_000,
                utc: 10_000_000,
            },
            Kill {
                pid: 11,
                mono: 20_000_000,
                utc: 20_000_000,
            },
        ];
        let lines = [
            start("a", 1, 10, 9_000_000),
            start("b", 1, 11, 19_000_000),
            start("c", 1, 12, 19_500_000),
        ];
        let mut f = Facts::default();
        // "a" was cut by the kill at 10 s and rescued at 28 s, after the
        // second kill: 18 s, not 8 s. "b": 5 s. "c" was not killed.
        f.requeues.insert("a".into(), vec![5_000_000, 28_000_000]);
        f.requeues.insert("b".into(), vec![25_000_000]);
        f.requeues.insert("c".into(), vec![26_000_000]);
        let mut got = requeue_delays(&attempts(&lines, &kills), &f);
        got.sort_unstable();
        assert_eq!(got, vec![5_000_000, 18_000_000]);
    }

    #[test]
    fn a_rescued_attempt_waited_from_the_kill() {
        let kill = Kill {
            pid: 10,
            mono: 2_000_000,
            utc: 2_000_000,
        };
        let lines = [
            start("t", 1, 10, 1_500_000),
            start("t", 2, 11, 7_000_000),
            end("t", 2, 11, 7_010_000, Outcome::Ok),
        ];
        let w = windows(&attempts(&lines, &[kill]), 0);
        // Started 5 s after the kill cut its first attempt.
        assert_eq!(w[7].pickups, vec![5_000_000]);
        assert_eq!(w[1].pickups, vec![1_000]);
    }

    #[test]
    fn the_settle_window_runs_from_the_last_success_to_finished() {
        let lines = [
            start("a", 1, 7, 1_000),
            end("a", 1, 7, 2_000, Outcome::Ok),
            // Ran again (a window loss): the FINISHED is the second's.
            start("a", 2, 8, 10_000),
            end("a", 2, 8, 11_000, Outcome::Ok),
            start("b", 1, 7, 3_000),
            end("b", 1, 7, 4_000, Outcome::Fail),
            start("c", 1, 7, 5_000),
            end("c", 1, 7, 6_000, Outcome::Ok),
        ];
        let mut f = facts(&[("a", Status::Finished), ("c", Status::Finished)]);
        f.finished_at.insert("a".into(), 11_500);
        f.finished_at.insert("c".into(), 9_000);
        let mut w = settle_windows(&attempts(&lines, &[]), &f);
        w.sort_unstable();
        assert_eq!(w, vec![500, 3_000]);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&[], 0.99), 0);
    }
}
