//! The embedded schema migrations of both engines, (version, SQL) in order:
//! one list, so that a schema change (a new column) names its two files in
//! one place. Each engine's `migrate.rs` applies its own list.

/// SQLite's migrations (`migrations/sqlite/`).
pub(crate) const SQLITE: &[(u32, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_core.sql")),
    (2, include_str!("../migrations/sqlite/0002_daemons.sql")),
    (3, include_str!("../migrations/sqlite/0003_type_paused.sql")),
    (
        4,
        include_str!("../migrations/sqlite/0004_identifier_prefix.sql"),
    ),
    (
        5,
        include_str!("../migrations/sqlite/0005_due_and_priority.sql"),
    ),
    (6, include_str!("../migrations/sqlite/0006_cancelled.sql")),
    (7, include_str!("../migrations/sqlite/0007_schedules.sql")),
    (
        8,
        include_str!("../migrations/sqlite/0008_retry_and_limit.sql"),
    ),
    (9, include_str!("../migrations/sqlite/0009_task_counts.sql")),
    (10, include_str!("../migrations/sqlite/0010_type_about.sql")),
];

/// PostgreSQL's migrations (`migrations/postgres/`).
pub(crate) const POSTGRES: &[(u32, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_core.sql")),
    (2, include_str!("../migrations/postgres/0002_daemons.sql")),
    (3, include_str!("../migrations/postgres/0003_count_in.sql")),
    (4, include_str!("../migrations/postgres/0004_notify.sql")),
    (
        5,
        include_str!("../migrations/postgres/0005_queue_by_type.sql"),
    ),
    (
        6,
        include_str!("../migrations/postgres/0006_type_paused.sql"),
    ),
    (
        7,
        include_str!("../migrations/postgres/0007_identifier_prefix.sql"),
    ),
    (
        8,
        include_str!("../migrations/postgres/0008_due_and_priority.sql"),
    ),
    (9, include_str!("../migrations/postgres/0009_cancelled.sql")),
    (
        10,
        include_str!("../migrations/postgres/0010_schedules.sql"),
    ),
    (
        11,
        include_str!("../migrations/postgres/0011_retry_and_limit.sql"),
    ),
    (
        12,
        include_str!("../migrations/postgres/0012_daemon_liveness.sql"),
    ),
    (
        13,
        include_str!("../migrations/postgres/0013_log_key_and_vacuum.sql"),
    ),
    (
        14,
        include_str!("../migrations/postgres/0014_counter_shards.sql"),
    ),
    (
        15,
        include_str!("../migrations/postgres/0015_out_shards.sql"),
    ),
    (
        16,
        include_str!("../migrations/postgres/0016_task_counts.sql"),
    ),
    (
        17,
        include_str!("../migrations/postgres/0017_type_about.sql"),
    ),
];
