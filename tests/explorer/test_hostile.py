"""Hostile requests to the explorer (issue #9): SQL that reaches for files, settings or forever;
audio requests with path tricks; oversized bodies; and a property-based fuzz of the whole JSON API
against its own OpenAPI document (schemathesis): never a 500.

The fuzz's case count is written to ``test-artifacts/reliability/fuzz.json`` (docs/reliability.md).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dash
import pytest
import schemathesis
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from explorer import api, create_app
from explorer.state import parse
from musicmap.commands.serve import upload_functions
from musicmap.settings import resolve
from store import NoMatchingTrack, Store
from tests.conftest import DemoStore

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "reliability"


@pytest.fixture(scope="module")
def store(demo_store: DemoStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A copy of the demo store: the fuzz records listening events (POST /api/v1/events), and recorded
    events steer every list of the tests that share the demo store."""
    copy = tmp_path_factory.mktemp("hostile") / "store"
    shutil.copytree(demo_store.store, copy)
    with Store.open(copy, shared=True) as opened:
        yield opened


@pytest.fixture(scope="module")
def app(store: Store) -> dash.Dash:
    embed, place = upload_functions(store, resolve(None, env={}))  # uploads on: that route is fuzzed too
    return create_app(store, embed, place=place, max_upload_bytes=2_000_000)


@pytest.fixture
def client(app: dash.Dash) -> FlaskClient:
    return app.server.test_client()


def _sql(client: FlaskClient, query: str) -> tuple[int, str]:
    response = client.get("/api/v1/sql", query_string={"q": query})
    body = response.get_json()
    return response.status_code, json.dumps(body)


def test_sql_that_reaches_outside_is_refused(client: FlaskClient) -> None:
    for query in ("SELECT * FROM read_csv('/etc/passwd')", "SELECT * FROM read_csv_auto('/etc/passwd')",
                  "SELECT * FROM read_text('/etc/passwd')", "SELECT * FROM read_blob('/etc/passwd')",
                  "SELECT * FROM read_json('/etc/passwd')", "SELECT * FROM read_parquet('/tmp/*.parquet')",
                  "SELECT * FROM '/etc/passwd'", "SELECT * FROM glob('/etc/*')",
                  "SELECT * FROM read_csv('https://example.com/x.csv')"):
        status, body = _sql(client, query)
        # refused by the sandbox (no external access), or, for a bare quoted path, not even looked up
        assert status == 400 and "root:" not in body, (query, body)
        assert "refused" in body.lower() or "table with name /etc/passwd does not exist" in body.lower(), body


def test_sql_that_writes_or_changes_settings_is_refused(client: FlaskClient, store: Store) -> None:
    before = store.count("tracks")
    for query in ("SET enable_external_access = true", "RESET enable_external_access",
                  "PRAGMA enable_profiling", "SELECT set_config('enable_external_access', 'true')",
                  "CREATE TABLE x AS SELECT 1", "INSERT INTO tracks (id) VALUES (999999)",
                  "UPDATE tracks SET title = 'x'", "DROP TABLE tracks", "CALL pragma_version()",
                  "ATTACH ':memory:' AS m", "DETACH library", "COPY (SELECT 1) TO '/tmp/musicmap-x.csv'",
                  "EXPORT DATABASE '/tmp/musicmap-export'", "INSTALL httpfs", "LOAD httpfs",
                  "CREATE SECRET s (TYPE s3, KEY_ID 'x', SECRET 'y')", "CHECKPOINT", "VACUUM"):
        status, body = _sql(client, query)
        assert status == 400, (query, body)
    assert store.count("tracks") == before
    assert not Path("/tmp/musicmap-x.csv").exists() and not Path("/tmp/musicmap-export").exists()


def test_sql_that_runs_forever_is_interrupted(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setattr(api, "SQL_TIMEOUT", 1.0)
    started = time.monotonic()
    status, body = _sql(client, "SELECT count(*) FROM range(1000000000000) a, range(1000) b")
    assert status == 400 and "interrupted after 1 s" in body, body
    assert time.monotonic() - started < 10
    status, body = _sql(client, "SELECT 42 AS answer")  # the session still works afterwards
    assert status == 200 and "42" in body


def test_audio_path_tricks_are_404(client: FlaskClient) -> None:
    for path in ("/audio/../../etc/passwd", "/audio/..%2F..%2Fetc%2Fpasswd", "/audio/%2Fetc%2Fpasswd",
                 "/audio/-1", "/audio/0", "/audio/99999999", "/audio/1.5", "/audio/1/../../etc/passwd",
                 "/api/v1/audio/99999999", "/api/v1/audio/..%2Fmanifest.json", "/audio/1%00", "/audio/ 1"):
        response = client.get(path)
        assert b"root:" not in response.data and b'"model"' not in response.data, path  # no file, no manifest
        if response.status_code == 200:  # ".." resolved by the client to a page path: Dash's page, not a file
            assert not response.request.path.startswith("/audio/") and response.mimetype == "text/html", path
        else:
            assert response.status_code == 404 and "error" in response.get_json(), path


# str.isdigit says yes to these; int() refuses the first two and reads the last as 12.
NOT_ASCII_DIGITS = ("\u00b2", "1\u00b2", "\u0661\u0662")


def test_numbers_in_other_scripts_are_refused_not_a_500(client: FlaskClient, store: Store) -> None:
    for raw in NOT_ASCII_DIGITS:
        for url, params in (("/api/v1/extend", {"ids": raw}), ("/api/v1/path", {"from": raw, "to": "1"}),
                            ("/api/v1/tracks", {"year_min": raw}),
                            ("/rest/getSong", {"id": raw}), ("/rest/getSimilarSongs2", {"id": "1", "count": raw})):
            response = client.get(url, query_string={**params, "u": "x", "p": "x", "f": "json"})
            assert response.status_code < 500, (url, raw)
            body = response.get_json()
            assert response.status_code == 400 or "error" in body.get("subsonic-response", {}), (url, raw)
        for path in (f"/api/v1/tracks/{raw}", f"/api/v1/panel/{raw}", f"/audio/{raw}"):
            assert client.get(path).status_code == 404, path
        assert parse(f"?track={raw}&years={raw}-2000&k={raw}", ("genre",)).track is None
        with pytest.raises(NoMatchingTrack):
            store.resolve_track(raw)


def test_oversized_bodies_are_refused_before_any_handler(demo_store: DemoStore) -> None:
    with Store.open(demo_store.store) as store:
        client = create_app(store).server.test_client()
        for method, path in (("POST", "/_dash-update-component"), ("GET", "/api/v1/tracks"),
                             ("POST", "/api/v1/similar/upload")):
            response = client.open(path, method=method, data=b"x" * (2 << 20),
                                   headers={"Content-Type": "application/json"})
            assert response.status_code == 413, (method, path)


# The schema is the app's own OpenAPI document (the test above checks it equals what the server
# serves); cases are drawn per operation and sent to the app in-process (WSGI).
SCHEMA = schemathesis.openapi.from_dict(json.loads(json.dumps(api.OPENAPI)))
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


def test_the_fuzz_covers_every_operation_of_the_api() -> None:
    paths = {op.path for op in OPERATIONS}
    assert len(OPERATIONS) >= 9, paths
    assert {"/api/v1/tracks", "/api/v1/similar/{track_id}", "/api/v1/sql", "/api/v1/path"} <= paths, paths


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op.method.upper()} {op.path}")
def test_the_api_never_answers_500(app: dash.Dash, operation: Any) -> None:
    SCHEMA.app = app.server
    key = f"{operation.method.upper()} {operation.path}"
    statuses: dict[str, int] = {}

    @given(case=operation.as_strategy())
    @settings(max_examples=100, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call(app=app.server)
        statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
        case.validate_response(response, checks=[not_a_server_error])

    fuzz()
    assert statuses and not any(code.startswith("5") for code in statuses), statuses
    _record(key, statuses)


def _record(key: str, statuses: dict[str, int]) -> None:
    """This operation's figures, then all recorded so far gathered into fuzz.json
    (docs/reliability.md): each test records itself, so any subset runs alone or in any order."""
    folder = ARTIFACTS / "fuzz"
    folder.mkdir(parents=True, exist_ok=True)
    name = "".join(c if c.isalnum() else "-" for c in key)
    (folder / f"{name}.json").write_text(json.dumps({"operation": key, "statuses": statuses}))
    cases: dict[str, int] = {}
    totals: dict[str, int] = {}
    for path in sorted(folder.glob("*.json")):
        one = json.loads(path.read_text())
        cases[one["operation"]] = sum(one["statuses"].values())
        for code, n in one["statuses"].items():
            totals[code] = totals.get(code, 0) + n
    (ARTIFACTS / "fuzz.json").write_text(json.dumps({"cases": cases, "total": sum(cases.values()),
                                                     "statuses": totals}, indent=1, sort_keys=True))
