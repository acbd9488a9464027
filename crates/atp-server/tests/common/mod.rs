//! A real server on a random loopback port over a fresh database of either
//! engine, optionally with a daemon in the same process, for tests that
//! speak HTTP to it.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use atp_core::{Handler, Store, TaskType};
use atp_daemon::{Daemon, DaemonConfig, Registry, Shutdown};
use atp_server::{AppState, ServerConfig};
use atp_store::AnyStore;
use atp_store::testing::TestDb;

/// Turns an engine's test store into the server's store type.
pub trait IntoAny {
    fn into_any(self) -> AnyStore;
}

impl IntoAny for atp_store::sqlite::SqliteStore {
    fn into_any(self) -> AnyStore {
        AnyStore::Sqlite(self)
    }
}

impl IntoAny for atp_store::postgres::PgStore {
    fn into_any(self) -> AnyStore {
        AnyStore::Postgres(self)
    }
}

/// A running server. Dropping it stops the server and its daemon.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// A client without default headers.
    pub client: reqwest::Client,
    /// The server's store, for setting up and checking.
    pub store: AnyStore,
    pub state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The serving task: it ends once a stop has let every response end.
    served: Option<tokio::task::JoinHandle<()>>,
    daemon_stop: Option<Shutdown>,
    _db: Box<dyn std::any::Any + Send + Sync>,
}

impl TestServer {
    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GETs `path`: its status and JSON body.
    pub async fn get_json(&self, path: &str) -> (reqwest::StatusCode, serde_json::Value) {
        atp_server::testing::get_json(&self.client, &self.url(path)).await
    }

    /// Asks the server to stop gracefully; the returned handle ends when
    /// it has (every response ended).
    pub fn shut_down(&mut self) -> tokio::task::JoinHandle<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.served.take().expect("the server is shut down once")
    }

    /// Registers `name` with `handler` straight in the store.
    pub async fn register(&self, name: &str, handler: &str) {
        let t = TaskType::new(
            atp_core::TypeName::new(name).unwrap(),
            Handler::new(handler).unwrap(),
        );
        self.store.task_type_upsert(&t).await.unwrap();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(d) = self.daemon_stop.take() {
            d.abort();
        }
    }
}

/// Starts a server over `db` with `config`; with `daemon`, a daemon with the
/// built-in handlers runs in the same process and reports to the metrics.
pub async fn start<D>(db: D, config: ServerConfig, daemon: bool) -> TestServer
where
    D: TestDb,
    D::Store: IntoAny,
{
    let store = db.store().clone().into_any();
    start_on(db, store, config, daemon).await
}

/// [`start`] with the store's limits set to `options`.
pub async fn start_with_options<D>(
    db: D,
    options: atp_core::StoreOptions,
    config: ServerConfig,
) -> TestServer
where
    D: TestDb,
    D::Store: IntoAny,
{
    let store = db.open(options).await.into_any();
    start_on(db, store, config, false).await
}

async fn start_on<D: TestDb>(
    db: D,
    store: AnyStore,
    config: ServerConfig,
    daemon: bool,
) -> TestServer {
    let state = AppState::new(store.clone(), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = state.clone();
    let served = tokio::spawn(async move {
        atp_server::serve(listener, serving, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let daemon_stop = daemon.then(|| {
        let shutdown = Shutdown::new();
        let d = Daemon::new(
            store.clone(),
            Registry::with_builtins(),
            DaemonConfig {
                concurrency: 4,
                poll_interval: Duration::from_millis(20),
                ..DaemonConfig::default()
            },
        )
        .with_observer(state.metrics.clone() as Arc<dyn atp_daemon::Observer>);
        let s = shutdown.clone();
        tokio::spawn(async move { d.run(s).await.unwrap() });
        shutdown
    });
    TestServer {
        base,
        client: reqwest::Client::new(),
        store,
        state,
        stop: Some(stop),
        served: Some(served),
        daemon_stop,
        _db: Box::new(db),
    }
}
