//! Fuzzing how a store is chosen and reached from outside input: the
//! database URL (`--database`, `ATP_DATABASE_URL`) and the PostgreSQL
//! schema name (`--schema`, `ATP_DATABASE_SCHEMA`), which ends up inside
//! the connection's options string, where a quote, a backslash or a space
//! must not split it or set anything else.
//!
//! Cases: `ATP_FUZZ_CASES` (default 1,000 URLs); the schema round trip,
//! which creates and migrates a schema per case, `ATP_FUZZ_PG_CASES`
//! (default 150) when a PostgreSQL server is configured as for the other
//! PostgreSQL tests.

use std::time::Duration;

use atp_core::StoreOptions;
use atp_store::DatabaseUrl;
use atp_store::postgres::PgStore;
use atp_store::testing::pg_server;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

fn cases(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn url() -> impl Strategy<Value = String> {
    let scheme = prop_oneof![
        Just("sqlite://"),
        Just("sqlite:"),
        Just("sqlite::memory:"),
        Just("sqlite://:memory:"),
        Just("SQLITE://"),
        Just("postgres://"),
        Just("postgresql://"),
        Just("postgres:"),
        Just("mysql://"),
        Just(""),
    ];
    let rest = prop_oneof![
        Just(String::new()),
        "[a-z/._-]{0,20}",
        "[a-z/]{0,10}\\?[a-zA-Z=&]{0,30}",
        Just("x?synchronous=FULL&synchronous=normal".to_owned()),
        Just("x?synchronous=full&".to_owned()),
        Just("?synchronous=full".to_owned()),
        Just("x??&&=".to_owned()),
        any::<String>(),
    ];
    prop_oneof![
        4 => (scheme, rest).prop_map(|(s, r)| format!("{s}{r}")),
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(Config { cases: cases("ATP_FUZZ_CASES", 1000), failure_persistence: None, ..Config::default() })]

    /// Every URL parses or is refused, and what it parses to is what it says.
    #[test]
    fn database_urls_parse_to_what_they_say_or_are_refused(url in url()) {
        match DatabaseUrl::parse(&url) {
            Ok(DatabaseUrl::SqliteMemory) => {
                prop_assert!(url == "sqlite::memory:" || url == "sqlite://:memory:", "{:?}", url);
            }
            Ok(DatabaseUrl::SqliteFile { path, synchronous_full }) => {
                let rest = url.strip_prefix("sqlite://").expect("a sqlite:// URL");
                let (file, query) = rest.split_once('?').unwrap_or((rest, ""));
                prop_assert!(!file.is_empty());
                prop_assert_eq!(path, std::path::PathBuf::from(file));
                let last = query
                    .split('&')
                    .rfind(|p| !p.is_empty())
                    .map(str::to_ascii_lowercase);
                prop_assert_eq!(synchronous_full, last.as_deref() == Some("synchronous=full"));
            }
            Ok(DatabaseUrl::Postgres(kept)) => {
                prop_assert!(url.starts_with("postgres://") || url.starts_with("postgresql://"));
                prop_assert_eq!(kept, url);
            }
            Err(e) => prop_assert!(matches!(e, atp_core::Error::InvalidArgument(_)), "{:?}", e),
        }
    }
}

/// Schema names near the edges of the options string's escaping.
fn schema_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z0-9 _\"'\\\\=,;$%-]{1,30}",
        1 => prop_oneof![
            Just("a -c statement_timeout=1"),
            Just("x\\ -c search_path=public"),
            Just("\" ; DROP SCHEMA public; --"),
            Just("\\"),
            Just("\\\\ \\"),
            Just("'"),
            Just("\"\""),
            Just("-c"),
            Just("ünï cødé ß"),
            Just("PUBLIC_Upper"),
            Just(" leading"),
            Just("trailing "),
        ]
        .prop_map(str::to_owned),
        1 => "\\PC{1,20}",
    ]
    // PostgreSQL keeps at most 63 bytes of a name.
    .prop_filter("at most 63 bytes", |s| s.len() <= 63)
}

/// A schema name goes into the connection options intact: the store
/// creates exactly that schema and its tables land in it, or the name is
/// refused before any connection; it never splits into other settings.
#[test]
fn any_schema_name_reaches_the_server_intact() {
    let url = match pg_server::server_url() {
        Ok(url) => url,
        Err(why) if !pg_server::required() => {
            eprintln!("NOTICE: PostgreSQL test skipped: {why}");
            return;
        }
        Err(why) => panic!("PostgreSQL is required but unavailable: {why}"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let raw = rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connecting");
        tokio::spawn(connection);
        client
    });
    let n = cases("ATP_FUZZ_PG_CASES", 150);
    let mut runner = TestRunner::new(Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    });
    let started = std::time::Instant::now();
    let result = runner.run(&schema_name(), |name| {
        rt.block_on(async {
            // A name already there (a shrink retrying it) starts afresh.
            let quoted = format!("\"{}\"", name.replace('"', "\"\""));
            let _ = raw
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {quoted} CASCADE"))
                .await;
            let opened = tokio::time::timeout(
                Duration::from_secs(30),
                PgStore::connect_with_schema(
                    &url,
                    &name,
                    StoreOptions {
                        pool_size: 1,
                        ..StoreOptions::default()
                    },
                ),
            )
            .await
            .map_err(|_| TestCaseError::fail(format!("{name:?}: no answer within 30 s")))?;
            let outcome = match opened {
                Err(atp_core::Error::InvalidArgument(_)) => {
                    prop_assert!(name.chars().any(char::is_control), "{:?} refused", name);
                    Ok(())
                }
                Err(e) => Err(TestCaseError::fail(format!("{name:?}: {e}"))),
                Ok(store) => {
                    let tables: i64 = raw
                        .query_one(
                            "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'atp_task'",
                            &[&name],
                        )
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?
                        .get(0);
                    drop(store);
                    prop_assert_eq!(tables, 1, "{:?}: the task table is not in that schema", name);
                    Ok(())
                }
            };
            let _ = raw
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {quoted} CASCADE"))
                .await;
            outcome
        })
    });
    eprintln!(
        "{n} schema names in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
