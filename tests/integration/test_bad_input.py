"""Bad input over raw sockets and boto3: malformed requests, oversized
heads, short and abandoned bodies, forbidden bucket names and keys. After
each, the node must still serve a normal PUT/GET on a fresh connection."""

import socket
import struct
import threading
import time
import uuid

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from dpnode import BLOCK, MiB, RawConn, build_request, data, error_code, http_status, sign_headers, signed_request, simple_request, wait_until


def assert_healthy(node, bucket):
    """A normal PUT and GET on fresh connections (raw and boto3) work."""
    key = "health-" + uuid.uuid4().hex[:8]
    body = data(BLOCK + 3, seed=42)
    r = simple_request(node, "PUT", f"/{bucket}/{key}", body)
    assert r.status == 200, r.text
    r = simple_request(node, "GET", f"/{bucket}/{key}")
    assert r.status == 200
    assert r.body == body
    c = node.client()
    c.put_object(Bucket=bucket, Key=key + "-b", Body=b"boto3 still works")
    assert c.get_object(Bucket=bucket, Key=key + "-b")["Body"].read() == b"boto3 still works"
    assert node.alive()


def send_raw(node, payload: bytes, timeout=10):
    with RawConn(node, timeout=timeout) as c:
        c.send(payload)
        r = c.read_response()
        closed = c.closed_by_peer(wait=5)
    return r, closed


def abortive_close(sock):
    """Close with RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# ------------------------------------------------------------ request heads


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /a b c HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost x no colon\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(64)) + b"\r\n\r\n",  # a TLS ClientHello
        b"GET / HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
    ],
    ids=["garbage", "no-target", "spaces-in-target", "header-without-colon", "tls-hello", "space-in-header-name"],
)
def test_malformed_request_is_400(node, bucket, raw):
    r, closed = send_raw(node, raw)
    assert r.status == 400
    assert r.error_code() is not None
    assert closed, "the server should close the connection after a malformed head"
    assert_healthy(node, bucket)


def test_unsupported_http_version(node, bucket):
    with RawConn(node) as c:
        c.send(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")
        try:
            r = c.read_response()
            assert r.status in (400, 505)
        except ConnectionError:
            pass  # closing without an answer is acceptable too
    assert_healthy(node, bucket)


def test_oversized_head_is_400(node, bucket):
    big = "x" * (20 * 1024)
    raw = f"GET /{bucket}/k HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n".encode()
    r, closed = send_raw(node, raw)
    assert r.status == 400
    assert r.error_code() == "RequestHeaderSectionTooLarge"
    assert closed
    assert_healthy(node, bucket)


def test_oversized_head_never_terminated(node, bucket):
    """A head that keeps growing without a blank line is cut off at the limit."""
    with RawConn(node) as c:
        c.send(b"GET / HTTP/1.1\r\n")
        try:
            for i in range(40):
                c.send(f"X-H{i}: {'y' * 1000}\r\n".encode())
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = c.read_response()
        assert r.status == 400
    assert_healthy(node, bucket)


def test_too_many_headers_is_400(node, bucket):
    hs = "".join(f"X-H{i}: v\r\n" for i in range(150))
    r, closed = send_raw(node, f"GET / HTTP/1.1\r\nHost: x\r\n{hs}\r\n".encode())
    assert r.status == 400
    assert_healthy(node, bucket)


def test_bad_content_length(node, bucket):
    for cl in ("abc", "-5", "1, 2", "99999999999999999999999"):
        hs = sign_headers(node, "PUT", f"/{bucket}/cl", headers={"Content-Length": cl}, body=b"")
        with RawConn(node) as c:
            c.send(build_request("PUT", f"/{bucket}/cl", hs, b"hello"))
            r = c.read_response()
        assert r.status == 400, (cl, r.status, r.text)
    with pytest.raises(ClientError):
        node.client().head_object(Bucket=bucket, Key="cl")
    assert_healthy(node, bucket)


def test_content_length_and_transfer_encoding_together(node, bucket):
    hs = sign_headers(node, "PUT", f"/{bucket}/smuggle", headers={"Content-Length": "5", "Transfer-Encoding": "chunked"}, body=b"hello")
    r, _ = send_raw(node, build_request("PUT", f"/{bucket}/smuggle", hs, b"5\r\nhello\r\n0\r\n\r\n"))
    assert r.status == 400
    with pytest.raises(ClientError):
        node.client().head_object(Bucket=bucket, Key="smuggle")
    assert_healthy(node, bucket)


def test_method_not_allowed(node, bucket):
    r = simple_request(node, "PATCH", f"/{bucket}/k", b"x")
    assert r.status == 405
    assert r.error_code() == "MethodNotAllowed"
    assert_healthy(node, bucket)


def test_too_large_put_refused_before_body(node, bucket):
    """A Content-Length over the 5 GiB single-PUT limit is refused from the
    head alone; nothing is sent."""
    hs = sign_headers(node, "PUT", f"/{bucket}/huge", headers={"Content-Length": str(6 << 30), "Expect": "100-continue"})
    with RawConn(node) as c:
        c.send(build_request("PUT", f"/{bucket}/huge", hs))
        r = c.read_response(skip_continue=False)
        assert r.status == 400
        assert r.error_code() == "EntityTooLarge"
    assert_healthy(node, bucket)


def test_pipelined_requests(node, bucket):
    """Two requests in one write get two responses in order."""
    a = signed_request(node, "PUT", f"/{bucket}/p1", b"first")
    b = signed_request(node, "GET", f"/{bucket}/p1")
    with RawConn(node) as c:
        c.send(a + b)
        r1 = c.read_response()
        r2 = c.read_response()
    assert r1.status == 200
    assert (r2.status, r2.body) == (200, b"first")


def test_expect_100_continue(node, bucket):
    body = data(300_000, seed=1)
    hs = sign_headers(node, "PUT", f"/{bucket}/cont", headers={"Content-Length": str(len(body)), "Expect": "100-continue"}, body=body)
    with RawConn(node) as c:
        c.send(build_request("PUT", f"/{bucket}/cont", hs))
        r = c.read_response(skip_continue=False)
        assert r.status == 100
        c.send(body)
        r = c.read_response()
        assert r.status == 200
    assert node.client().get_object(Bucket=bucket, Key="cont")["Body"].read() == body


# ---------------------------------------------------------------- bodies


@pytest.mark.parametrize("declared,sent", [(1000, 500), (3 * BLOCK + 100, 2 * BLOCK + 50)], ids=["inline", "blocks"])
def test_short_body_then_close(node, s3, bucket, declared, sent):
    before = node.storage_keys()
    body = data(declared, seed=1)
    hs = sign_headers(node, "PUT", f"/{bucket}/short", headers={"Content-Length": str(declared)}, body=body)
    c = RawConn(node)
    c.send(build_request("PUT", f"/{bucket}/short", hs, body[:sent]))
    # While that request hangs, other clients are served.
    s3.put_object(Bucket=bucket, Key="other", Body=b"served meanwhile")
    assert s3.get_object(Bucket=bucket, Key="other")["Body"].read() == b"served meanwhile"
    c.sock.shutdown(socket.SHUT_WR)
    try:
        r = c.read_response()
        assert r.status >= 400
    except ConnectionError:
        pass
    c.close()
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="short")
    assert http_status(e.value) == 404
    # Only the "other" object remains; partial blocks are reclaimed.
    assert wait_until(lambda: node.storage_keys() <= before + 1, timeout=10), (node.storage_keys(), before)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["other"]
    assert_healthy(node, bucket)


def test_disconnect_in_the_middle_of_a_20_mib_upload(node, s3, bucket):
    before = node.storage_keys()
    size = 20 * MiB
    body = data(size, seed=20)
    hs = sign_headers(node, "PUT", f"/{bucket}/abandoned", headers={"Content-Length": str(size)}, body=body)
    c = RawConn(node, timeout=30)
    c.send(build_request("PUT", f"/{bucket}/abandoned", hs, body[: 9 * MiB + 12345]))
    # Blocks of the partial upload are being written...
    grew = wait_until(lambda: node.storage_keys() >= before + 5, timeout=10)
    assert grew, "the partial upload should have stored some blocks"
    abortive_close(c.sock)
    # ...and once the client is gone, they are reclaimed: the key count goes
    # back to what it was and stays there.
    assert wait_until(lambda: node.storage_keys() == before, timeout=10), (node.storage_keys(), before)
    time.sleep(0.5)
    assert node.storage_keys() == before
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="abandoned")
    assert http_status(e.value) == 404
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    assert_healthy(node, bucket)


def test_disconnect_in_the_middle_of_a_part_upload(node, s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    before = node.storage_keys()
    size = 8 * MiB
    body = data(size, seed=8)
    q = f"partNumber=1&uploadId={up}"
    hs = sign_headers(node, "PUT", f"/{bucket}/mp", q, headers={"Content-Length": str(size)}, body=body)
    c = RawConn(node, timeout=30)
    c.send(build_request("PUT", f"/{bucket}/mp?{q}", hs, body[: 5 * MiB]))
    assert wait_until(lambda: node.storage_keys() >= before + 3, timeout=10)
    abortive_close(c.sock)
    assert wait_until(lambda: node.storage_keys() == before, timeout=10), (node.storage_keys(), before)
    assert s3.list_parts(Bucket=bucket, Key="mp", UploadId=up).get("Parts", []) == []
    assert_healthy(node, bucket)


def test_slow_clients_do_not_block_others(node, s3, bucket):
    """Half-sent heads and bodies on several connections do not stop the
    node from serving a normal client."""
    conns = []
    for i in range(8):
        c = RawConn(node)
        if i % 2:
            c.send(b"PUT /" + bucket.encode() + b"/slow HTTP/1.1\r\nHost: x\r\nContent-Le")
        else:
            hs = sign_headers(node, "PUT", f"/{bucket}/slow{i}", headers={"Content-Length": "100000"})
            c.send(build_request("PUT", f"/{bucket}/slow{i}", hs, b"z" * 1000))
        conns.append(c)
    t0 = time.monotonic()
    assert_healthy(node, bucket)
    assert time.monotonic() - t0 < 10
    for c in conns:
        abortive_close(c.sock)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"] if o["Key"].startswith("slow")] == []


def test_body_longer_than_content_length(node, s3, bucket):
    """Bytes after the declared body are the next request; junk there is a
    bad request, and the object itself is stored with the declared length."""
    hs = sign_headers(node, "PUT", f"/{bucket}/exact", headers={"Content-Length": "5"}, body=b"hello")
    with RawConn(node) as c:
        c.send(build_request("PUT", f"/{bucket}/exact", hs, b"hello") + b"JUNK JUNK\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        r2 = c.read_response()
        assert r2.status == 400
    assert s3.get_object(Bucket=bucket, Key="exact")["Body"].read() == b"hello"


def test_many_connections_opened_and_dropped(node, bucket):
    for _ in range(50):
        s = socket.create_connection(node.s3_addr, timeout=5)
        abortive_close(s)
    for _ in range(20):
        s = socket.create_connection(node.s3_addr, timeout=5)
        s.sendall(b"GET / HTT")
        s.close()
    assert_healthy(node, bucket)
    st = node.status()
    assert st["s3"]["connections_open"] <= 2


# ------------------------------------------------------------ names and keys


@pytest.mark.parametrize(
    "name",
    ["UPPERCASE", "ab", "a" * 64, "under_score", "-leading-dash", "trailing-dash-", "two..dots", "192.168.1.1", "xn--punycode", "dot-.dash", "bucket-s3alias"],
)
def test_forbidden_bucket_name(node, s3, bucket, name):
    try:
        s3.create_bucket(Bucket=name)
        raise AssertionError(f"bucket {name!r} was created")
    except ParamValidationError:
        # botocore refused it locally; send it ourselves.
        r = simple_request(node, "PUT", f"/{name}")
        assert r.status == 400
        assert r.error_code() == "InvalidBucketName"
    except ClientError as e:
        assert error_code(e) == "InvalidBucketName"
        assert http_status(e) == 400
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [bucket]
    assert_healthy(node, bucket)


def test_invalid_bucket_name_raw_with_body(node, bucket):
    r = simple_request(node, "PUT", "/Bad_Bucket/key", b"x" * 5000)
    assert r.status == 400
    assert r.error_code() == "InvalidBucketName"
    assert_healthy(node, bucket)


def test_key_too_long(node, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k" * 1024, Body=b"max length is fine")
    assert s3.get_object(Bucket=bucket, Key="k" * 1024)["Body"].read() == b"max length is fine"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"too long")
    assert error_code(e.value) == "KeyTooLongError"
    assert http_status(e.value) == 400
    # Multi-byte characters count in bytes.
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="é" * 513, Body=b"too long")
    assert error_code(e.value) == "KeyTooLongError"
    with pytest.raises(ClientError) as e:
        s3.create_multipart_upload(Bucket=bucket, Key="m" * 2000)
    assert error_code(e.value) == "KeyTooLongError"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["k" * 1024]
    assert_healthy(node, bucket)


@pytest.mark.parametrize("key", ["../../etc/passwd", "../escape", "./dot", "a/../../b", "/leading-slash", "//double//slash", "..", "."])
def test_path_like_keys_are_just_keys(node, s3, bucket, key):
    body = f"content of {key}".encode()
    # Raw request: the path goes on the wire exactly as the key.
    from urllib.parse import quote

    path = f"/{bucket}/" + quote(key, safe="/")
    r = simple_request(node, "PUT", path, body)
    assert r.status == 200, r.text
    r = simple_request(node, "GET", path)
    assert (r.status, r.body) == (200, body)
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == [key]
    # boto3 reads the same object.
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    # No file appeared outside the data directory.
    import os

    for root, dirs, files in os.walk(node.root):
        assert "passwd" not in files and "escape" not in files
    assert_healthy(node, bucket)


@pytest.mark.parametrize("key", ["a\x00b", "\x00", "trailing\x00"])
def test_key_with_nul_is_refused(node, s3, bucket, key):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    assert http_status(e.value) == 400
    assert error_code(e.value) in ("InvalidArgument", "InvalidRequest")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key=key)
    assert http_status(e.value) == 400
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    assert_healthy(node, bucket)


def test_invalid_percent_encoding_in_path(node, bucket):
    for path in (f"/{bucket}/%zz", f"/{bucket}/%", f"/{bucket}/%C3%28"):
        with RawConn(node) as c:
            c.send(build_request("GET", path, {"Host": "x"}))
            r = c.read_response()
        assert r.status in (400, 403), (path, r.status)
    assert_healthy(node, bucket)


def test_control_characters_in_key(node, s3, bucket):
    """Control characters other than NUL are legal in S3 keys."""
    key = "ctl\x01\x1f\x7f"
    s3.put_object(Bucket=bucket, Key=key, Body=b"ctl")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"ctl"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]


def test_concurrent_clients(node, bucket):
    """Several boto3 clients writing and reading at once."""
    errors = []

    def worker(i):
        try:
            c = node.client()
            for j in range(10):
                body = data(1000 + i * 100000 + j, seed=i * 100 + j)
                c.put_object(Bucket=bucket, Key=f"w{i}/{j}", Body=body)
                assert c.get_object(Bucket=bucket, Key=f"w{i}/{j}")["Body"].read() == body
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert errors == []
    assert node.client().list_objects_v2(Bucket=bucket)["KeyCount"] == 60


# ------------------------------------------- errors before a big body is read


@pytest.mark.parametrize("size", [3 * MiB, 20 * MiB], ids=["3MiB", "20MiB"])
@pytest.mark.parametrize("case", ["missing-bucket", "wrong-secret", "bad-bucket-name"])
def test_error_reaches_client_that_sends_a_big_body_without_expect(node, s3, bucket, case, size):
    """The server answers from the head alone and closes, but lingers to
    drain the body, so a client that sends without Expect: 100-continue
    still reads the error instead of a connection reset."""
    body = data(size, seed=5)
    if case == "missing-bucket":
        req, want = signed_request(node, "PUT", "/no-such-bucket-here/k", body), ("NoSuchBucket", 404)
    elif case == "wrong-secret":
        req, want = signed_request(node, "PUT", f"/{bucket}/k", body, secret_key="wrong"), ("SignatureDoesNotMatch", 403)
    else:
        req, want = signed_request(node, "PUT", "/Bad_Name/k", body), ("InvalidBucketName", 400)
    with RawConn(node, timeout=30) as c:
        c.send(req)
        r = c.read_response()
        assert (r.error_code(), r.status) == want
        assert r.header("connection") == "close"
        assert c.closed_by_peer(wait=5)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")
    assert_healthy(node, bucket)


def test_huge_head_gets_an_answer(node, bucket):
    """A 200 KiB head: the 400 arrives even though most of it is unread."""
    raw = f"GET /{bucket}/k HTTP/1.1\r\nHost: x\r\nX-Big: {'x' * (200 * 1024)}\r\n\r\n".encode()
    with RawConn(node) as c:
        c.send(raw)
        r = c.read_response()
    assert r.status == 400
    assert r.error_code() == "RequestHeaderSectionTooLarge"
    assert_healthy(node, bucket)
