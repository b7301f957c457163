"""An order's retry headers cross the gateway: the client's Idempotency-Key goes to legacy, legacy's
Idempotent-Replayed and Location come back (gateway/headers.py drops only hop-by-hop, credential,
spoofable and gateway-set headers)."""

from gateway.headers import request_headers, response_headers


def test_the_idempotency_key_is_forwarded_unchanged():
    sent = [
        (b"content-type", b"application/json"),
        (b"idempotency-key", b"4f1c2a7e-0b7d-4c55-9d2e-1f0a5b6c7d8e"),
        (b"authorization", b"Bearer x"),
    ]
    assert (b"idempotency-key", b"4f1c2a7e-0b7d-4c55-9d2e-1f0a5b6c7d8e") in request_headers(sent)


def test_a_replayed_answer_keeps_its_headers():
    answered = [
        (b"location", b"/api/v1/orders/42"),
        (b"idempotent-replayed", b"true"),
        (b"retry-after", b"1"),
    ]
    assert response_headers(answered) == answered
