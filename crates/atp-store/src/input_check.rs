//! The enqueue's input check against each type's input schema, for both
//! engines.
//!
//! A store handle remembers, per type, the input schema it last read and
//! its revision ([`TypeAbout::input_schema_rev`]). An enqueue checks each
//! input against the remembered schema before any transaction, and the
//! insert names the revision it checked against: the engines join the type
//! on name *and* revision, so an input checked against a schema that has
//! changed since (another process registered the type again) finds no type
//! and is refused with [`Error::TypeChanged`]. The engine then reads the
//! type's schema again ([`InputSchemas::learn`]) and runs the enqueue once
//! more. A type this handle knows nothing about is assumed to have no
//! schema (revision 0): the common case costs nothing, and a type that has
//! one pays one extra round trip, once per handle.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use atp_core::{Error, InputSchema, NewTask, Result, TypeAbout, TypeName};

/// What one store handle knows of its types' input schemas.
#[derive(Debug, Default)]
pub(crate) struct InputSchemas {
    known: RwLock<HashMap<TypeName, Arc<Known>>>,
}

/// A type's input schema as last read, with its revision.
#[derive(Debug)]
struct Known {
    rev: i64,
    schema: Option<InputSchema>,
}

/// How many times an enqueue is run again after [`Error::TypeChanged`]
/// before the error reaches the caller (a type re-registered this often
/// while one enqueue runs is being fought over).
const RETRIES_AFTER_CHANGE: usize = 3;

impl InputSchemas {
    /// Checks each task's input against what is known of its type's schema;
    /// returns the revision each was checked against, in input order.
    pub(crate) fn check(&self, tasks: &[NewTask]) -> Result<Vec<i64>> {
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        tasks
            .iter()
            .map(|t| match known.get(&t.task_type) {
                None => Ok(0),
                Some(k) => {
                    if let Some(schema) = &k.schema {
                        schema.check(t.task_type.as_str(), &t.input)?;
                    }
                    Ok(k.rev)
                }
            })
            .collect()
    }

    /// Checks one input against what is known of its type's schema (a
    /// schedule's input, when the schedule is made: the engine learns the
    /// type first).
    pub(crate) fn check_input(
        &self,
        task_type: &TypeName,
        input: &serde_json::Value,
    ) -> Result<()> {
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        match known.get(task_type).and_then(|k| k.schema.as_ref()) {
            Some(schema) => schema.check(task_type.as_str(), input),
            None => Ok(()),
        }
    }

    /// Remembers a type's description as read from, or written to, the
    /// database. A stored schema that no longer compiles (written by a
    /// newer or broken writer) refuses every input: better than letting
    /// through what its author meant to keep out.
    pub(crate) fn learn(&self, name: &TypeName, about: &TypeAbout, rev: i64) -> Result<()> {
        let schema = match &about.input_schema {
            None => None,
            Some(s) => Some(InputSchema::compile(s).map_err(|e| {
                Error::Corrupt(format!(
                    "the stored input schema of type {name:?} does not compile: {e}"
                ))
            })?),
        };
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        known.insert(name.clone(), Arc::new(Known { rev, schema }));
        Ok(())
    }

    /// Forgets a type (unregistered: a type of the same name registered
    /// later is read afresh).
    pub(crate) fn forget(&self, name: &TypeName) {
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        known.remove(name);
    }
}

/// Runs an enqueue of `tasks` under the input check, the one loop both
/// engines' enqueues share: checks the inputs against what the handle
/// knows, runs `insert` with the revisions they were checked against, and
/// when the insert finds a type changed ([`Error::TypeChanged`]) learns
/// the type again (`learn`) and runs once more. A refusal by a remembered
/// schema is confirmed the same way before it reaches the caller: the
/// schema may have been loosened or removed since, and a stale memory must
/// never refuse an input the stored type accepts.
pub(crate) async fn enqueue_checked<T, Insert, InsertFut, Learn, LearnFut>(
    schemas: &InputSchemas,
    tasks: &[NewTask],
    mut insert: Insert,
    mut learn: Learn,
) -> Result<T>
where
    Insert: FnMut(Vec<i64>) -> InsertFut,
    InsertFut: Future<Output = Result<T>>,
    Learn: FnMut(TypeName) -> LearnFut,
    LearnFut: Future<Output = Result<()>>,
{
    let mut confirmed: Vec<TypeName> = Vec::new();
    let mut retries = 0;
    loop {
        let revs = match schemas.check(tasks) {
            Ok(revs) => revs,
            Err(Error::InputInvalid { task_type, .. })
                if !confirmed.iter().any(|t| t.as_str() == task_type) =>
            {
                let t = TypeName::new(task_type.as_str())?;
                confirmed.push(t.clone());
                learn(t).await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        let out = insert(revs).await;
        match &out {
            Err(Error::TypeChanged { task_type }) if retries < RETRIES_AFTER_CHANGE => {
                retries += 1;
                learn(TypeName::new(task_type.as_str())?).await?;
            }
            _ => return out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atp_core::TaskIdentifier;
    use serde_json::json;

    fn task(input: serde_json::Value) -> NewTask {
        NewTask::new(
            TypeName::new("p").unwrap(),
            TaskIdentifier::new("1").unwrap(),
        )
        .with_input(input)
    }

    #[test]
    fn an_unknown_type_passes_at_revision_zero_and_a_known_one_is_checked() {
        let schemas = InputSchemas::default();
        assert_eq!(schemas.check(&[task(json!("anything"))]).unwrap(), [0]);
        let about = TypeAbout {
            input_schema: Some(json!({"type": "integer"})),
            ..TypeAbout::default()
        };
        let rev = about.input_schema_rev();
        schemas
            .learn(&TypeName::new("p").unwrap(), &about, rev)
            .unwrap();
        assert_eq!(schemas.check(&[task(json!(7))]).unwrap(), [rev]);
        assert!(matches!(
            schemas.check(&[task(json!(7)), task(json!("seven"))]),
            Err(Error::InputInvalid { .. })
        ));
        schemas.forget(&TypeName::new("p").unwrap());
        assert_eq!(schemas.check(&[task(json!("seven"))]).unwrap(), [0]);
    }
}
