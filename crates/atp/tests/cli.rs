//! The `atp` producer and operator commands, run as the real binary on a
//! fresh SQLite file: output shapes, exit codes, and bad input that leaves
//! the database unchanged.

use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

const ATP: &str = env!("CARGO_BIN_EXE_atp");

struct Db {
    dir: tempfile::TempDir,
}

impl Db {
    fn new() -> Db {
        Db {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("cli.sqlite").display())
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(ATP)
            .arg("--database")
            .arg(self.url())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running atp")
    }

    /// Runs a command that must succeed and returns its JSON output.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn task_count(&self) -> usize {
        self.json(&["tasks", "--limit", "1000"])
            .as_array()
            .unwrap()
            .len()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The command failed with `code` and one clear line on stderr.
fn fails(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    assert!(err.contains(needle), "{err:?} should mention {needle:?}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[test]
fn enqueue_status_log_and_tasks_print_documented_json() {
    let db = Db::new();
    let t = db.json(&[
        "type",
        "register",
        "SequenceSum",
        "builtin:sum",
        "--max-starts",
        "2",
    ]);
    assert_eq!(t["name"], "SequenceSum");
    assert_eq!(t["max_starts"], 2);
    let task = db.json(&[
        "enqueue",
        "SequenceSum",
        "job 1/ä",
        "--input",
        "[1, 2]",
        "--message",
        "hello",
    ]);
    for field in [
        "id",
        "type",
        "identifier",
        "status",
        "status_code",
        "starts",
        "progress",
        "inserted_at",
        "updated_at",
    ] {
        assert!(task.get(field).is_some(), "{field} missing from {task}");
    }
    assert_eq!(task["status"], "ACCEPTED");
    assert_eq!(task["status_code"], 1);
    assert_eq!(
        task["identifier"], "job 1/ä",
        "identifiers round-trip exactly"
    );
    let status = db.json(&["status", "SequenceSum", "job 1/ä"]);
    assert_eq!(status["id"], task["id"]);
    assert!(
        status["updated_at"].as_str().unwrap().ends_with('Z'),
        "RFC 3339 UTC"
    );
    let log = db.json(&["log", "SequenceSum", "job 1/ä"]);
    assert_eq!(
        log.as_array()
            .unwrap()
            .iter()
            .map(|r| (r["status"].clone(), r["message"].clone()))
            .collect::<Vec<_>>(),
        vec![(json!("ACCEPTED"), json!("hello"))]
    );
    assert_eq!(log[0]["status_code"], 1);
    let listed = db.json(&["tasks", "--status", "accepted", "--type", "SequenceSum"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let stats = db.json(&["stats"]);
    assert_eq!(stats["by_status"]["ACCEPTED"], 1);
    assert_eq!(stats["queue_size"], 1);
    let types = db.json(&["type", "list"]);
    assert_eq!(types[0]["handler"], "builtin:sum");
}

#[test]
fn errors_have_their_exit_codes_and_change_nothing() {
    let db = Db::new();
    db.json(&["type", "register", "T", "builtin:noop"]);
    db.json(&["enqueue", "T", "a"]);
    // Duplicate: conflict.
    fails(&db.run(&["enqueue", "T", "a"]), 4, "a");
    // Unknown type, unknown task: not found.
    fails(&db.run(&["enqueue", "Nope", "a"]), 3, "Nope");
    fails(&db.run(&["status", "T", "missing"]), 3, "missing");
    // Bad input: error, nothing written.
    fails(
        &db.run(&["enqueue", "T", "b", "--input", "{not json"]),
        1,
        "JSON",
    );
    fails(
        &db.run(&[
            "enqueue",
            "T",
            "c",
            "--input-file",
            "/nonexistent/input.json",
        ]),
        1,
        "/nonexistent/input.json",
    );
    let long = "x".repeat(65);
    fails(&db.run(&["enqueue", "T", &long]), 1, "identifier");
    fails(&db.run(&["tasks", "--status", "sleeping"]), 1, "sleeping");
    assert_eq!(db.task_count(), 1, "nothing was enqueued by the failures");
    // A type with tasks: conflict, unless forced.
    fails(&db.run(&["type", "unregister", "T"]), 4, "T");
    assert_eq!(db.task_count(), 1);
    let gone = db.json(&["type", "unregister", "T", "--force"]);
    assert_eq!(gone["tasks_deleted"], 1);
    assert_eq!(db.task_count(), 0);
    // Usage errors are clap's: exit 2.
    assert_eq!(db.run(&["enqueue"]).status.code(), Some(2));
}

/// A generated identifier: a UUIDv7 in canonical lower-case text.
fn generated(identifier: &Value) -> String {
    let text = identifier.as_str().expect("an identifier").to_owned();
    let groups: Vec<usize> = text.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12], "{text}");
    assert!(
        text.chars()
            .all(|c| matches!(c, '0'..='9' | 'a'..='f' | '-')),
        "lower-case hex: {text}"
    );
    assert_eq!(&text[14..15], "7", "version 7: {text}");
    text
}

#[test]
fn enqueue_without_an_identifier_makes_and_prints_one() {
    let db = Db::new();
    db.json(&["type", "register", "T", "builtin:noop"]);
    let first = db.json(&["enqueue", "T", "--input", "[1, 2]"]);
    let id = generated(&first["identifier"]);
    let found = db.json(&["status", "T", &id]);
    assert_eq!(found["id"], first["id"]);
    assert_eq!(db.json(&["tasks"]).as_array().unwrap().len(), 1);
    // Without --json, the task line names it; it sorts after the first.
    let out = db.run(&["enqueue", "T", "--message", "no natural key"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = String::from_utf8(out.stdout).unwrap();
    let second = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("T/"))
        .unwrap_or_else(|| panic!("no T/<identifier> in {line:?}"))
        .to_owned();
    assert!(generated(&json!(second)) > id, "{second} after {id}");
    let log = db.json(&["log", "T", &second]);
    assert_eq!(log[0]["message"], "no natural key");
    // Bad input still fails clearly and writes nothing.
    fails(
        &db.run(&["enqueue", "T", "--input", "{not json"]),
        1,
        "JSON",
    );
    fails(&db.run(&["enqueue", "Nope"]), 3, "Nope");
    assert_eq!(db.task_count(), 2);
    let help = db.run(&["enqueue", "--help"]);
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(
        help.contains("atp --json enqueue SequenceSum --input"),
        "{help}"
    );
    assert!(help.contains("[IDENTIFIER]"), "optional: {help}");
}

/// `atp enqueue --in/--at/--priority` and `atp type register --priority`:
/// the task object carries the due time and priority, the task line shows
/// them, and bad values are usage errors that store nothing.
#[test]
fn enqueue_with_a_delay_a_due_time_and_a_priority() {
    let db = Db::new();
    let ty = db.json(&["type", "register", "T", "builtin:noop", "--priority", "3"]);
    assert_eq!(ty["priority"], 3);
    let listed = db.run(&["type", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("priority 3"));
    let by_type = db.json(&["enqueue", "T", "plain"]);
    assert_eq!(by_type["priority"], 3);
    assert_eq!(by_type["due_at"], by_type["enqueued_at"]);

    let later = db.json(&[
        "enqueue",
        "T",
        "later",
        "--in",
        "1h 30m",
        "--priority",
        "-1",
    ]);
    assert_eq!(later["priority"], -1);
    let at = |v: &Value| {
        time::OffsetDateTime::parse(
            v.as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert_eq!(
        at(&later["due_at"]) - at(&later["enqueued_at"]),
        time::Duration::minutes(90)
    );
    let fixed = db.json(&["enqueue", "T", "fixed", "--at", "2099-01-02T03:04:05Z"]);
    assert_eq!(fixed["due_at"], "2099-01-02T03:04:05Z");
    let out = db.run(&["status", "T", "fixed"]);
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(line.contains("due 2099-01-0"), "{line}");

    for bad in [
        &["enqueue", "T", "x", "--in", "soon"][..],
        &["enqueue", "T", "x", "--at", "tomorrow"],
        &[
            "enqueue",
            "T",
            "x",
            "--in",
            "1s",
            "--at",
            "2099-01-02T03:04:05Z",
        ],
        &["enqueue", "T", "x", "--priority", "high"],
    ] {
        let out = db.run(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
    }
    fails(
        &db.run(&["enqueue", "T", "x", "--at", "1900-01-01T00:00:00Z"]),
        1,
        "1970",
    );
    assert_eq!(db.task_count(), 3);

    // A retry policy: shown by the type object and the list; bad ones are
    // refused.
    let retried = db.json(&[
        "type",
        "register",
        "R",
        "builtin:fail",
        "--retry-delay",
        "10s",
    ]);
    assert_eq!(
        retried["retry"],
        json!({"delay_secs": 10.0, "max_delay_secs": 3600.0})
    );
    let capped = db.json(&[
        "type",
        "register",
        "R",
        "builtin:fail",
        "--retry-delay",
        "2h",
        "--retry-max-delay",
        "3h",
    ]);
    assert_eq!(
        capped["retry"],
        json!({"delay_secs": 7200.0, "max_delay_secs": 10800.0})
    );
    let listed = db.run(&["type", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("retry after 7200 s up to 10800 s"));
    fails(
        &db.run(&[
            "type",
            "register",
            "R",
            "builtin:fail",
            "--retry-delay",
            "1h",
            "--retry-max-delay",
            "1m",
        ]),
        1,
        "shorter than the first",
    );
    let out = db.run(&[
        "type",
        "register",
        "R",
        "builtin:fail",
        "--retry-max-delay",
        "1m",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let types = db.json(&["type", "list"]);
    let r = types
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "R")
        .unwrap();
    assert_eq!(r["retry"]["delay_secs"], 7200.0, "refusals changed nothing");
    let limited = db.json(&[
        "type",
        "register",
        "L",
        "builtin:noop",
        "--max-running",
        "3",
    ]);
    assert_eq!(limited["max_running"], 3);
    let listed = db.run(&["type", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("max running 3"));
    fails(
        &db.run(&[
            "type",
            "register",
            "L",
            "builtin:noop",
            "--max-running",
            "0",
        ]),
        1,
        "max running",
    );
}

/// `atp type pause|resume`: the state is in `type list` (text and JSON),
/// survives a re-registration, leaves enqueues alone; an unknown type is
/// not found (exit 3) and creates nothing.
#[test]
fn a_type_is_paused_and_resumed_and_its_state_is_listed() {
    let db = Db::new();
    db.json(&["type", "register", "T", "builtin:noop"]);
    assert_eq!(db.json(&["type", "list"])[0]["paused"], false);
    let paused = db.json(&["type", "pause", "T"]);
    assert_eq!(paused["name"], "T");
    assert_eq!(paused["paused"], true);
    assert_eq!(db.json(&["type", "list"])[0]["paused"], true);
    let listed = db.run(&["type", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("PAUSED"));
    let again = db.json(&["type", "register", "T", "builtin:noop", "--timeout", "5"]);
    assert_eq!(again["paused"], true, "registering again keeps the pause");
    assert_eq!(again["timeout_secs"], 5.0);
    assert_eq!(db.json(&["enqueue", "T", "a"])["status"], "ACCEPTED");

    fails(&db.run(&["type", "pause", "Ghost"]), 3, "Ghost");
    fails(&db.run(&["type", "resume", "Ghost"]), 3, "Ghost");
    assert_eq!(db.json(&["type", "list"]).as_array().unwrap().len(), 1);

    let resumed = db.json(&["type", "resume", "T"]);
    assert_eq!(resumed["paused"], false);
    assert_eq!(db.json(&["type", "list"])[0]["paused"], false);
    let listed = db.run(&["type", "list"]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("PAUSED"));
    let said = db.run(&["type", "pause", "T"]);
    assert!(said.status.success());
    assert!(String::from_utf8_lossy(&said.stdout).contains("paused T"));
}

/// `type register` takes a description and schema files, `type show`
/// prints them, and an input the schema refuses exits 9 naming the path
/// and stores nothing; a schema that is not one is refused at register.
#[test]
fn input_schemas_from_files_are_enforced() {
    let db = Db::new();
    let schema = db.dir.path().join("point.json");
    std::fs::write(
        &schema,
        r#"{"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}"#,
    )
    .unwrap();
    let schema = schema.to_str().unwrap();
    let t = db.json(&[
        "type",
        "register",
        "P",
        "builtin:echo",
        "--title",
        "Point",
        "--keyword",
        "geo",
        "--keyword",
        "pt",
        "--version",
        "2.0.0",
        "--input-schema",
        schema,
        "--sync-wait",
        "30s",
    ]);
    assert_eq!(t["title"], "Point");
    assert_eq!(t["keywords"], json!(["geo", "pt"]));
    assert_eq!(t["version"], "2.0.0");
    assert_eq!(t["input_schema"]["required"], json!(["x"]));
    assert_eq!(t["sync_wait_secs"], 30.0);
    assert_eq!(db.json(&["type", "show", "P"]), t);
    let shown = db.run(&["type", "show", "P"]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("title         Point") && text.contains("\"required\""),
        "{text}"
    );

    fails(
        &db.run(&["enqueue", "P", "bad", "--input", r#"{"x": "one"}"#]),
        9,
        "at /x",
    );
    assert_eq!(db.task_count(), 0, "a refused input stores nothing");
    db.json(&["enqueue", "P", "good", "--input", r#"{"x": 1}"#]);
    assert_eq!(db.task_count(), 1);

    let bad = db.dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"type": 7}"#).unwrap();
    let out = db.run(&[
        "type",
        "register",
        "Q",
        "builtin:echo",
        "--input-schema",
        bad.to_str().unwrap(),
    ]);
    fails(&out, 1, "input schema");
    fails(&db.run(&["type", "show", "Q"]), 3, "Q");
    let missing = db.run(&[
        "type",
        "register",
        "Q",
        "builtin:echo",
        "--input-schema",
        "/no/such.json",
    ]);
    fails(&missing, 1, "/no/such.json");
}

#[test]
fn a_full_queue_exits_5() {
    let db = Db::new();
    db.json(&["type", "register", "T", "builtin:noop"]);
    db.json(&["--max-queue-size", "1", "enqueue", "T", "a"]);
    fails(
        &db.run(&["--max-queue-size", "1", "enqueue", "T", "b"]),
        5,
        "full",
    );
    assert_eq!(db.task_count(), 1);
}

#[test]
fn the_pool_size_is_a_setting_and_zero_is_refused() {
    let db = Db::new();
    db.json(&["--pool-size", "1", "type", "register", "T", "builtin:noop"]);
    db.json(&["--pool-size", "1", "enqueue", "T", "a"]);
    assert_eq!(db.task_count(), 1);
    fails(&db.run(&["--pool-size", "0", "stats"]), 1, "pool size");
}

#[test]
fn an_unreachable_database_is_one_clear_line() {
    let out = Command::new(ATP)
        .args(["--database", "postgres://postgres@127.0.0.1:1/atp", "stats"])
        .output()
        .unwrap();
    fails(&out, 1, "PostgreSQL");
}

#[test]
fn input_from_a_file_and_from_stdin() {
    let db = Db::new();
    db.json(&["type", "register", "T", "builtin:echo"]);
    let file = db.dir.path().join("in.json");
    std::fs::write(&file, r#"{"a": 1}"#).unwrap();
    db.json(&["enqueue", "T", "f", "--input-file", file.to_str().unwrap()]);
    let mut child = Command::new(ATP)
        .args([
            "--database",
            &db.url(),
            "--json",
            "enqueue",
            "T",
            "s",
            "--input-file",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(b"[1, 2]").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(db.task_count(), 2);
}

/// With a daemon running (started as `atp worker`, the old name): `wait`
/// exits 0 on FINISHED and 6 on FAILED, 7 on its timeout; `response` gives
/// the bytes; `reenqueue`, `delete`, `info`.
#[test]
fn wait_response_reenqueue_delete_and_info() {
    let db = Db::new();
    db.json(&["type", "register", "Echo", "builtin:echo"]);
    db.json(&[
        "type",
        "register",
        "Fail",
        "builtin:fail",
        "--max-starts",
        "1",
    ]);
    db.json(&["type", "register", "Nobody", "app:not-here"]);
    db.json(&["enqueue", "Echo", "e", "--input", r#"{"x": [1, 2]}"#]);
    db.json(&[
        "enqueue",
        "Fail",
        "f",
        "--input",
        r#"{"message": "as asked"}"#,
    ]);
    db.json(&["enqueue", "Nobody", "n"]);
    let mut daemon = Command::new(ATP)
        .args([
            "--database",
            &db.url(),
            "worker",
            "--concurrency",
            "2",
            "--poll-interval-ms",
            "20",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let waited = db.run(&["wait", "Echo", "e", "--timeout", "30"]);
    assert_eq!(waited.status.code(), Some(0), "{}", stderr(&waited));
    let failed = db.run(&["wait", "Fail", "f", "--timeout", "30"]);
    assert_eq!(failed.status.code(), Some(6), "{}", stderr(&failed));
    let timed_out = db.run(&["wait", "Nobody", "n", "--timeout", "0.3"]);
    assert_eq!(timed_out.status.code(), Some(7), "{}", stderr(&timed_out));
    let _ = daemon.kill();
    let _ = daemon.wait();

    let raw = db.run(&["response", "Echo", "e"]);
    assert!(raw.status.success());
    assert_eq!(
        serde_json::from_slice::<Value>(&raw.stdout).unwrap(),
        json!({"x": [1, 2]})
    );
    let meta = db.json(&["response", "Echo", "e"]);
    assert_eq!(meta["mime_type"], "application/json");
    let file = db.dir.path().join("out.bin");
    db.json(&["response", "Echo", "e", "--output", file.to_str().unwrap()]);
    assert_eq!(std::fs::read(&file).unwrap(), raw.stdout);
    fails(&db.run(&["response", "Nobody", "n"]), 1, "no response");

    let again = db.json(&["reenqueue", "Fail", "f", "--message", "try again"]);
    assert_eq!(again["status"], "ACCEPTED");
    assert_eq!(again["starts"], 0);
    db.json(&["delete", "Echo", "e"]);
    fails(&db.run(&["status", "Echo", "e"]), 3, "Echo");
    let info = db.json(&["info"]);
    assert_eq!(info["engine"], "sqlite");
    assert!(info["schema_version"].as_u64().unwrap() >= 1);
    assert_eq!(info["tasks"], 2);
}

/// Fails every queued task of the database at `db`, as a daemon would
/// (through the store, so no daemon has to run).
fn fail_all_queued(db: &Db) {
    use atp_core::{ClaimParams, DaemonId, StatusChange, Store, StoreExt, StoreOptions};

    let path = db.dir.path().join("cli.sqlite");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store =
                atp_store::sqlite::SqliteStore::open_file(&path, false, StoreOptions::default())
                    .await
                    .unwrap();
            let started = store
                .task_claim_start(&ClaimParams::new(DaemonId(7), 100))
                .await
                .unwrap();
            for t in started {
                store
                    .task_set_status(StatusChange::fail(t.attempt, "boom"))
                    .await
                    .unwrap();
            }
        });
}

/// `atp reenqueue --status S [--type T]` re-enqueues every such task and
/// says how many; ACCEPTED, an unknown type and mixed forms are refused.
#[test]
fn reenqueue_by_status_moves_them_all_and_counts() {
    let db = Db::new();
    db.json(&["type", "register", "Fail", "builtin:fail"]);
    db.json(&["type", "register", "Other", "builtin:fail"]);
    for id in ["f1", "f2", "f3"] {
        db.json(&["enqueue", "Fail", id]);
    }
    db.json(&["enqueue", "Other", "o1"]);
    fail_all_queued(&db);

    let done = db.json(&["reenqueue", "--status", "failed", "--type", "Fail"]);
    assert_eq!(
        done,
        json!({"reenqueued": 3, "status": "FAILED", "type": "Fail"})
    );
    let queued = db.json(&["tasks", "--status", "ACCEPTED"]);
    assert_eq!(queued.as_array().unwrap().len(), 3, "{queued}");
    let f1 = db.json(&["status", "Fail", "f1"]);
    assert_eq!(
        (&f1["status"], &f1["starts"]),
        (&json!("ACCEPTED"), &json!(0))
    );

    let out = db.run(&["reenqueue", "--status", "FAILED", "--message", "all again"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "re-enqueued 1 FAILED task"
    );
    let log = db.json(&["log", "Other", "o1"]);
    assert_eq!(
        log.as_array().unwrap().last().unwrap()["message"],
        "all again"
    );
    let none = db.json(&["reenqueue", "--status", "failed"]);
    assert_eq!(none["reenqueued"], 0);

    fails(
        &db.run(&["reenqueue", "--status", "accepted"]),
        1,
        "ACCEPTED",
    );
    fails(
        &db.run(&["reenqueue", "--status", "failed", "--type", "Nope"]),
        3,
        "Nope",
    );
    fails(&db.run(&["reenqueue", "--status", "nope"]), 1, "--status");
    for mixed in [
        &["reenqueue", "Fail"][..],
        &["reenqueue", "Fail", "f1", "--status", "failed"],
        &["reenqueue", "--type", "Fail"],
    ] {
        let out = db.run(mixed);
        assert_eq!(out.status.code(), Some(2), "{mixed:?}: {}", stderr(&out));
    }
    assert_eq!(
        db.json(&["tasks", "--status", "ACCEPTED"])
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

/// `atp demo` runs the original SequenceSum demo end to end on its own.
#[test]
fn the_demo_runs_out_of_the_box() {
    let out = Command::new(ATP).args(["--json", "demo"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_id = |id: &str| {
        report
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["identifier"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_id("small")["status"], "FINISHED");
    assert_eq!(by_id("small")["response"], "6");
    assert_eq!(by_id("large")["response"], "500500");
    let invalid = by_id("invalid");
    assert_eq!(invalid["status"], "FAILED");
    assert_eq!(
        invalid["log"].as_array().unwrap().last().unwrap()["message"],
        "Input must be a sequence of numbers!"
    );
}

/// `atp bench` measures the chosen database with its own types and leaves
/// the user's data alone; `atp completions` prints a script.
#[test]
fn bench_and_completions() {
    let db = Db::new();
    db.json(&["type", "register", "Mine", "builtin:noop"]);
    db.json(&["enqueue", "Mine", "keep"]);
    let report = db.json(&["bench", "--tasks", "300", "--samples", "10"]);
    assert_eq!(report["engine"], "sqlite");
    assert_eq!(report["tasks"], 300);
    assert!(report["end_to_end_per_sec"].as_f64().unwrap() > 0.0);
    let p50 = report["pickup_ms"]["p50"].as_f64().unwrap();
    let p99 = report["pickup_ms"]["p99"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= p99, "{report}");
    let types = db.json(&["type", "list"]);
    assert_eq!(
        types.as_array().unwrap().len(),
        1,
        "bench types removed: {types}"
    );
    assert_eq!(db.json(&["status", "Mine", "keep"])["status"], "ACCEPTED");
    let out = Command::new(ATP)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("atp"));
}

/// `atp cleanup` reports what it did; `--input -` reads stdin; a reader
/// that closes the pipe early gets no panic.
#[test]
fn cleanup_stdin_input_and_a_closed_pipe() {
    let db = Db::new();
    db.json(&[
        "type",
        "register",
        "T",
        "builtin:noop",
        "--retention",
        "0.001",
    ]);
    let report = db.json(&["cleanup"]);
    for field in ["abandoned", "retired", "dead_daemons", "rescued"] {
        assert_eq!(report[field], 0, "{report}");
    }
    let mut child = Command::new(ATP)
        .args([
            "--database",
            &db.url(),
            "--json",
            "enqueue",
            "T",
            "s",
            "--input",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"from\": \"stdin\"}")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let batch: Vec<String> = (0..400).map(|i| format!("t{i}")).collect();
    for id in &batch {
        db.json(&["enqueue", "T", id]);
    }
    let mut reader = Command::new(ATP)
        .args(["--database", &db.url(), "tasks", "--limit", "1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(reader.stdout.take());
    let out = reader.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}
