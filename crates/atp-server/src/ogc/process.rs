//! Task types as processes: summaries for the list, descriptions with
//! inputs and outputs derived from the type's schemas.

use atp_core::{Store, TaskType, TypeName};
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::exception::{from_store, no_such_process};
use super::link::{Base, link};
use crate::AppState;
use crate::extract::{Json, Path, Query};
use crate::problem::{ApiResult, Problem};

/// The one output of every process: the task's response.
pub const OUTPUT: &str = "response";
/// The one input of a process whose type has no object input schema.
pub const INPUT: &str = "input";

/// `?limit=&offset=` of the process list.
#[derive(Debug, Deserialize)]
pub struct Page {
    limit: Option<usize>,
    #[serde(default)]
    offset: usize,
}

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;

impl Page {
    fn limit(&self) -> ApiResult<usize> {
        match self.limit.unwrap_or(DEFAULT_LIMIT) {
            n @ 1..=MAX_LIMIT => Ok(n),
            n => Err(Problem::invalid(format!(
                "limit must be 1 to {MAX_LIMIT}, not {n}"
            ))),
        }
    }
}

/// Whether a type's input schema is an object with named properties: then
/// each property is a process input, and the execute request's `inputs`
/// object is the task's input.
pub fn inputs_are_properties(t: &TaskType) -> bool {
    properties(t).is_some()
}

fn properties(t: &TaskType) -> Option<&Map<String, Value>> {
    let schema = t.about.input_schema.as_ref()?;
    (schema.get("type") == Some(&json!("object")))
        .then(|| schema.get("properties")?.as_object())
        .flatten()
        .filter(|p| !p.is_empty())
}

/// The job control options of a type's process.
pub fn job_control(t: &TaskType) -> Vec<&'static str> {
    let mut options = vec!["async-execute", "dismiss"];
    if t.about.sync_wait_secs.is_some() {
        options.insert(0, "sync-execute");
    }
    options
}

/// A process summary.
fn summary(t: &TaskType, base: &Base) -> Map<String, Value> {
    let id = t.name.as_str();
    let mut s = Map::new();
    s.insert("id".into(), json!(id));
    s.insert(
        "title".into(),
        json!(t.about.title.as_deref().unwrap_or(id)),
    );
    if let Some(d) = &t.about.description {
        s.insert("description".into(), json!(d));
    }
    s.insert("keywords".into(), json!(t.about.keywords));
    s.insert("version".into(), json!(t.about.version_or_default()));
    s.insert("jobControlOptions".into(), json!(job_control(t)));
    s.insert("outputTransmission".into(), json!(["value"]));
    s.insert(
        "links".into(),
        json!([
            link(
                base.process(id),
                "self",
                "application/json",
                "The process description"
            ),
            link(
                format!("{}/execution", base.process(id)),
                "http://www.opengis.net/def/rel/ogc/1.0/execute",
                "application/json",
                "Execute the process"
            ),
        ]),
    );
    s
}

/// The process description: the summary with inputs and outputs.
fn description(t: &TaskType, base: &Base) -> Value {
    let mut d = summary(t, base);
    let inputs: Map<String, Value> = match properties(t) {
        Some(props) => {
            let required: Vec<&str> = t
                .about
                .input_schema
                .as_ref()
                .and_then(|s| s.get("required"))
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            props
                .iter()
                .map(|(name, schema)| {
                    let mut input = json!({
                        "title": schema.get("title").and_then(Value::as_str).unwrap_or(name),
                        "schema": schema,
                        "minOccurs": u8::from(required.contains(&name.as_str())),
                        "maxOccurs": 1,
                    });
                    if let Some(text) = schema.get("description") {
                        input["description"] = text.clone();
                    }
                    (name.clone(), input)
                })
                .collect()
        }
        None => [(
            INPUT.to_owned(),
            json!({
                "title": "The task's input",
                "description": "Any JSON value, handed to the task's handler",
                "schema": t.about.input_schema.clone().unwrap_or_else(|| json!({})),
                "minOccurs": 0,
                "maxOccurs": 1,
            }),
        )]
        .into_iter()
        .collect(),
    };
    d.insert("inputs".into(), Value::Object(inputs));
    d.insert(
        "outputs".into(),
        json!({OUTPUT: {
            "title": "The task's response",
            "schema": t.about.output_schema.clone().unwrap_or_else(|| json!({})),
        }}),
    );
    Value::Object(d)
}

/// `GET {prefix}/processes`: every type, by name, a page at a time.
pub async fn list(
    State(state): State<AppState>,
    base: Base,
    Query(page): Query<Page>,
) -> ApiResult<Json<Value>> {
    let limit = page.limit()?;
    let types = state.store.task_type_list().await?;
    let processes: Vec<Value> = types
        .iter()
        .skip(page.offset)
        .take(limit)
        .map(|t| Value::Object(summary(t, &base)))
        .collect();
    let mut links = vec![link(
        base.at(&format!("/processes?limit={limit}&offset={}", page.offset)),
        "self",
        "application/json",
        "This page",
    )];
    if page.offset + limit < types.len() {
        links.push(link(
            base.at(&format!(
                "/processes?limit={limit}&offset={}",
                page.offset + limit
            )),
            "next",
            "application/json",
            "The next page",
        ));
    }
    Ok(Json(json!({"processes": processes, "links": links})))
}

/// The type of process `id`, or `no-such-process`.
pub async fn find(state: &AppState, id: &str) -> ApiResult<TaskType> {
    let name = TypeName::new(id).map_err(|_| no_such_process(id))?;
    state
        .store
        .task_type_get(&name)
        .await
        .map_err(|e| from_store(e, id))
}

/// What the facade remembers of types for executions: each execute would
/// otherwise read its type before the enqueue, a second round trip that
/// made it 9 % slower than the JSON API's enqueue (BENCHMARKS.md). Only how
/// inputs map to the task's input is taken from it; the store checks the
/// input against the type as stored, so a type changed meanwhile is never
/// bypassed, and an entry is at most [`TypeCache::FRESH_FOR`] old.
#[derive(Debug, Default)]
pub struct TypeCache {
    types: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, TaskType)>>,
}

impl TypeCache {
    /// How long an entry is used.
    pub const FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(1);
    /// Entries kept at most (then the cache starts afresh).
    const MAX_ENTRIES: usize = 4096;
}

/// [`find`] through the state's [`TypeCache`].
pub async fn find_cached(state: &AppState, id: &str) -> ApiResult<TaskType> {
    let cache = &state.ogc_types.types;
    if let Some((at, t)) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(id)
        && at.elapsed() < TypeCache::FRESH_FOR
    {
        return Ok(t.clone());
    }
    let t = find(state, id).await?;
    let mut types = cache.lock().unwrap_or_else(|e| e.into_inner());
    if types.len() >= TypeCache::MAX_ENTRIES {
        types.clear();
    }
    types.insert(id.to_owned(), (std::time::Instant::now(), t.clone()));
    Ok(t)
}

/// `GET {prefix}/processes/{id}`.
pub async fn describe(
    State(state): State<AppState>,
    base: Base,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let t = find(&state, &id).await?;
    Ok(Json(description(&t, &base)))
}
