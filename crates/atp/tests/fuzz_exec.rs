//! Fuzzing what a daemon reads from an `exec:` program, through the real
//! path: a daemon runs tasks whose handler is a shell that replays bytes
//! the case chose on stderr (`@atp` directives of every kind with random
//! arguments, random bytes, invalid UTF-8, over-long lines cut inside a
//! character, CR/LF mixes, no final newline) and stdout (the response),
//! then exits 0 or 1; and handler strings whose arguments are random
//! shell-like words (quotes, backslashes, unbalanced quotes, Unicode) for
//! a harmless program. Every task must end (FINISHED or FAILED) within
//! [`DEADLINE`], no handler may panic ("Handler panicked" in the log) and
//! the daemon must keep running.
//!
//! The parsers themselves (`exec::protocol`, `exec::lines`, the `shlex`
//! split) are private to `atp-daemon`; this drives them from outside.
//!
//! Cases: `ATP_FUZZ_EXEC_CASES` (default 200; each runs one program).

use std::time::Duration;

use atp_core::{Handler, NewTask, Status, Store, TaskIdentifier, TaskRef, TaskType, TypeName};
use atp_daemon::{Daemon, DaemonConfig, Registry, Shutdown};
use atp_store::testing::TestDb;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// A task that has not ended by then has hung.
const DEADLINE: Duration = Duration::from_secs(20);

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,12}",
        "\\PC{0,8}",
        prop_oneof![
            Just("-"),
            Just("5"),
            Just("100"),
            Just("100.0001"),
            Just("-0"),
            Just("NaN"),
            Just("inf"),
            Just("1e309"),
            Just("50%"),
            Just("%"),
            Just("0x10"),
            Just("3153600000"),
            Just("3153600001s"),
            Just("1e-320"),
            Just("never"),
            Just("policy"),
            Just("after"),
            Just("text/plain"),
            Just("a/b/c"),
            Just("/"),
            Just("")
        ]
        .prop_map(str::to_owned),
    ]
}

/// One stderr line: a directive (known or not) with random arguments, or
/// any bytes.
fn line() -> impl Strategy<Value = Vec<u8>> {
    let verb = prop_oneof![
        Just("progress"),
        Just("log"),
        Just("pause"),
        Just("resume"),
        Just("mime"),
        Just("heartbeat"),
        Just("retry"),
        Just("retry after"),
        Just("PROGRESS"),
        Just(""),
        Just("unknown"),
    ];
    let sep = prop_oneof![Just(" "), Just("  "), Just("\t"), Just(" \u{a0}")];
    prop_oneof![
        6 => (Just("@atp"), sep.clone(), verb, sep, proptest::collection::vec(word(), 0..4))
            .prop_map(|(p, s1, v, s2, args)| format!("{p}{s1}{v}{s2}{}", args.join(" ")).into_bytes()),
        1 => Just(b"@atp".to_vec()),
        1 => Just(b"@atpprogress 5".to_vec()),
        2 => proptest::collection::vec(any::<u8>(), 0..40),
        1 => (prop_oneof![Just("a"), Just("\u{e9}"), Just("\u{1F600}"), Just("@atp log \u{e9}")], 4000usize..4200)
            .prop_map(|(unit, n)| unit.repeat(n / unit.len().max(1) + 1).into_bytes()),
        1 => (0usize..3).prop_map(|k| {
            // A protocol line cut at the cap inside a character.
            let mut l = b"@atp log ".to_vec();
            l.extend(std::iter::repeat_n(b'x', 4096 - l.len() - 1 + k));
            l.extend("\u{1F600}".as_bytes());
            l
        }),
    ]
}

fn stderr() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(
            (
                line(),
                prop_oneof![Just(&b"\n"[..]), Just(&b"\r\n"[..]), Just(&b"\r"[..])],
            ),
            0..12,
        ),
        any::<bool>(),
    )
        .prop_map(|(lines, final_newline)| {
            let mut out = Vec::new();
            let n = lines.len();
            for (i, (l, end)) in lines.into_iter().enumerate() {
                out.extend(l);
                if i + 1 < n || final_newline {
                    out.extend(end);
                }
            }
            out
        })
}

/// Arguments for a harmless program, split like a shell would (or not:
/// unbalanced quotes and stray backslashes included).
fn handler_args() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        "[a-z0-9=._/-]{1,8}",
        "'[^']{0,8}'",
        "\"[^\"]{0,8}\"",
        prop_oneof![
            Just("'"),
            Just("\""),
            Just("\\"),
            Just("\\'"),
            Just("'\"'\"'"),
            Just("$HOME"),
            Just("`x`"),
            Just("a\\ b"),
            Just(";"),
            Just("|"),
            Just("#"),
            Just("ü"),
            Just("\u{2028}")
        ]
        .prop_map(str::to_owned),
        "\\PC{1,6}",
    ];
    proptest::collection::vec(token, 0..6).prop_map(|t| t.join(" "))
}

#[derive(Debug, Clone)]
enum Case {
    Program {
        stderr: Vec<u8>,
        stdout: Vec<u8>,
        fails: bool,
    },
    Handler {
        program: &'static str,
        args: String,
    },
}

fn case() -> impl Strategy<Value = Case> {
    prop_oneof![
        4 => (stderr(), proptest::collection::vec(any::<u8>(), 0..64), any::<bool>())
            .prop_map(|(stderr, stdout, fails)| Case::Program { stderr, stdout, fails }),
        1 => (prop_oneof![Just("/bin/true"), Just("/bin/false"), Just("/nonexistent/program")], handler_args())
            .prop_map(|(program, args)| Case::Handler { program, args }),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_saying_anything_end_their_tasks_without_a_panic() {
    let db = atp_store::testing::sqlite_db().await.expect("SQLite");
    let store = db.store().clone();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().display().to_string();
    assert!(!path.contains(['\'', '"', ' ', '\\']), "{path}");
    let replay = format!(
        "exec:/bin/sh -c 'cat \"{path}/$ATP_TASK_IDENTIFIER.err\" >&2; cat \"{path}/$ATP_TASK_IDENTIFIER.out\"; exit \"$(cat \"{path}/$ATP_TASK_IDENTIFIER.code\")\"'"
    );
    let replay_type = TypeName::new("replay").unwrap();
    store
        .task_type_upsert(
            &TaskType::new(replay_type.clone(), Handler::new(replay).unwrap())
                .with_max_starts(1)
                .with_timeout_secs(60.0),
        )
        .await
        .unwrap();
    let mut registry = Registry::with_builtins();
    registry.allow_exec(true);
    let daemon = Daemon::new(
        store.clone(),
        registry,
        DaemonConfig {
            concurrency: 4,
            poll_interval: Duration::from_millis(10),
            ..DaemonConfig::default()
        },
    );
    let shutdown = Shutdown::new();
    let running = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { daemon.run(shutdown).await })
    };

    let n = std::env::var("ATP_FUZZ_EXEC_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut runner = TestRunner::new(Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    });
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let rt = tokio::runtime::Handle::current();
    let started = std::time::Instant::now();
    let ended = std::sync::Mutex::new([0u32; 2]);
    let result = tokio::task::block_in_place(|| {
        runner.run(&case(), |case| {
            let k = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let id = format!("c{k}");
            let task_type = match &case {
                Case::Program {
                    stderr,
                    stdout,
                    fails,
                } => {
                    std::fs::write(dir.path().join(format!("{id}.err")), stderr).unwrap();
                    std::fs::write(dir.path().join(format!("{id}.out")), stdout).unwrap();
                    std::fs::write(
                        dir.path().join(format!("{id}.code")),
                        if *fails { "1" } else { "0" },
                    )
                    .unwrap();
                    replay_type.clone()
                }
                Case::Handler { program, args } => {
                    let Ok(handler) = Handler::new(format!("exec:{program} {args}")) else {
                        return Ok(());
                    };
                    let name = TypeName::new(format!("h{k}")).unwrap();
                    rt.block_on(store.task_type_upsert(
                        &TaskType::new(name.clone(), handler).with_max_starts(1),
                    ))
                    .unwrap();
                    name
                }
            };
            let task = TaskRef::Key(task_type.clone(), TaskIdentifier::new(id.clone()).unwrap());
            let outcome = rt.block_on(async {
                store
                    .task_enqueue(NewTask::new(
                        task_type.clone(),
                        TaskIdentifier::new(id.clone()).unwrap(),
                    ))
                    .await
                    .map_err(|e| e.to_string())?;
                let deadline = tokio::time::Instant::now() + DEADLINE;
                loop {
                    let t = store.task_get(&task).await.map_err(|e| e.to_string())?;
                    if t.status.is_terminal() {
                        let log = store.task_log(&task).await.map_err(|e| e.to_string())?;
                        if let Some(r) = log.iter().find(|r| r.message.contains("Handler panicked"))
                        {
                            return Err(format!("a handler panicked: {}", r.message));
                        }
                        return Ok(t.status);
                    }
                    if running.is_finished() {
                        return Err("the daemon stopped".to_owned());
                    }
                    if tokio::time::Instant::now() > deadline {
                        return Err(format!("the task is still {} after {DEADLINE:?}", t.status));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
            match outcome {
                Ok(status) => {
                    ended.lock().unwrap()[usize::from(status == Status::Failed)] += 1;
                    Ok(())
                }
                Err(e) => Err(TestCaseError::fail(format!("{case:?}: {e}"))),
            }
        })
    });
    let ended = ended.into_inner().unwrap();
    eprintln!(
        "{n} programs in {:.1} s; FINISHED, FAILED: {ended:?}",
        started.elapsed().as_secs_f64()
    );
    shutdown.stop();
    if let Err(e) = result {
        panic!("{e}");
    }
    running.await.unwrap().unwrap();
    assert!(ended[0] > 0 && ended[1] > 0, "{ended:?}");
}
