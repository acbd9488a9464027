//! The test harness finds or starts a PostgreSQL server.

use atp_store::testing::pg_server;

/// With `ATP_TEST_DATABASE_URL` set, that server answers; without it, a
/// throwaway cluster is started and answers. Either way a query runs.
#[tokio::test]
async fn a_postgres_server_is_found_or_started_and_answers() {
    let url = match pg_server::server_url() {
        Ok(url) => url,
        Err(why) if !pg_server::required() => {
            eprintln!("NOTICE: PostgreSQL tests skipped: {why}");
            return;
        }
        Err(why) => panic!("PostgreSQL required but unavailable: {why}"),
    };
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(connection);
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}
