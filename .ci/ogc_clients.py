"""Drives ATP's OGC API - Processes facade with two clients nobody here wrote.

Usage: python3 .ci/ogc_clients.py BASE TOKEN

BASE is the server (http://127.0.0.1:PORT), TOKEN its bearer token. The
server runs a daemon and has the types .ci/ogc-clients registers: Echo
(builtin:echo, no schema), Point (builtin:echo, an object input schema,
synchronous wait allowed), Num (builtin:echo, synchronous wait allowed) and
Sleep (builtin:sleep).

- OWSLib (owslib.ogcapi.processes.Processes): landing page, conformance,
  processes(), process(id), execute(id, inputs, async_=True), then the job
  followed to "successful" and its results fetched.
- ogc-api-processes-client (generated from the standard's own OpenAPI
  document): every endpoint's response deserialises into its models.

Exits non-zero (an AssertionError or the client's exception) on the first
thing that does not hold.
"""

import json
import sys
import time

BASE, TOKEN = sys.argv[1], sys.argv[2]
OGC = f"{BASE}/ogc"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DEADLINE_SECS = 30


def until(what, check):
    """Polls check() until it returns a true value or the deadline passes."""
    deadline = time.monotonic() + DEADLINE_SECS
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def owslib_client():
    from owslib.ogcapi.processes import Processes

    p = Processes(OGC, headers=AUTH)
    links = {link["rel"]: link["href"] for link in p.links}
    assert "service-desc" in links and "conformance" in "".join(links), links
    classes = p.conformance()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core" in classes, classes
    ids = [process["id"] for process in p.processes()]
    assert {"Echo", "Point", "Sleep"} <= set(ids), ids
    point = p.process("Point")
    assert set(point["inputs"]) == {"x", "y"}, point
    assert point["outputs"]["response"], point

    body = p.execute("Point", {"x": 1.5, "y": 2}, async_=True)
    job_id = body["jobID"]
    assert body["processID"] == "Point" and body["type"] == "process", body
    assert p.response_headers["Location"].endswith(f"/ogc/jobs/{job_id}"), p.response_headers

    def status():
        info = p._request(path=f"jobs/{job_id}")
        assert info["status"] in ("accepted", "running", "successful"), info
        return info if info["status"] == "successful" else None

    until(f"job {job_id} successful", status)
    results = p._request(path=f"jobs/{job_id}/results")
    assert results == {
        "response": {"value": {"x": 1.5, "y": 2}, "mediaType": "application/json"}
    }, results
    print(f"owslib: landing, conformance, {len(ids)} processes, job {job_id} successful")


def generated_client():
    import ogc_api_processes_client as c
    from ogc_api_processes_client.models.execute import Execute

    config = c.Configuration(host=OGC)
    api = c.ApiClient(config, header_name="Authorization", header_value=f"Bearer {TOKEN}")

    landing = c.CapabilitiesApi(api).get_landing_page()
    assert any(link.rel == "service-desc" for link in landing.links), landing
    conformance = c.ConformanceDeclarationApi(api).get_conformance_classes()
    assert len(conformance.conforms_to) >= 5, conformance
    processes = c.ProcessListApi(api).get_processes()
    assert {p.id for p in processes.processes} >= {"Echo", "Num", "Point", "Sleep"}, processes
    for p in processes.processes:
        described = c.ProcessDescriptionApi(api).get_process_description(p.id)
        assert described.id == p.id and described.outputs, described

    execute = c.ExecuteApi(api)
    run = Execute.from_dict({"inputs": {"x": 3.5, "y": 4.5}})
    answer = execute.execute_with_http_info("Point", run, _headers={"Prefer": "respond-async"})
    assert answer.status_code == 201, answer
    job_id = answer.data.job_id  # the 201's statusInfo, deserialised
    assert answer.headers["location"].endswith(f"/ogc/jobs/{job_id}"), answer.headers

    status = c.StatusApi(api)
    until(f"job {job_id} successful", lambda: status.get_status(job_id).status.value == "successful")
    info = status.get_status(job_id)
    assert info.job_id == job_id and info.process_id == "Point" and info.progress == 100, info
    results = c.ResultApi(api).get_result(job_id)
    assert "response" in results, results

    slow = execute.execute_with_http_info(
        "Sleep", Execute.from_dict({"inputs": {"input": {"value": {"seconds": 600}, "mediaType": "application/json"}}}),
        _headers={"Prefer": "respond-async"},
    )
    slow_id = slow.data.job_id
    until(f"job {slow_id} running", lambda: status.get_status(slow_id).status.value == "running")
    jobs = c.JobListApi(api).get_jobs()
    assert {job_id, slow_id} <= {j.job_id for j in jobs.jobs}, jobs
    dismissed = c.DismissApi(api).dismiss(slow_id)
    assert dismissed.status.value == "dismissed", dismissed
    assert status.get_status(slow_id).status.value == "dismissed"
    try:
        c.ResultApi(api).get_result(slow_id)
        raise AssertionError("a dismissed job has no results")
    except c.ApiException as e:
        problem = json.loads(e.body)
        assert e.status == 404 and problem["type"].endswith("/result-not-ready"), e
    # Errors deserialise into the standard's exception model.
    from ogc_api_processes_client.models.exception import Exception as OgcException

    for call, name in [
        (lambda: c.StatusApi(api).get_status("no-such-job"), "no-such-job"),
        (lambda: c.ProcessDescriptionApi(api).get_process_description("Nope"), "no-such-process"),
    ]:
        try:
            call()
            raise AssertionError(f"expected {name}")
        except c.ApiException as e:
            problem = OgcException.from_json(e.body)
            assert e.status == 404 and problem.type.endswith(f"/{name}"), problem

    # Synchronous execution (Num allows a wait): the raw result, a number.
    # (A JSON object result matches two branches of the client's oneOf for
    # this response, a flaw of the generated model, so a number it is.)
    sync = execute.execute_with_http_info(
        "Num", Execute.from_dict({"inputs": {"input": 3.5}}), _headers={"Prefer": "wait=10"}
    )
    assert sync.status_code == 200 and sync.data.actual_instance == 3.5, sync
    print(f"ogc-api-processes-client: every endpoint deserialised; job {slow_id} dismissed")


owslib_client()
generated_client()
