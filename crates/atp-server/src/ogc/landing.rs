//! The landing page, the conformance declaration and the facade's OpenAPI
//! document.

use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::link::{Base, link};
use crate::extract::Json;

/// The conformance classes of Part 1 (1.0) this facade implements.
pub const CONFORMS_TO: &[&str] = &[
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/ogc-process-description",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/job-list",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/dismiss",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/oas30",
];

/// The media type of an OpenAPI 3.0 document, as clients look for it.
const OPENAPI_30: &str = "application/vnd.oai.openapi+json;version=3.0";

/// `GET {prefix}/`: what the facade offers, as links.
pub async fn landing(base: Base) -> impl IntoResponse {
    Json(json!({
        "title": "ATP – OGC API – Processes",
        "description": "ATP task types as processes, ATP tasks as jobs",
        "links": [
            link(base.at("/"), "self", "application/json", "This document"),
            link(base.at("/api"), "service-desc", OPENAPI_30, "The API definition"),
            link(base.at("/conformance"), "http://www.opengis.net/def/rel/ogc/1.0/conformance",
                "application/json", "Conformance classes"),
            link(base.at("/processes"), "http://www.opengis.net/def/rel/ogc/1.0/processes",
                "application/json", "The processes"),
            link(base.at("/jobs"), "http://www.opengis.net/def/rel/ogc/1.0/job-list",
                "application/json", "The jobs"),
        ],
    }))
}

/// `GET {prefix}/conformance`.
pub async fn conformance() -> impl IntoResponse {
    Json(json!({"conformsTo": CONFORMS_TO}))
}

/// `GET {prefix}/api`: an OpenAPI 3.0 document of the facade's paths.
pub async fn openapi(base: Base) -> impl IntoResponse {
    let op = |summary: &str, id: &str| -> Value {
        json!({
            "summary": summary,
            "operationId": id,
            "responses": {"200": {"description": "OK", "content": {"application/json": {}}}},
        })
    };
    let id_param = |name: &str| json!([{"name": name, "in": "path", "required": true, "schema": {"type": "string"}}]);
    let mut execute = op(
        "Execute a process (asynchronously unless told otherwise)",
        "execute",
    );
    execute["parameters"] = id_param("processID");
    execute["requestBody"] =
        json!({"required": true, "content": {"application/json": {"schema": {"type": "object"}}}});
    execute["responses"]["201"] = json!({"description": "Job created; Location names it"});
    let mut describe = op("A process's description", "getProcessDescription");
    describe["parameters"] = id_param("processID");
    let mut status = op("A job's status", "getStatus");
    status["parameters"] = id_param("jobID");
    let mut dismiss = op(
        "Dismiss a job: cancel it, or remove it when it has ended",
        "dismiss",
    );
    dismiss["parameters"] = id_param("jobID");
    let mut results = op("A finished job's results", "getResult");
    results["parameters"] = id_param("jobID");
    let doc = json!({
        "openapi": "3.0.3",
        "info": {"title": "ATP – OGC API – Processes", "version": env!("CARGO_PKG_VERSION")},
        "servers": [{"url": base.0}],
        "paths": {
            "/": {"get": op("Landing page", "getLandingPage")},
            "/conformance": {"get": op("Conformance classes", "getConformanceClasses")},
            "/processes": {"get": op("Process list", "getProcesses")},
            "/processes/{processID}": {"get": describe},
            "/processes/{processID}/execution": {"post": execute},
            "/jobs": {"get": op("Job list", "getJobs")},
            "/jobs/{jobID}": {"get": status, "delete": dismiss},
            "/jobs/{jobID}/results": {"get": results},
        },
    });
    (
        [(axum::http::header::CONTENT_TYPE, OPENAPI_30)],
        serde_json::to_string(&doc).unwrap_or_default(),
    )
}
