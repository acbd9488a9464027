//! Contract: a type's description, and its input schema enforced at
//! enqueue on every store path.

use atp_core::{Error, NewSchedule, NewTask, Recurrence, ScheduleName, Store, TypeAbout};
use serde_json::{Value, json};

use super::*;
use crate::testing::TestDb;

/// A point: an object with numbers `x` and `y`.
fn point_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
        "required": ["x", "y"],
    })
}

fn described(name: &str, input_schema: Option<Value>) -> atp_core::TaskType {
    task_type(name).with_about(TypeAbout {
        title: Some("A point".into()),
        description: Some("Takes a point, returns its distance to 0".into()),
        keywords: vec!["geometry".into(), "point".into()],
        version: Some("2.1.0".into()),
        input_schema,
        output_schema: Some(json!({"type": "number", "minimum": 0})),
        sync_wait_secs: Some(30.0),
    })
}

fn with_input(t: &atp_core::TypeName, id: &str, input: Value) -> NewTask {
    NewTask::new(t.clone(), ident(id)).with_input(input)
}

/// The description round-trips through register, get and list (another
/// handle reads the same); registering again replaces it as a whole.
pub async fn a_types_description_round_trips(db: impl TestDb) {
    let s = db.store();
    let t = described("point", Some(point_schema()));
    register(s, t.clone()).await;
    assert_eq!(s.task_type_get(&t.name).await.unwrap(), t);
    let other = db.open(StoreOptions::default()).await;
    assert_eq!(
        other.task_type_list().await.unwrap(),
        std::slice::from_ref(&t)
    );

    register(s, task_type("point")).await;
    let plain = s.task_type_get(&t.name).await.unwrap();
    assert!(plain.about.is_empty(), "{:?}", plain.about);
    assert_eq!(plain.about.version_or_default(), TypeAbout::DEFAULT_VERSION);
}

/// A schema that is not a JSON Schema is refused at register, and so is a
/// description over the limits; nothing is stored.
pub async fn a_bad_input_schema_is_refused_at_register(db: impl TestDb) {
    let s = db.store();
    for bad in [
        described("t", Some(json!({"type": "no-such-type"}))),
        described("t", Some(json!({"$ref": "https://example.invalid/s.json"}))),
        described("t", None).with_about(TypeAbout {
            keywords: vec![String::new()],
            ..TypeAbout::default()
        }),
    ] {
        let err = s.task_type_upsert(&bad).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    }
    assert!(s.task_type_list().await.unwrap().is_empty());
}

/// An input that fails the schema is refused naming the failing path, by a
/// single enqueue, a batch (all or nothing) and a new schedule; nothing is
/// stored. A valid input goes in.
pub async fn an_input_that_fails_the_schema_is_refused_and_stores_nothing(db: impl TestDb) {
    let s = db.store();
    let t = register(s, described("point", Some(point_schema()))).await;

    let err = s
        .task_enqueue(with_input(&t, "bad", json!({"x": "one", "y": 2})))
        .await
        .unwrap_err();
    let Error::InputInvalid {
        task_type,
        violations,
    } = &err
    else {
        panic!("expected InputInvalid, got {err:?}");
    };
    assert_eq!(task_type, "point");
    assert_eq!(violations[0].path, "/x", "{violations:?}");
    assert!(err.to_string().contains("at /x"), "{err}");

    let err = s
        .task_enqueue_many(vec![
            with_input(&t, "good", json!({"x": 1, "y": 2})),
            with_input(&t, "missing-y", json!({"x": 1})),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InputInvalid { .. }), "{err:?}");

    let schedule = NewSchedule::new(
        ScheduleName::new("every-minute").unwrap(),
        t.clone(),
        Recurrence::new("* * * * *", "UTC").unwrap(),
    )
    .with_input(json!([1, 2]));
    let err = s.schedule_upsert(&schedule).await.unwrap_err();
    assert!(matches!(err, Error::InputInvalid { .. }), "{err:?}");

    assert_eq!(s.task_counts().await.unwrap().total(), 0);
    assert_eq!(s.queue_size().await.unwrap(), 0);
    assert!(s.schedule_list().await.unwrap().is_empty());

    s.task_enqueue(with_input(&t, "good", json!({"x": 1, "y": 2.5})))
        .await
        .unwrap();
    assert_eq!(s.queue_size().await.unwrap(), 1);
}

/// A schema another handle (another process or host) sets, tightens or
/// removes binds this handle's next enqueue at once, though this handle
/// checked inputs against what it knew before.
pub async fn a_schema_changed_by_another_handle_binds_at_once(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("point")).await;
    s.task_enqueue(with_input(&t, "any", json!("anything")))
        .await
        .unwrap();

    let other = db.open(StoreOptions::default()).await;
    register(&other, described("point", Some(point_schema()))).await;
    let err = s
        .task_enqueue(with_input(&t, "now-checked", json!("anything")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InputInvalid { .. }), "{err:?}");
    let err = s
        .task_enqueue_many(vec![with_input(&t, "batch", json!({"x": 1}))])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InputInvalid { .. }), "{err:?}");

    register(&other, described("point", None)).await;
    s.task_enqueue(with_input(&t, "free-again", json!("anything")))
        .await
        .unwrap();
    s.task_enqueue_many(vec![with_input(&t, "batch", json!({"x": 1}))])
        .await
        .unwrap();
    assert_eq!(s.task_counts().await.unwrap().total(), 3);
}
