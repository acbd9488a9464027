//! The contract suite on every engine: `sqlite::<case>` and
//! `postgres::<case>`.

use atp_store::conformance::*;

atp_store::conformance_tests!();
