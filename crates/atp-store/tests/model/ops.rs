//! The steps a case is made of, and how proptest draws them.
//!
//! Every delay is chosen so that no time the engine compares lands near a
//! clock move: the clock moves by multiples of 10 s, delays and timeouts
//! are 5 s off them (15, 25, 35, 45, 95 s) and the type's retry policy
//! waits between 3.75 and 5 s. The real time a case takes (well under a
//! second) then never decides a comparison; a case so slow that one would
//! (a stalled machine) is discarded, not failed (see `main.rs`).

use proptest::prelude::*;

use atp_core::Status;

use crate::rules::{Change, DAEMONS, TYPES};

/// Which earlier attempt a holder's call names, and how it may be forged.
#[derive(Debug, Clone, Copy)]
pub struct Pick {
    /// Index into the attempts returned so far (modulo their number).
    pub index: usize,
    /// Name another holder (`Some(1..)`: the holder plus this, modulo the
    /// daemons) or another lease, instead of the attempt as returned.
    pub forge: Option<Forge>,
}

#[derive(Debug, Clone, Copy)]
pub enum Forge {
    Holder(usize),
    NextLease,
}

#[derive(Debug, Clone)]
pub enum Op {
    Enqueue {
        ty: usize,
        ident: u8,
        priority: Option<i32>,
        due_secs: Option<u64>,
    },
    EnqueueMany {
        items: Vec<(usize, u8, Option<i32>)>,
    },
    Claim {
        holder: usize,
        limit: u32,
        types: Option<Vec<usize>>,
        start: bool,
        /// With `start`: start only this many, the rest stay SCHEDULED
        /// (a claim ahead of free slots).
        starting: Option<u32>,
    },
    Start(Pick),
    Heartbeat(Pick),
    Change(Pick, Change),
    /// Task index (modulo the tasks made so far).
    Cancel(usize),
    Reenqueue(usize),
    Delete(usize),
    RequeueAbandoned,
    DaemonRegister(usize),
    DaemonHeartbeat(usize),
    DaemonDeregister(usize),
    ReapDead,
    Advance(u64),
    PauseType(usize, bool),
    ReenqueueAll(Status, Option<usize>),
    /// Due at the step's start plus this many seconds (negative: past).
    EnqueueAt {
        ty: usize,
        ident: u8,
        secs: i64,
    },
    ResponsePut(Pick),
    Progress(Pick, Option<f64>),
    DeleteRetired(u32),
}

fn ty() -> impl Strategy<Value = usize> {
    0..TYPES.len()
}

fn daemon() -> impl Strategy<Value = usize> {
    0..DAEMONS
}

fn pick() -> impl Strategy<Value = Pick> {
    (
        any::<usize>(),
        prop_oneof![
            8 => Just(None),
            1 => (1..DAEMONS).prop_map(|d| Some(Forge::Holder(d))),
            1 => Just(Some(Forge::NextLease)),
        ],
    )
        .prop_map(|(index, forge)| Pick { index, forge })
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => Just(Change::Finish),
        1 => Just(Change::FinishUnlessTerminal),
        3 => Just(Change::Fail),
        1 => Just(Change::FailUnlessTerminal),
        1 => Just(Change::FailPermanently),
        1 => prop_oneof![Just(5u64), Just(25)].prop_map(Change::RetryAfter),
        1 => Just(Change::Pause),
        1 => Just(Change::Resume),
        2 => Just(Change::HandBack),
        2 => Just(Change::Start),
    ]
}

fn priority() -> impl Strategy<Value = Option<i32>> {
    prop_oneof![3 => Just(None), 1 => (-1i32..=2).prop_map(Some)]
}

fn types() -> impl Strategy<Value = Option<Vec<usize>>> {
    prop_oneof![
        3 => Just(None),
        1 => proptest::sample::subsequence(vec![0usize, 1, 2], 0..=3).prop_map(Some),
    ]
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (ty(), 0u8..4, priority(), prop_oneof![3 => Just(None), 1 => prop_oneof![Just(15u64), Just(35)].prop_map(Some)])
            .prop_map(|(ty, ident, priority, due_secs)| Op::Enqueue { ty, ident, priority, due_secs }),
        1 => proptest::collection::vec((ty(), 0u8..4, priority()), 1..4)
            .prop_map(|items| Op::EnqueueMany { items }),
        5 => (daemon(), 1u32..4, types(), any::<bool>(), prop_oneof![2 => Just(None), 1 => (0u32..3).prop_map(Some)])
            .prop_map(|(holder, limit, types, start, starting)| Op::Claim { holder, limit, types, start, starting: starting.filter(|_| start) }),
        3 => pick().prop_map(Op::Start),
        2 => pick().prop_map(Op::Heartbeat),
        7 => (pick(), change()).prop_map(|(p, c)| Op::Change(p, c)),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => any::<usize>().prop_map(Op::Reenqueue),
        1 => any::<usize>().prop_map(Op::Delete),
        3 => Just(Op::RequeueAbandoned),
        1 => daemon().prop_map(Op::DaemonRegister),
        1 => daemon().prop_map(Op::DaemonHeartbeat),
        1 => daemon().prop_map(Op::DaemonDeregister),
        2 => Just(Op::ReapDead),
        5 => prop_oneof![Just(10u64), Just(20), Just(30), Just(50), Just(60), Just(100)].prop_map(Op::Advance),
        1 => (ty(), any::<bool>()).prop_map(|(t, p)| Op::PauseType(t, p)),
        1 => (proptest::sample::select(Status::ALL.to_vec()), proptest::option::of(ty()))
            .prop_map(|(s, t)| Op::ReenqueueAll(s, t)),
        1 => (pick(), prop_oneof![Just(None), Just(Some(0.0)), Just(Some(100.0)), Just(Some(42.5)), Just(Some(-1.0)), Just(Some(100.5))])
            .prop_map(|(p, pct)| Op::Progress(p, pct)),
        3 => (1u32..4).prop_map(Op::DeleteRetired),
        2 => (ty(), 0u8..4, prop_oneof![Just(-1000i64), Just(-15), Just(15), Just(35)])
            .prop_map(|(ty, ident, secs)| Op::EnqueueAt { ty, ident, secs }),
        1 => pick().prop_map(Op::ResponsePut),
    ]
}
