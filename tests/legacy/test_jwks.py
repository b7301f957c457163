"""The JWKS view's conditional answers: gateways poll it every few seconds, so an unchanged key set
is a 304, and a rotation or retirement changes the ETag at once."""

from legacy_django.common.signing_keys import DirectoryKeyStore, get_key_store

JWKS = "/.well-known/jwks.json"


def test_the_jwks_has_an_etag_and_caches_must_revalidate(api):
    response = api.get(JWKS)
    assert response.status_code == 200
    assert response["ETag"].startswith('"') and response["ETag"].endswith('"')
    assert response["Cache-Control"] == "public, max-age=0, must-revalidate"
    assert api.get(JWKS)["ETag"] == response["ETag"], "the same keys, the same tag"


def test_if_none_match_with_the_current_etag_is_a_304_without_a_body(api):
    etag = api.get(JWKS)["ETag"]
    response = api.get(JWKS, headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == etag
    assert "max-age=0" in response["Cache-Control"]
    assert api.get(JWKS, headers={"If-None-Match": '"something-else"'}).status_code == 200


def test_rotating_and_retiring_change_the_etag(api, settings, tmp_path):
    settings.JWT_KEYS_DIR = tmp_path
    store = get_key_store()
    assert isinstance(store, DirectoryKeyStore)
    old = api.get(JWKS)
    old_kid = store.current().active.kid

    store.rotate()
    rotated = api.get(JWKS, headers={"If-None-Match": old["ETag"]})
    assert rotated.status_code == 200
    assert len(rotated.json()["keys"]) == 2

    store.retire(old_kid)
    retired = api.get(JWKS, headers={"If-None-Match": rotated["ETag"]})
    assert retired.status_code == 200
    assert [key["kid"] for key in retired.json()["keys"]] != [old_kid]
    assert old_kid not in {key["kid"] for key in retired.json()["keys"]}
    assert len({old["ETag"], rotated["ETag"], retired["ETag"]}) == 3
