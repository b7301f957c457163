import json
from pathlib import Path

import pytest

from flags.routes_file import SHIPPED_ROUTES_FILE
from parity.capture import load_capture
from parity.corpus import CorpusError, hot_routes, load_cases, load_file


def write(tmp_path: Path, text: str, name: str = "x.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_case_becomes_a_request(tmp_path):
    path = write(
        tmp_path,
        """
group: g
cases:
  - name: c
    route: reviews.create
    method: post
    path: /api/v1/reviews
    query: {a: 1, b: x y}
    persona: demo2
    body: {body: 한글}
    setup: [{method: POST, path: /api/v1/items/1/views, persona: demo2}]
""",
    )
    (case,) = load_file(path)
    assert case.id == "g/c"
    assert case.request.method == "POST"
    assert case.request.target == "/api/v1/reviews?a=1&b=x+y"
    assert case.request.content_type == "application/json"
    assert json.loads(case.request.body) == {"body": "한글"}
    assert case.setup[0].path == "/api/v1/items/1/views"


def test_raw_query_and_raw_body_are_kept_exactly(tmp_path):
    path = write(
        tmp_path,
        """
cases:
  - {name: c, route: reviews.list, path: /p, query: "page=%ff", raw_body: '{"a": ', content_type: text/plain}
""",
    )
    (case,) = load_file(path)
    assert case.request.target == "/p?page=%ff"
    assert case.request.body == b'{"a": '
    assert case.request.content_type == "text/plain"
    assert case.request.method == "GET"


def test_repeat_tag_builds_long_strings(tmp_path):
    path = write(
        tmp_path, 'cases: [{name: c, route: reviews.create, path: /p, body: {body: !repeat ["가", 2001]}}]'
    )
    (case,) = load_file(path)
    assert len(json.loads(case.request.body)["body"]) == 2001


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("{name: c, route: reviews.nope, path: /p}", "route must be one of"),
        ("{name: c, route: reviews.list, path: /p, persona: root}", "persona must be one of"),
        ("{name: c, route: reviews.list, path: p}", "path must start with /"),
        ("{name: c, route: reviews.list, path: /p, colour: red}", "unknown keys"),
        ("{route: reviews.list, path: /p}", "needs a name"),
        ("{name: c, route: reviews.list, path: /p, body: {}, raw_body: x}", "not both"),
    ],
)
def test_malformed_cases_name_the_problem(tmp_path, case, message):
    path = write(tmp_path, f"cases: [{case}]")
    with pytest.raises(CorpusError, match=message):
        load_file(path)


def test_duplicate_ids_across_files_are_refused(tmp_path):
    case = "cases: [{name: c, route: reviews.list, path: /p}]"
    first = write(tmp_path, "group: g\n" + case, "a.yaml")
    second = write(tmp_path, "group: g\n" + case, "b.yaml")
    with pytest.raises(CorpusError, match="duplicate case id g/c"):
        load_cases([first, second])


def test_the_shipped_corpus_loads():
    assert len(load_cases()) >= 150


def test_a_route_added_to_the_route_table_is_accepted_without_code_changes(tmp_path, monkeypatch):
    case = write(tmp_path, "cases: [{name: c, route: reviews.stats, path: /api/v1/reviews/stats}]")
    capture = tmp_path / "capture.jsonl"
    capture.write_text('{"route": "reviews.stats", "method": "GET", "path": "/api/v1/reviews/stats"}\n')
    with pytest.raises(CorpusError, match="route must be one of the hot routes"):
        load_cases([case])
    with pytest.raises(CorpusError, match=r"unknown route 'reviews\.stats'"):
        load_capture(capture)
    routes = tmp_path / "routes.toml"
    routes.write_text(
        SHIPPED_ROUTES_FILE.read_text()
        + '\n[[routes]]\nid = "reviews.stats"\npath = "/api/v1/reviews/stats"\ncandidate = "reviews"\n'
    )
    monkeypatch.setenv("ROUTES_FILE", str(routes))
    assert hot_routes()[-1] == "reviews.stats"
    assert [c.route for c in load_cases([case])] == ["reviews.stats"]
    assert [c.route for c in load_capture(capture)] == ["reviews.stats"]


def test_an_unreadable_route_table_is_a_corpus_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTES_FILE", str(tmp_path / "missing.toml"))
    with pytest.raises(CorpusError, match=r"missing\.toml"):
        load_cases([write(tmp_path, "cases: []")])
