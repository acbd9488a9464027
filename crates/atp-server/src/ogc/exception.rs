//! The exception types of OGC API – Processes Part 1 (1.0) as RFC 9457
//! problems: same body shape as the rest of the server, the standard's
//! type URIs.

use axum::http::StatusCode;

use crate::problem::Problem;

/// Where Part 1's exception types live.
const EXCEPTIONS: &str = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0";

fn ogc(status: StatusCode, name: &str, title: &str, detail: String) -> Problem {
    let mut p = Problem::new(status, name, title, detail);
    p.kind = format!("{EXCEPTIONS}/{name}");
    p
}

/// 404: no process (task type) of this id.
pub fn no_such_process(id: &str) -> Problem {
    ogc(
        StatusCode::NOT_FOUND,
        "no-such-process",
        "No such process",
        format!("there is no process {id:?}"),
    )
}

/// 404: no job (task) of this id.
pub fn no_such_job(id: &str) -> Problem {
    ogc(
        StatusCode::NOT_FOUND,
        "no-such-job",
        "No such job",
        format!("there is no job {id:?}"),
    )
}

/// 404: the job has not finished (or was dismissed): no results.
pub fn result_not_ready(id: &str, why: &str) -> Problem {
    ogc(
        StatusCode::NOT_FOUND,
        "result-not-ready",
        "Result not ready",
        format!("job {id:?} {why}"),
    )
}

/// The failure of a FAILED job, as its results.
pub fn job_failed(id: &str, message: &str) -> Problem {
    ogc(
        StatusCode::INTERNAL_SERVER_ERROR,
        "job-failed",
        "The job failed",
        format!("job {id:?} failed: {message}"),
    )
}

/// The store's errors, with "not found" in the facade's words.
pub fn from_store(e: atp_core::Error, id: &str) -> Problem {
    match e {
        atp_core::Error::TypeNotFound(_) => no_such_process(id),
        atp_core::Error::TaskNotFound(_) => no_such_job(id),
        e => Problem::from(e),
    }
}
