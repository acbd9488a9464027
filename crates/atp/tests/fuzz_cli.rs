//! Fuzzing the `atp` command line: random arguments to every command that
//! ends by itself (types, schedules, enqueue with inputs, delays and times,
//! lookups, listings, re-enqueues, cancels, completions), with random
//! values for the database options (`--database`, `--schema`, the limits),
//! run as the real binary on one SQLite file. A user's mistake is an error
//! message and an exit code of `output::exit`, never a panic (101) or a signal, and every
//! run ends within [`DEADLINE`].
//!
//! Cases: `ATP_FUZZ_CLI_CASES` (default 300; each is one process).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const ATP: &str = env!("CARGO_BIN_EXE_atp");

/// One run that takes longer has hung.
const DEADLINE: Duration = Duration::from_secs(20);

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop_oneof![Just("t"), Just("x1"), Just("nightly"), Just("missing"), Just("."), Just(""),
            Just(" padded "), Just("-"), Just("--"), Just("a/b")].prop_map(str::to_owned),
        2 => "[a-z0-9_.-]{1,10}",
        1 => "\\PC{0,20}",
        1 => "[a-z]{65,70}",
    ]
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("4294967296".to_owned()),
        Just("1e308".to_owned()),
        Just("-1e308".to_owned()),
        Just("NaN".to_owned()),
        Just("inf".to_owned()),
        Just("0.000001".to_owned()),
        Just("99999999999999999999".to_owned()),
        "-?[0-9]{1,12}(\\.[0-9]{1,4})?",
        text(),
    ]
}

fn duration() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("90s".to_owned()),
        Just("1h 30m".to_owned()),
        Just("0s".to_owned()),
        Just("1ns".to_owned()),
        Just("100000000y".to_owned()),
        Just("18446744073709551615s".to_owned()),
        Just("584942417356y".to_owned()),
        "[0-9]{1,20}(ns|us|ms|s|m|h|d|w|M|y)",
        text(),
    ]
}

fn time_arg() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("2026-12-01T10:00:00Z".to_owned()),
        Just("9999-12-31T23:59:59Z".to_owned()),
        Just("0000-01-01T00:00:00Z".to_owned()),
        Just("1969-12-31T23:59:59+23:59".to_owned()),
        Just("2026-02-30T00:00:00Z".to_owned()),
        Just("2026-12-01T10:00:60Z".to_owned()),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?(Z|[+-][0-9]{2}:[0-9]{2})",
        text(),
    ]
}

fn json_arg() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{}".to_owned()),
        Just("null".to_owned()),
        Just("[1, 2, {\"a\": 1e999}]".to_owned()),
        Just("\"\\u0000\"".to_owned()),
        Just("{\"a\":".to_owned()),
        Just(format!("{}1{}", "[".repeat(200), "]".repeat(200))),
        Just(format!("{}1{}", "[".repeat(5000), "]".repeat(5000))),
        text(),
    ]
}

fn cron() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0 3 * * *".to_owned()),
        Just("*/5 * * * * *".to_owned()),
        Just("0 0 30 2 *".to_owned()),
        Just("@hourly".to_owned()),
        "[0-9*/,\\- ]{0,30}",
        text(),
    ]
}

/// A command's own arguments.
fn command() -> impl Strategy<Value = Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    prop_oneof![
        (
            text(),
            text(),
            number(),
            number(),
            number(),
            number(),
            proptest::option::of(duration()),
            proptest::option::of(duration()),
            proptest::option::of(number())
        )
            .prop_map(
                move |(n, h, timeout, retention, starts, prio, delay, max_delay, running)| {
                    let mut a = s(&["type", "register"]);
                    a.extend([n, h]);
                    a.extend(["--timeout".into(), timeout, "--retention".into(), retention]);
                    a.extend(["--max-starts".into(), starts, "--priority".into(), prio]);
                    if let Some(d) = delay {
                        a.extend(["--retry-delay".into(), d]);
                    }
                    if let Some(d) = max_delay {
                        a.extend(["--retry-max-delay".into(), d]);
                    }
                    if let Some(r) = running {
                        a.extend(["--max-running".into(), r]);
                    }
                    a
                }
            ),
        (
            prop_oneof![Just("unregister"), Just("pause"), Just("resume")],
            text(),
            any::<bool>()
        )
            .prop_map(move |(c, n, force)| {
                let mut a = s(&["type", c, &n]);
                if force && c == "unregister" {
                    a.push("--force".into());
                }
                a
            }),
        Just(s(&["type", "list"])),
        (
            text(),
            proptest::option::of(text()),
            proptest::option::of(json_arg()),
            proptest::option::of(number()),
            prop_oneof![
                Just(None),
                duration().prop_map(|d| Some(("--in", d))),
                time_arg().prop_map(|t| Some(("--at", t)))
            ],
            proptest::option::of(text())
        )
            .prop_map(move |(t, id, input, prio, when, message)| {
                let mut a = s(&["enqueue"]);
                a.push(t);
                if let Some(id) = id {
                    a.push(id);
                }
                if let Some(i) = input {
                    a.extend(["--input".into(), i]);
                }
                if let Some(p) = prio {
                    a.extend(["--priority".into(), p]);
                }
                if let Some((flag, v)) = when {
                    a.extend([flag.to_owned(), v]);
                }
                if let Some(m) = message {
                    a.extend(["--message".into(), m]);
                }
                a
            }),
        (
            prop_oneof![
                Just("status"),
                Just("log"),
                Just("delete"),
                Just("cancel"),
                Just("reenqueue")
            ],
            text(),
            text()
        )
            .prop_map(move |(c, t, i)| s(&[c, &t, &i])),
        (
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(number())
        )
            .prop_map(move |(st, t, limit)| {
                let mut a = s(&["tasks"]);
                if let Some(st) = st {
                    a.extend(["--status".into(), st]);
                }
                if let Some(t) = t {
                    a.extend(["--type".into(), t]);
                }
                if let Some(l) = limit {
                    a.extend(["--limit".into(), l]);
                }
                a
            }),
        (
            text(),
            proptest::option::of(text()),
            proptest::option::of(text())
        )
            .prop_map(move |(st, t, m)| {
                let mut a = s(&["reenqueue", "--status", &st]);
                if let Some(t) = t {
                    a.extend(["--type".into(), t]);
                }
                if let Some(m) = m {
                    a.extend(["--message".into(), m]);
                }
                a
            }),
        (
            text(),
            text(),
            cron(),
            proptest::option::of(text()),
            proptest::option::of(json_arg()),
            proptest::option::of(text())
        )
            .prop_map(move |(n, t, e, tz, input, catch_up)| {
                let mut a = s(&["schedule", "add"]);
                a.extend([n, t, e]);
                if let Some(tz) = tz {
                    a.extend(["--timezone".into(), tz]);
                }
                if let Some(i) = input {
                    a.extend(["--input".into(), i]);
                }
                if let Some(c) = catch_up {
                    a.extend(["--catch-up".into(), c]);
                }
                a
            }),
        (
            prop_oneof![Just("remove"), Just("pause"), Just("resume")],
            text()
        )
            .prop_map(move |(c, n)| s(&["schedule", c, &n])),
        Just(s(&["schedule", "list"])),
        Just(s(&["stats"])),
        text().prop_map(move |sh| s(&["completions", &sh])),
        proptest::collection::vec(text(), 0..4),
    ]
}

/// The global options, most often the test's database as it is.
fn globals(db: String) -> impl Strategy<Value = Vec<String>> {
    let database = prop_oneof![
        6 => Just(db.clone()),
        1 => Just(format!("{db}?synchronous=full")),
        1 => text().prop_map(move |q| format!("{db}?{q}")),
        1 => Just("sqlite::memory:".to_owned()),
        // A closed port: refused at once, never a wait.
        1 => text().prop_map(|q| format!("postgres://127.0.0.1:1/x?connect_timeout=1&{q}")),
        1 => prop_oneof![Just("mysql://x"), Just(""), Just("sqlite://"), Just("postgres:")].prop_map(str::to_owned),
    ];
    (
        database,
        proptest::option::weighted(0.1, text()),
        proptest::option::weighted(0.15, number()),
        proptest::option::weighted(0.15, number()),
        proptest::option::weighted(0.15, number()),
        any::<bool>(),
    )
        .prop_map(|(d, schema, queue, input, pool, json)| {
            let mut a = vec!["--database".to_owned(), d];
            if let Some(s) = schema {
                a.extend(["--schema".into(), s]);
            }
            if let Some(n) = queue {
                a.extend(["--max-queue-size".into(), n]);
            }
            if let Some(n) = input {
                a.extend(["--max-input-bytes".into(), n]);
            }
            if let Some(n) = pool {
                a.extend(["--pool-size".into(), n]);
            }
            if json {
                a.push("--json".into());
            }
            a
        })
}

/// Runs `atp ARGS` and returns its exit code, or why it broke the rules.
fn run(args: &[String], cwd: &std::path::Path) -> Result<i32, String> {
    let mut child = Command::new(ATP)
        .args(args)
        .current_dir(cwd)
        .env_remove("ATP_DATABASE_URL")
        .env_remove("ATP_DATABASE_SCHEMA")
        .env("XDG_DATA_HOME", cwd)
        .env("HOME", cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawning: {e}"))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no exit within {DEADLINE:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    match status.code() {
        // 0 done, 1 an error, 2 a usage error (clap), 3 not found, 4 a
        // conflict, 5 the queue is full (`output::exit`).
        Some(code @ 0..=5) => Ok(code),
        Some(code) => Err(format!("exit code {code}: {err}")),
        None => Err(format!("ended by a signal ({status}): {err}")),
    }
}

#[test]
fn random_command_lines_end_with_a_clear_status() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("fuzz.sqlite").display());
    for setup in [
        vec!["type", "register", "t", "builtin:noop"],
        vec!["enqueue", "t", "x1"],
        vec!["schedule", "add", "nightly", "t", "0 3 * * *"],
    ] {
        let mut args = vec!["--database".to_owned(), db.clone()];
        args.extend(setup.iter().map(|s| (*s).to_owned()));
        assert_eq!(run(&args, dir.path()), Ok(0), "{setup:?}");
    }
    let n = std::env::var("ATP_FUZZ_CLI_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut runner = TestRunner::new(Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    });
    let codes = std::sync::Mutex::new([0u32; 6]);
    let started = Instant::now();
    let result = runner.run(&(globals(db.clone()), command()), |(globals, command)| {
        let mut args = globals;
        args.extend(command);
        let code = run(&args, dir.path())
            .map_err(|e| TestCaseError::fail(format!("atp {args:?}: {e}")))?;
        codes.lock().unwrap()[code as usize] += 1;
        Ok(())
    });
    let codes = codes.into_inner().unwrap();
    eprintln!(
        "{n} command lines in {:.1} s; exit codes 0 to 5: {codes:?}",
        started.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(
        codes[0] > 0 && codes[1] > 0,
        "the generator misses successes or refusals: {codes:?}"
    );
}
