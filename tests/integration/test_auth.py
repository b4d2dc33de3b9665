"""Authentication: SigV4 header auth with wrong / unknown credentials,
unsigned requests, presigned URLs (valid, expired, tampered), clock skew,
and that refused writes store nothing."""

import datetime
import urllib.error
import urllib.request

import botocore.auth
import pytest
from botocore import UNSIGNED
from botocore.exceptions import ClientError

from dpnode import ACCESS_KEY, SECRET_KEY, BLOCK, RawConn, build_request, data, error_code, http_status, s3_client


def urlopen(url, method="GET", body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def code_of(body: bytes) -> str:
    t = body.decode("utf-8", "replace")
    return t[t.find("<Code>") + 6 : t.find("</Code>")]


def test_wrong_secret_is_signature_does_not_match(node, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"secret data")
    bad = node.client(secret_key=SECRET_KEY + "x")
    with pytest.raises(ClientError) as e:
        bad.get_object(Bucket=bucket, Key="k")
    assert error_code(e.value) == "SignatureDoesNotMatch"
    assert http_status(e.value) == 403
    with pytest.raises(ClientError) as e:
        bad.list_buckets()
    assert error_code(e.value) == "SignatureDoesNotMatch"


def test_unknown_access_key_is_invalid_access_key_id(node, s3, bucket):
    bad = node.client(access_key="AKIDUNKNOWN", secret_key=SECRET_KEY)
    with pytest.raises(ClientError) as e:
        bad.list_objects_v2(Bucket=bucket)
    assert error_code(e.value) == "InvalidAccessKeyId"
    assert http_status(e.value) == 403


def test_unsigned_requests_are_refused(node, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"private")
    anon = node.client(signature_version=UNSIGNED)
    with pytest.raises(ClientError) as e:
        anon.get_object(Bucket=bucket, Key="k")
    assert http_status(e.value) == 403
    assert error_code(e.value) == "AccessDenied"
    with pytest.raises(ClientError) as e:
        anon.put_object(Bucket=bucket, Key="anon", Body=b"x")
    assert http_status(e.value) == 403
    # Plain HTTP without any auth.
    st, _, body = urlopen(f"{node.endpoint}/{bucket}/k")
    assert st == 403
    assert code_of(body) == "AccessDenied"
    assert b"private" not in body
    st, _, _ = urlopen(f"{node.endpoint}/")
    assert st == 403
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="anon")


@pytest.mark.parametrize("client_kind", ["wrong-secret", "unknown-key", "unsigned"])
def test_refused_put_stores_nothing(node, s3, bucket, client_kind):
    before = node.storage_keys()
    bad = {
        "wrong-secret": lambda: node.client(secret_key="not-the-secret"),
        "unknown-key": lambda: node.client(access_key="NOBODY"),
        "unsigned": lambda: node.client(signature_version=UNSIGNED),
    }[client_kind]()
    for key, body in [("small", b"tiny"), ("big", data(3 * BLOCK + 5, seed=1))]:
        with pytest.raises(ClientError) as e:
            bad.put_object(Bucket=bucket, Key=key, Body=body)
        assert http_status(e.value) == 403
    with pytest.raises(ClientError):
        bad.create_multipart_upload(Bucket=bucket, Key="mp")
    with pytest.raises(ClientError):
        bad.create_bucket(Bucket="evil-bucket")
    with pytest.raises(ClientError):
        bad.delete_bucket(Bucket=bucket)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [bucket]
    assert node.storage_keys() == before


def test_refused_delete_deletes_nothing(node, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"stay")
    bad = node.client(secret_key="nope")
    with pytest.raises(ClientError) as e:
        bad.delete_object(Bucket=bucket, Key="k")
    assert http_status(e.value) == 403
    with pytest.raises(ClientError):
        bad.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k"}]})
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"stay"


def test_presigned_get_url(node, s3, bucket):
    body = data(BLOCK + 77, seed=5)
    s3.put_object(Bucket=bucket, Key="dir/pre signed+ü.bin", Body=body)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "dir/pre signed+ü.bin"}, ExpiresIn=300)
    assert "X-Amz-Signature=" in url
    st, hs, got = urlopen(url)
    assert st == 200
    assert got == body
    # A Range header may be added to a presigned GET (it is not signed).
    st, _, got = urlopen(url, headers={"Range": "bytes=10-19"})
    assert st == 206
    assert got == body[10:20]


def test_presigned_put_url(node, s3, bucket):
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "uploaded"}, ExpiresIn=300)
    st, hs, _ = urlopen(url, method="PUT", body=b"via presigned PUT")
    assert st == 200
    assert s3.get_object(Bucket=bucket, Key="uploaded")["Body"].read() == b"via presigned PUT"


def test_presigned_url_tampered(node, s3, bucket):
    s3.put_object(Bucket=bucket, Key="a", Body=b"A")
    s3.put_object(Bucket=bucket, Key="b", Body=b"B")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "a"}, ExpiresIn=300)
    st, _, body = urlopen(url.replace(f"/{bucket}/a?", f"/{bucket}/b?"))
    assert st == 403
    assert code_of(body) == "SignatureDoesNotMatch"
    assert body != b"B"
    # A presigned GET URL cannot be used to PUT.
    st, _, body = urlopen(url, method="PUT", body=b"overwrite")
    assert st == 403
    assert s3.get_object(Bucket=bucket, Key="a")["Body"].read() == b"A"


def signing_in_the_past(monkeypatch, seconds):
    real = botocore.auth.get_current_datetime
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: real(*a, **k) - datetime.timedelta(seconds=seconds))


def test_expired_presigned_url(node, s3, bucket, monkeypatch):
    s3.put_object(Bucket=bucket, Key="k", Body=b"expiring")
    fresh = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=60)
    signing_in_the_past(monkeypatch, 2 * 3600)
    old = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=60)
    monkeypatch.undo()
    st, _, body = urlopen(old)
    assert st == 403
    assert code_of(body) == "AccessDenied"
    assert b"expired" in body
    assert urlopen(fresh)[0] == 200


def test_presigned_url_expires_in_real_time(node, s3, bucket):
    import time

    s3.put_object(Bucket=bucket, Key="k", Body=b"short-lived")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=1)
    time.sleep(2.2)
    st, _, body = urlopen(url)
    assert st == 403
    assert code_of(body) == "AccessDenied"


def test_header_auth_with_skewed_clock(node, s3, bucket, monkeypatch):
    signing_in_the_past(monkeypatch, 3600)
    old = node.client()
    with pytest.raises(ClientError) as e:
        old.put_object(Bucket=bucket, Key="skewed", Body=b"x")
    monkeypatch.undo()
    assert http_status(e.value) == 403
    assert error_code(e.value) == "RequestTimeTooSkewed"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="skewed")


def test_signed_payload_hash_mismatch(node, s3, bucket):
    """A body that differs from the signed x-amz-content-sha256 is refused
    and not stored."""
    from dpnode import sign_headers

    body = b"the body that was signed"
    hs = sign_headers(node, "PUT", f"/{bucket}/tampered", headers={"Content-Length": str(len(body))}, body=body)
    assert hs["X-Amz-Content-SHA256"] != "UNSIGNED-PAYLOAD"
    other = b"the body that was SENT!!"
    assert len(other) == len(body)
    with RawConn(node) as c:
        c.send(build_request("PUT", f"/{bucket}/tampered", hs, other))
        r = c.read_response()
    assert r.status == 400
    assert r.error_code() == "XAmzContentSHA256Mismatch"
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="tampered")
    assert http_status(e.value) == 404


def test_good_credentials_after_failures(node, bucket):
    """Failed auth does not poison anything: a fresh client works."""
    c = s3_client(node.endpoint, ACCESS_KEY, SECRET_KEY)
    c.put_object(Bucket=bucket, Key="ok", Body=b"fine")
    assert c.get_object(Bucket=bucket, Key="ok")["Body"].read() == b"fine"
