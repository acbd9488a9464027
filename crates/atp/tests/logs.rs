//! What `atp` writes to stderr, from the real binary: plain text without
//! escape codes when stderr is not a terminal (a pipe, a file, journald),
//! and one JSON object per line with `--log-format json`, on every command
//! that logs.

mod common;

use std::time::Duration;

use atp_store::testing::{SqliteDb, TestDb};
use common::{DaemonProcess, Server};
use nix::sys::signal::Signal;

/// A daemon's whole log, from its start to its exit after SIGTERM.
async fn daemon_log(db: &SqliteDb, extra: &[&str]) -> Vec<String> {
    let mut w = DaemonProcess::spawn_logged(db, extra);
    w.log
        .as_mut()
        .unwrap()
        .wait_for("daemon started", Duration::from_secs(30));
    w.signal(Signal::SIGTERM);
    assert_eq!(w.wait_exit(Duration::from_secs(30)).await, 0);
    w.log
        .as_mut()
        .unwrap()
        .until_end(Duration::from_secs(5))
        .to_vec()
}

/// Asserts every line is a JSON object with a level and a message; the
/// messages.
fn json_messages(lines: &[String]) -> Vec<String> {
    assert!(!lines.is_empty());
    lines
        .iter()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not one JSON object per line: {line:?}: {e}"));
            assert!(event["level"].is_string(), "{line}");
            event["fields"]["message"]
                .as_str()
                .unwrap_or_else(|| panic!("no message: {line}"))
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_in_a_pipe_have_no_escape_codes() {
    let db = SqliteDb::new().await;
    let log = daemon_log(&db, &[]).await;
    assert!(log.iter().any(|l| l.contains("INFO")), "{log:#?}");
    for line in &log {
        assert!(!line.contains('\x1b'), "an escape code in {line:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_json_gives_one_object_per_line() {
    let db = SqliteDb::new().await;
    // After the subcommand, as `atp daemon --help` shows it.
    let messages = json_messages(&daemon_log(&db, &["--log-format", "json"]).await);
    assert!(
        messages.iter().any(|m| m == "daemon started"),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m == "daemon stopped"),
        "{messages:?}"
    );

    // `atp serve`, and the format from the environment.
    let mut env = db.child_env();
    env.push(("ATP_LOG_FORMAT".into(), "json".into()));
    let mut server = Server::spawn_logged(env, &[]);
    assert_eq!(server.terminate(Duration::from_secs(10)).await, 0);
    let lines = server
        .log
        .as_mut()
        .unwrap()
        .until_end(Duration::from_secs(5));
    let messages = json_messages(lines);
    assert!(messages.iter().any(|m| m == "serving"), "{messages:?}");
}

/// On a terminal (a pseudo-terminal from `script`), text logs are coloured,
/// unless `NO_COLOR` is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colour_only_on_a_terminal_without_no_color() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("NOTICE: colour test skipped: `script` (util-linux) is not installed");
        return;
    }
    // `atp type list` on a new database file logs (at info) the migrations
    // it applies, then exits.
    let run = |no_color: bool| {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("a.sqlite").display());
        let command = format!("{} --database {url} type list", common::ATP);
        let mut c = std::process::Command::new("script");
        c.args(["-qec", &command, "/dev/null"])
            .env("ATP_LOG", "info")
            .env_remove("NO_COLOR");
        if no_color {
            c.env("NO_COLOR", "1");
        }
        let out = c.output().expect("running script");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = run(false);
    assert!(coloured.contains("migration"), "{coloured:?}");
    assert!(
        coloured.contains('\x1b'),
        "no colour on a terminal: {coloured:?}"
    );
    let plain = run(true);
    assert!(plain.contains("migration"), "{plain:?}");
    assert!(
        !plain.contains('\x1b'),
        "colour despite NO_COLOR: {plain:?}"
    );
}
