//! The PostgreSQL half of the store benchmark.

use super::Db;

pub async fn fresh() -> Db {
    panic!("PG-WIRING: PostgreSQL benchmarks need the postgres engine")
}

pub async fn fill(_db: &Db) {
    panic!("PG-WIRING")
}
