//! Tasks as jobs: statusInfo, the job list, results and dismiss.

use atp_core::{Status, Store, Task, TaskFilter, TaskRef, TypeName};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::exception::{from_store, job_failed, no_such_job, result_not_ready};
use super::link::{Base, link};
use super::process::OUTPUT;
use crate::AppState;
use crate::api::tasks::task_url;
use crate::extract::{Json, Path, Query};
use crate::problem::{ApiResult, Problem};
use crate::wire::rfc3339;

/// A job's status in OGC's words.
pub fn ogc_status(status: Status) -> &'static str {
    match status {
        Status::Accepted | Status::Scheduled | Status::Undefined => "accepted",
        Status::Running | Status::Paused => "running",
        Status::Finished => "successful",
        Status::Failed => "failed",
        Status::Cancelled => "dismissed",
    }
}

/// The ATP statuses an OGC status stands for; `None` for a word that is
/// not one.
fn atp_statuses(word: &str) -> Option<&'static [Status]> {
    Some(match word {
        "accepted" => &[Status::Accepted, Status::Scheduled],
        "running" => &[Status::Running, Status::Paused],
        "successful" => &[Status::Finished],
        "failed" => &[Status::Failed],
        "dismissed" => &[Status::Cancelled],
        _ => return None,
    })
}

/// The task that is job `id`: the newest task of that identifier (a job id
/// the facade makes is a UUID, unique across types).
pub async fn find(state: &AppState, id: &str) -> ApiResult<Task> {
    let filter = TaskFilter {
        identifier_prefix: Some(id.to_owned()),
        limit: 100,
        ..TaskFilter::default()
    };
    if id.is_empty() {
        return Err(no_such_job(id));
    }
    let page = state.store.task_list(&filter).await?;
    page.tasks
        .into_iter()
        .find(|t| t.identifier.as_str() == id)
        .ok_or_else(|| no_such_job(id))
}

fn key(task: &Task) -> TaskRef {
    TaskRef::Key(task.task_type.clone(), task.identifier.clone())
}

/// A job's statusInfo, read from its task and its log.
pub async fn status_info(state: &AppState, base: &Base, task: &Task) -> ApiResult<Value> {
    let log = state.store.task_log(&key(task)).await.unwrap_or_default();
    Ok(status_value(state, base, task, &log))
}

pub fn status_value(
    state: &AppState,
    base: &Base,
    task: &Task,
    log: &[atp_core::LogRecord],
) -> Value {
    let id = task.identifier.as_str();
    let started = log
        .iter()
        .find(|r| r.status == Status::Running)
        .map(|r| rfc3339(r.time));
    let ended = matches!(
        task.status,
        Status::Finished | Status::Failed | Status::Cancelled
    );
    let task_path = task_url(task.task_type.as_str(), id);
    let mut links = vec![
        link(base.job(id), "self", "application/json", "This job"),
        link(
            base.server(&task_path, &state.ogc_prefix),
            "related",
            "application/json",
            "The ATP task",
        ),
        link(
            base.server(
                &crate::html::urls::task_page(task.task_type.as_str(), id),
                &state.ogc_prefix,
            ),
            "alternate",
            "text/html",
            "The task on the dashboard",
        ),
        link(
            base.server(&format!("{task_path}/log"), &state.ogc_prefix),
            "related",
            "application/json",
            "The ATP task's full status log",
        ),
    ];
    if task.status == Status::Finished {
        links.push(link(
            format!("{}/results", base.job(id)),
            "http://www.opengis.net/def/rel/ogc/1.0/results",
            "application/json",
            "The job's results",
        ));
    }
    let progress = match (task.status, &task.progress) {
        (Status::Finished, _) => Some(100),
        (_, Some(p)) => p.percent.map(|p| p.clamp(0.0, 100.0).round() as u8),
        _ => None,
    };
    let mut info = json!({
        "jobID": id,
        "type": "process",
        "processID": task.task_type.as_str(),
        "status": ogc_status(task.status),
        "message": log.last().map(|r| r.message.as_str()).unwrap_or(""),
        "created": rfc3339(task.inserted_at),
        "updated": rfc3339(task.updated_at),
        "links": links,
    });
    if let Some(started) = started {
        info["started"] = json!(started);
    }
    if ended {
        info["finished"] = json!(rfc3339(task.updated_at));
    }
    if let Some(p) = progress {
        info["progress"] = json!(p);
    }
    info
}

/// `GET {prefix}/jobs/{id}`.
pub async fn status(
    State(state): State<AppState>,
    base: Base,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let task = find(&state, &id).await?;
    Ok(Json(status_info(&state, &base, &task).await?))
}

/// `?processID=&status=&datetime=&minDuration=&maxDuration=&limit=` of the
/// job list (`processID` and `status` may list several, comma-separated),
/// and `cursor`, where the `next` link continues.
#[derive(Debug, Deserialize)]
pub struct JobQuery {
    #[serde(rename = "processID")]
    process_id: Option<String>,
    status: Option<String>,
    datetime: Option<String>,
    #[serde(rename = "minDuration")]
    min_duration: Option<f64>,
    #[serde(rename = "maxDuration")]
    max_duration: Option<f64>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// A `datetime` filter on when jobs were created: an instant, or an
/// interval `start/end` with `..` (or nothing) for an open end.
#[derive(Debug, Clone, Copy)]
struct Interval {
    start: Option<time::OffsetDateTime>,
    end: Option<time::OffsetDateTime>,
}

impl Interval {
    fn parse(text: &str) -> ApiResult<Interval> {
        let at = |t: &str| -> ApiResult<Option<time::OffsetDateTime>> {
            match t.trim() {
                "" | ".." => Ok(None),
                t => time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .map(Some)
                    .map_err(|e| Problem::invalid(format!("datetime {t:?}: {e} (RFC 3339)"))),
            }
        };
        match text.split_once('/') {
            Some((a, b)) => Ok(Interval {
                start: at(a)?,
                end: at(b)?,
            }),
            None => {
                let instant = at(text)?;
                Ok(Interval {
                    start: instant,
                    end: instant,
                })
            }
        }
    }

    fn contains(&self, t: time::OffsetDateTime) -> bool {
        self.start.is_none_or(|s| t >= s) && self.end.is_none_or(|e| t <= e)
    }
}

/// How many tasks one job list request reads at most while it filters
/// (by time or duration) to fill a page; the `next` link goes on from
/// where it stopped.
const MAX_SCANNED: usize = 10_000;

/// Seconds a job has run: from its start to its end (or to now).
fn duration_secs(task: &Task, log: &[atp_core::LogRecord]) -> Option<f64> {
    let started = log.iter().find(|r| r.status == Status::Running)?.time;
    let ended = matches!(
        task.status,
        Status::Finished | Status::Failed | Status::Cancelled
    );
    let until = if ended {
        task.updated_at
    } else {
        time::OffsetDateTime::now_utc()
    };
    Some((until - started).as_seconds_f64().max(0.0))
}

/// `GET {prefix}/jobs`: the most recently updated jobs first.
pub async fn list(
    State(state): State<AppState>,
    base: Base,
    Query(query): Query<JobQuery>,
) -> ApiResult<Json<Value>> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=TaskFilter::MAX_LIMIT).contains(&limit) {
        return Err(Problem::invalid(format!(
            "limit must be 1 to {}, not {limit}",
            TaskFilter::MAX_LIMIT
        )));
    }
    let types: Vec<Option<TypeName>> = match &query.process_id {
        None => vec![None],
        Some(ids) => ids
            .split(',')
            .map(|id| {
                TypeName::new(id)
                    .map(Some)
                    .map_err(|e| Problem::invalid(format!("processID {id:?}: {e}")))
            })
            .collect::<ApiResult<_>>()?,
    };
    let statuses: Vec<Option<Status>> = match &query.status {
        None => vec![None],
        Some(words) => {
            let mut all = Vec::new();
            for word in words.split(',') {
                let Some(s) = atp_statuses(word) else {
                    return Err(Problem::invalid(format!(
                        "status {word:?} is none of accepted, running, successful, failed, dismissed"
                    )));
                };
                all.extend(s.iter().copied().map(Some));
            }
            all
        }
    };
    let created = query.datetime.as_deref().map(Interval::parse).transpose()?;
    for d in [query.min_duration, query.max_duration]
        .into_iter()
        .flatten()
    {
        if !(d.is_finite() && d >= 0.0) {
            return Err(Problem::invalid(format!(
                "durations are seconds, not negative: {d}"
            )));
        }
    }
    let by_duration = query.min_duration.is_some() || query.max_duration.is_some();
    let mut after: Option<atp_core::TaskCursor> =
        query.cursor.as_deref().map(str::parse).transpose()?;

    let mut jobs = Vec::new();
    let mut scanned = 0;
    let mut more = true;
    while more && jobs.len() < limit as usize && scanned < MAX_SCANNED {
        // One page of each list, merged: each is in (updated, id) order
        // and continues after the same cursor, so the merge's first
        // `limit` are the next `limit` of all of them.
        let mut batch = Vec::new();
        more = false;
        for task_type in &types {
            for status in &statuses {
                let filter = TaskFilter {
                    status: *status,
                    task_type: task_type.clone(),
                    limit,
                    after,
                    ..TaskFilter::default()
                };
                let page = state.store.task_list(&filter).await?;
                more |= page.next.is_some();
                batch.extend(page.tasks);
            }
        }
        batch.sort_by_key(|t| std::cmp::Reverse((t.updated_at, t.id)));
        if batch.len() > limit as usize {
            batch.truncate(limit as usize);
            more = true;
        }
        let Some(last) = batch.last() else { break };
        after = Some(atp_core::TaskCursor::after(last));
        scanned += batch.len();
        for task in &batch {
            if created.is_some_and(|i| !i.contains(task.inserted_at)) {
                continue;
            }
            let log = state.store.task_log(&key(task)).await.unwrap_or_default();
            if by_duration {
                let Some(d) = duration_secs(task, &log) else {
                    continue;
                };
                if query.min_duration.is_some_and(|m| d < m)
                    || query.max_duration.is_some_and(|m| d > m)
                {
                    continue;
                }
            }
            jobs.push(status_value(&state, &base, task, &log));
            if jobs.len() == limit as usize {
                after = Some(atp_core::TaskCursor::after(task));
                more = more || !std::ptr::eq(task, last);
                break;
            }
        }
    }
    let mut links = vec![link(
        base.at("/jobs"),
        "self",
        "application/json",
        "The jobs",
    )];
    if let (true, Some(cursor)) = (more, after) {
        let mut next = format!("/jobs?limit={limit}&cursor={cursor}");
        for (name, value) in [
            ("processID", query.process_id.as_deref()),
            ("status", query.status.as_deref()),
            ("datetime", query.datetime.as_deref()),
        ] {
            if let Some(value) = value {
                next.push_str(&format!("&{name}={}", super::link::segment(value)));
            }
        }
        for (name, value) in [
            ("minDuration", query.min_duration),
            ("maxDuration", query.max_duration),
        ] {
            if let Some(value) = value {
                next.push_str(&format!("&{name}={value}"));
            }
        }
        links.push(link(
            base.at(&next),
            "next",
            "application/json",
            "The next page",
        ));
    }
    Ok(Json(json!({"jobs": jobs, "links": links})))
}

/// `?response=raw` asks for the stored response as it is, not a results
/// document.
#[derive(Debug, Deserialize)]
pub struct ResultsQuery {
    response: Option<String>,
}

/// `GET {prefix}/jobs/{id}/results`: a results document (the response,
/// JSON inline, text as a string, other bytes raw), or the raw response.
pub async fn results(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<ResultsQuery>,
) -> ApiResult<Response> {
    let raw = raw_response(query.response.as_deref(), false)?;
    let task = find(&state, &id).await?;
    results_of(&state, &task, raw).await
}

/// Whether a `response` parameter asks for the raw response (`raw`) or a
/// results document (`document`); `raw_by_default` when it is not given.
pub fn raw_response(response: Option<&str>, raw_by_default: bool) -> ApiResult<bool> {
    match response {
        None => Ok(raw_by_default),
        Some("raw") => Ok(true),
        Some("document") => Ok(false),
        Some(other) => Err(Problem::invalid(format!(
            "response is raw or document, not {other:?}"
        ))),
    }
}

/// The results of an ended task: its response, raw or as a results
/// document; a failure as the `job-failed` exception; anything else is
/// not ready.
pub async fn results_of(state: &AppState, task: &Task, raw: bool) -> ApiResult<Response> {
    let id = task.identifier.as_str();
    match task.status {
        Status::Finished => {}
        Status::Failed => {
            let log = state.store.task_log(&key(task)).await?;
            let message = log.last().map(|r| r.message.as_str()).unwrap_or("");
            return Err(job_failed(id, message));
        }
        Status::Cancelled => return Err(result_not_ready(id, "was dismissed")),
        _ => return Err(result_not_ready(id, "has not finished")),
    }
    let response = state
        .store
        .task_response_get(&key(task))
        .await
        .map_err(|e| from_store(e, id))?;
    let Some(response) = response else {
        return Ok(if raw {
            StatusCode::NO_CONTENT.into_response()
        } else {
            Json(json!({})).into_response()
        });
    };
    let essence = response.mime_type.split(';').next().unwrap_or("").trim();
    let json_value = (essence == "application/json" || essence.ends_with("+json"))
        .then(|| serde_json::from_slice::<Value>(&response.body).ok())
        .flatten();
    let text = essence
        .starts_with("text/")
        .then(|| String::from_utf8(response.body.clone()).ok())
        .flatten();
    let value = match (raw, json_value, text) {
        (false, Some(v), _) => v,
        (false, None, Some(t)) => json!(t),
        _ => {
            return Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, response.mime_type)],
                response.body,
            )
                .into_response());
        }
    };
    Ok(Json(json!({OUTPUT: {"value": value, "mediaType": essence}})).into_response())
}

/// `DELETE {prefix}/jobs/{id}`: a queued or running job is cancelled (its
/// handler told at once, an `exec:` program's processes ended); a job that
/// has ended is removed with its response. Either way: statusInfo,
/// `dismissed`.
pub async fn dismiss(
    State(state): State<AppState>,
    base: Base,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let task = find(&state, &id).await?;
    let ended = matches!(
        task.status,
        Status::Finished | Status::Failed | Status::Cancelled
    );
    let task = if ended {
        let log = state.store.task_log(&key(&task)).await.unwrap_or_default();
        state
            .store
            .task_delete(&key(&task))
            .await
            .map_err(|e| from_store(e, &id))?;
        let mut info = status_value(&state, &base, &task, &log);
        info["status"] = json!("dismissed");
        info["message"] = json!("Dismissed: the job and its results are removed");
        return Ok(Json(info));
    } else {
        match state
            .store
            .task_cancel(&key(&task), Some("Dismissed through OGC API – Processes"))
            .await
        {
            Ok(task) => task,
            // It ended meanwhile: remove it as an ended job.
            Err(atp_core::Error::InvalidTransition { .. }) => {
                state
                    .store
                    .task_delete(&key(&task))
                    .await
                    .map_err(|e| from_store(e, &id))?;
                task
            }
            Err(e) => return Err(from_store(e, &id)),
        }
    };
    let mut info = status_info(&state, &base, &task).await?;
    info["status"] = json!("dismissed");
    Ok(Json(info))
}
