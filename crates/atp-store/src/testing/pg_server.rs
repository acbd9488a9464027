//! Finding a PostgreSQL server for tests, or starting a throwaway one.
//!
//! Order: `ATP_TEST_DATABASE_URL` when set; otherwise a private cluster made
//! with `initdb` and started with `pg_ctl` (on PATH or under
//! `/usr/lib/postgresql/*/bin`) on a free port in a temporary folder, once
//! per test process. A watchdog process stops the cluster and removes the
//! folder when the test process exits. As root, the server programs run as
//! the `postgres` user (PostgreSQL refuses to run as root).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Environment variable naming an existing server for tests.
pub const URL_VAR: &str = "ATP_TEST_DATABASE_URL";
/// When `1`, a missing PostgreSQL fails the tests instead of skipping them.
pub const REQUIRE_VAR: &str = "ATP_TEST_REQUIRE_POSTGRES";

/// Whether PostgreSQL tests must run.
pub fn required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1")
}

/// The URL of a server for this test process, or why there is none.
pub fn server_url() -> Result<String, String> {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    URL.get_or_init(|| match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Ok(url),
        _ => start_throwaway_cluster(),
    })
    .clone()
}

fn find_program(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin").join(name))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        found.pop()
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A command that runs `program` as the `postgres` user when we are root.
fn server_command(program: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

fn start_throwaway_cluster() -> Result<String, String> {
    let cluster = Cluster::start_private()?;
    let url = cluster.url();
    // Lives as long as the test process; the watchdog stops it afterwards.
    std::mem::forget(cluster);
    Ok(url)
}

/// A private PostgreSQL cluster in a temporary folder: for tests that must
/// stop and restart the server under a running system. Stopped and removed
/// when dropped (and by a watchdog if the test process dies).
pub struct Cluster {
    pg_ctl: PathBuf,
    data: PathBuf,
    dir: PathBuf,
    as_postgres: bool,
    port: u16,
}

impl Cluster {
    /// `initdb` and start a new cluster on a free port.
    pub fn start_private() -> Result<Cluster, String> {
        let initdb =
            find_program("initdb").ok_or("initdb not found on PATH or in /usr/lib/postgresql")?;
        let pg_ctl = find_program("pg_ctl").ok_or("pg_ctl not found")?;
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!(
            "atp-test-pg-{}-{}",
            std::process::id(),
            super::random_suffix()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .map_err(|e| format!("chown: {e}"))?;
            if !status.success() {
                return Err("could not give the cluster folder to the postgres user".into());
            }
        }
        let data = dir.join("data");
        let out = server_command(&initdb, as_postgres)
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .stdout(Stdio::null())
            .output()
            .map_err(|e| format!("running initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let cluster = Cluster {
            pg_ctl,
            data,
            dir,
            as_postgres,
            port: free_port()?,
        };
        spawn_watchdog(&cluster.pg_ctl, &cluster.data, &cluster.dir, as_postgres);
        cluster.start()?;
        Ok(cluster)
    }

    /// The cluster's URL.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let out = server_command(&self.pg_ctl, self.as_postgres)
            .arg("-D")
            .arg(&self.data)
            .args(args)
            .stdout(Stdio::null())
            .output()
            .map_err(|e| format!("running pg_ctl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Starts the server (again) on the same port, waiting until it accepts
    /// connections.
    pub fn start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log");
        let log = log.to_string_lossy();
        self.pg_ctl(&["-o", &options, "-l", &log, "-w", "start"])
    }

    /// Stops the server the way a crash or an operator's fast shutdown
    /// does: connections are cut, nothing is waited for.
    pub fn stop(&self) -> Result<(), String> {
        self.pg_ctl(&["-m", "fast", "-w", "stop"])
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Stops the cluster and removes its folder once this process is gone.
fn spawn_watchdog(pg_ctl: &Path, data: &Path, dir: &Path, as_postgres: bool) {
    let run_as = if as_postgres {
        "runuser -u postgres -- "
    } else {
        ""
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {run_as}'{pg_ctl}' -D '{data}' -m immediate stop >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        pg_ctl = pg_ctl.display(),
        data = data.display(),
        dir = dir.display(),
    );
    let _ = Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
