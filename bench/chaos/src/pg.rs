//! A private PostgreSQL cluster the harness may stop and restart.
//!
//! Like `atp_store::testing::pg_server::Cluster`, but the chaos suite needs
//! two things that one does not offer: an *immediate* shutdown (a crash
//! of the server, beside the fast one) and restarting with a small
//! `max_connections` (the pool-exhaustion scenario). The server runs with
//! `fsync=off` (this is about connections and restarts, not the disk),
//! as the postgres user when the harness is root.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// How the server is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// `pg_ctl -m fast`: connections are cut, a checkpoint is written.
    Fast,
    /// `pg_ctl -m immediate`: a crash; recovery replays the WAL at start.
    Immediate,
}

/// A running (or stopped) private cluster.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    dir: PathBuf,
    as_postgres: bool,
    port: u16,
    /// The `max_connections` of the next start.
    pub max_connections: u32,
}

fn find_bin() -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).find(|dir| dir.join("pg_ctl").is_file()));
    if let Some(dir) = on_path {
        return Ok(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("pg_ctl not on PATH and no /usr/lib/postgresql")?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("pg_ctl").is_file())
        .collect();
    found.sort();
    found.pop().context("pg_ctl not found")
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

impl Cluster {
    /// `initdb` in `dir` and start on a free port.
    pub fn start(dir: &Path) -> anyhow::Result<Cluster> {
        let bin = find_bin()?;
        let as_postgres = is_root();
        // A folder left by an earlier run (its server was stopped when
        // that run ended).
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir)
                .status()?
                .success();
            if !ok {
                bail!("could not give {} to the postgres user", dir.display());
            }
        }
        let data = dir.join("data");
        let out = Self::command(&bin.join("initdb"), as_postgres)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .stdout(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!("initdb: {}", String::from_utf8_lossy(&out.stderr));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let cluster = Cluster {
            bin,
            data,
            dir: dir.to_owned(),
            as_postgres,
            port,
            max_connections: 200,
        };
        cluster.up()?;
        Ok(cluster)
    }

    fn command(program: &Path, as_postgres: bool) -> Command {
        if as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = Self::command(&self.bin.join("pg_ctl"), self.as_postgres)
            .arg("-D")
            .arg(&self.data)
            .args(args)
            .stdout(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!(
                "pg_ctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// The URL of the `postgres` database.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// The URL of database `name`.
    pub fn url_of(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Starts the server, waiting until it accepts connections.
    pub fn up(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections={}",
            self.port,
            self.dir.display(),
            self.max_connections
        );
        let log = self.dir.join("server.log");
        self.pg_ctl(&["-o", &options, "-l", &log.to_string_lossy(), "-w", "start"])
    }

    /// Stops the server.
    pub fn down(&self, mode: Shutdown) -> anyhow::Result<()> {
        let m = match mode {
            Shutdown::Fast => "fast",
            Shutdown::Immediate => "immediate",
        };
        self.pg_ctl(&["-m", m, "-w", "stop"])
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.down(Shutdown::Immediate);
    }
}
