//! The contract suite on every engine: `sqlite::<case>` and
//! `postgres::<case>`.

mod sqlite {
    atp_store::conformance_tests!(atp_store::testing::sqlite_db());
}

mod postgres {
    atp_store::conformance_tests!(atp_store::testing::postgres_db());
}
