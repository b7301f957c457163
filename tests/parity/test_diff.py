from datetime import UTC, datetime

from parity.diff import FRESH, Observation, compare, mask_fresh_timestamps

JSON = {"Content-Type": "application/json"}


def obs(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Observation:
    return Observation.of(status, headers if headers is not None else JSON, body)


def test_identical_answers_match():
    assert compare(obs(b'{"a":1}'), obs(b'{"a":1}')) == []


def test_status_and_headers_that_matter_are_compared_and_others_ignored():
    control = obs(b"{}", 201, {"Content-Type": "application/json", "Location": "/x/1", "Server": "gunicorn"})
    candidate = obs(b"{}", 200, {"content-type": "application/json", "server": "uvicorn"})
    assert [str(d) for d in compare(control, candidate)] == [
        "status: control 201 != candidate 200",
        "header:location: control '/x/1' != candidate None",
    ]


def test_body_differences_are_named_by_json_pointer():
    control = obs(b'{"items":[{"rating":4,"a/b":1}],"next":null}')
    candidate = obs(b'{"items":[{"rating":5,"a/b":1}],"next":"x"}')
    assert [d.where for d in compare(control, candidate)] == ["body:/items/0/rating", "body:/next"]


def test_missing_extra_and_retyped_fields():
    differences = compare(obs(b'{"a":1,"b":2}'), obs(b'{"a":"1","c":3}'))
    assert [(d.where, d.control, d.candidate) for d in differences] == [
        ("body:/a", "1", '"1"'),
        ("body:/b", "2", "(missing)"),
        ("body:/c", "(missing)", "3"),
    ]


def test_key_order_is_a_difference():
    (difference,) = compare(obs(b'{"a":1,"b":2}'), obs(b'{"b":2,"a":1}'))
    assert difference.where == "body:/ (key order)"


def test_list_length_is_reported():
    differences = compare(obs(b"[1,2,3]"), obs(b"[1,2]"))
    assert differences[0].where == "body:/length"


def test_formatting_only_differences_point_at_the_bytes():
    (difference,) = compare(obs('{"a":"가"}'.encode()), obs(b'{"a":"\\uac00"}'))
    assert difference.where.startswith("body bytes at offset 6")


def test_non_json_bodies_are_compared_as_bytes():
    (difference,) = compare(obs(b"plain", headers={}), obs(b"plane", headers={}))
    assert difference.where == "body bytes at offset 3"


def test_fresh_timestamps_compare_equal_but_old_ones_do_not():
    fresh_after = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    control = obs(b'{"created_at":"2026-11-25T12:00:01Z","old":"2026-11-01T00:00:00Z"}')
    candidate = obs(b'{"created_at":"2026-11-25T12:00:02Z","old":"2026-11-01T00:00:01Z"}')
    assert [d.where for d in compare(control, candidate, fresh_after=fresh_after)] == ["body:/old"]
    assert len(compare(control, candidate)) == 2, "without the rule every timestamp counts"


def test_mask_leaves_everything_else_alone():
    body = b'{"t":"2026-11-25T12:00:00Z","s":"2026-11-25T12:00:00"}'
    masked = mask_fresh_timestamps(body, datetime(2026, 1, 1, tzinfo=UTC))
    assert masked == b'{"t":"' + FRESH.encode() + b'","s":"2026-11-25T12:00:00"}'
