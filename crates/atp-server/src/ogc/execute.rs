//! `POST {prefix}/processes/{id}/execution`: an execute request becomes a
//! task of the process's type whose identifier is the job id.

use std::time::Duration;

use atp_core::{NewTask, Status, Store, TaskIdentifier, TaskType};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::job;
use super::link::Base;
use super::process::{self, INPUT, OUTPUT};
use crate::AppState;
use crate::extract::{Body, Json, Path};
use crate::problem::{ApiResult, Problem};

/// The ATP extension header naming the job id (the task identifier) the
/// client wants instead of a generated UUID.
pub const JOB_ID_HEADER: &str = "atp-job-id";

/// The message of a job's ACCEPTED record.
const ACCEPTED_MESSAGE: &str = "Accepted through OGC API – Processes";

/// An execute request (Part 1, `execute.yaml`).
#[derive(Debug, Default, Deserialize)]
struct ExecuteRequest {
    #[serde(default)]
    inputs: Map<String, Value>,
    #[serde(default)]
    outputs: Map<String, Value>,
    response: Option<String>,
}

/// The keys a qualified input value may carry beside `value`.
const QUALIFIERS: &[&str] = &["value", "mediaType", "encoding", "schema"];

/// An inline input value, unwrapped from `{"value": …, "mediaType": …}`;
/// a reference (`href`) is refused: ATP does not fetch inputs.
fn input_value(name: &str, value: Value) -> ApiResult<Value> {
    match value {
        Value::Object(mut o)
            if o.contains_key("value") && o.keys().all(|k| QUALIFIERS.contains(&k.as_str())) =>
        {
            Ok(o.remove("value").unwrap_or(Value::Null))
        }
        Value::Object(o) if o.contains_key("href") => Err(Problem::invalid(format!(
            "input {name:?} is a reference; this server takes input values inline only"
        ))),
        v => Ok(v),
    }
}

/// The task's input from the request's inputs: the inputs object itself
/// when the type's schema is an object of named properties, else the one
/// input `input`.
fn task_input(t: &TaskType, inputs: Map<String, Value>) -> ApiResult<Value> {
    if process::inputs_are_properties(t) {
        let object = inputs
            .into_iter()
            .map(|(name, v)| Ok((name.clone(), input_value(&name, v)?)))
            .collect::<ApiResult<Map<String, Value>>>()?;
        return Ok(Value::Object(object));
    }
    let mut input = Value::Null;
    for (name, v) in inputs {
        if name != INPUT {
            return Err(Problem::invalid(format!(
                "process {:?} has one input, {INPUT:?}, not {name:?}",
                t.name.as_str()
            )));
        }
        input = input_value(&name, v)?;
    }
    Ok(input)
}

/// What the client's `Prefer` header asks: asynchronous execution, or a
/// synchronous wait (`wait=N` seconds, RFC 7240), or neither.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Preference {
    Async,
    Wait(Option<f64>),
    None,
}

fn preference(headers: &HeaderMap) -> Preference {
    let mut wait = None;
    let mut sync = false;
    for value in headers.get_all("prefer") {
        for token in value.to_str().unwrap_or("").split([',', ';']) {
            let token = token.trim().to_ascii_lowercase();
            if token == "respond-async" {
                return Preference::Async;
            }
            if let Some(secs) = token.strip_prefix("wait=") {
                wait = secs
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0);
                sync = true;
            }
            if token == "respond-sync" {
                sync = true;
            }
        }
    }
    if sync {
        Preference::Wait(wait)
    } else {
        Preference::None
    }
}

/// Runs the process: enqueues its task. Asynchronous (201, `Location`, a
/// statusInfo) unless the client prefers a wait and the type allows one:
/// then the answer waits, at most the shorter of the two, for the task
/// to end and is its results (200); a task still running by then is
/// answered as asynchronous.
pub async fn execute(
    State(state): State<AppState>,
    base: Base,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Response> {
    let t = process::find_cached(&state, &id).await?;
    let request: ExecuteRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ExecuteRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Problem::invalid(format!("the execute request is not valid: {e}")))?
    };
    if let Some(other) = request.outputs.keys().find(|k| k.as_str() != OUTPUT) {
        return Err(Problem::invalid(format!(
            "process {id:?} has one output, {OUTPUT:?}, not {other:?}"
        )));
    }
    // Part 1 (1.0): an execution's results are raw unless asked otherwise.
    let raw = job::raw_response(request.response.as_deref(), true)?;
    // A generated id (a fresh UUIDv7) is new everywhere; a chosen one must
    // not name a job of another process too (a job id names one job).
    let job_id = match headers.get(JOB_ID_HEADER) {
        None => TaskIdentifier::generate(),
        Some(v) => {
            let text = v
                .to_str()
                .map_err(|_| Problem::invalid("the job id header is not text"))?;
            let id = TaskIdentifier::new(text).map_err(atp_core::Error::from)?;
            if job::find(&state, id.as_str()).await.is_ok() {
                return Err(Problem::from(atp_core::Error::DuplicateTask {
                    task_type: t.name.to_string(),
                    identifier: id.to_string(),
                }));
            }
            id
        }
    };
    let input = task_input(&t, request.inputs)?;
    let new = NewTask::new(t.name.clone(), job_id)
        .with_input(input)
        .with_message(ACCEPTED_MESSAGE);
    let task = state
        .store
        .task_enqueue(new)
        .await
        .map_err(|e| super::exception::from_store(e, &id))?;
    state.metrics.enqueued(&task.task_type, 1);

    let preference = preference(&headers);
    if let (Preference::Wait(wait), Some(allowed)) = (preference, t.about.sync_wait_secs) {
        let secs = wait.unwrap_or(allowed).min(allowed);
        if let Some(answer) = wait_for_end(&state, &task, secs, raw).await? {
            return Ok(answer);
        }
    }
    // Just enqueued: its log is the one ACCEPTED record (no read for it).
    let accepted = atp_core::LogRecord {
        time: task.inserted_at,
        status: Status::Accepted,
        message: ACCEPTED_MESSAGE.to_owned(),
    };
    let info = job::status_value(&state, &base, &task, &[accepted]);
    let mut response = (StatusCode::CREATED, Json(info)).into_response();
    let h = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&base.job(task.identifier.as_str())) {
        h.insert(header::LOCATION, location);
    }
    if preference == Preference::Async {
        h.insert(
            "preference-applied",
            HeaderValue::from_static("respond-async"),
        );
    }
    Ok(response)
}

/// How often a synchronous execution looks at its task.
const SYNC_POLL: Duration = Duration::from_millis(20);

/// Waits up to `secs` for the task to end; its results as the answer, or
/// `None` when it has not ended by then.
async fn wait_for_end(
    state: &AppState,
    task: &atp_core::Task,
    secs: f64,
    raw: bool,
) -> ApiResult<Option<Response>> {
    let key = atp_core::TaskRef::Key(task.task_type.clone(), task.identifier.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
    loop {
        let now = state.store.task_get(&key).await?;
        match now.status {
            Status::Finished | Status::Failed | Status::Cancelled => {
                let results = job::results_of(state, &now, raw).await?;
                return Ok(Some(results));
            }
            _ if tokio::time::Instant::now() >= deadline => return Ok(None),
            _ => tokio::time::sleep(SYNC_POLL).await,
        }
    }
}
