"""HTTP connection behaviour: keep-alive across HEAD / errors / bodies,
Connection: close, idle timeout, and the anonymous-access settings."""

import socket
import time
import urllib.error
import urllib.request

import pytest
from botocore import UNSIGNED
from botocore.exceptions import ClientError

from dpnode import BLOCK, RawConn, build_request, data, signed_request


def test_keep_alive_sequence(node, s3, bucket):
    """One connection: PUT, HEAD (no body follows), GET, error GET, HEAD of a
    missing key, a listing, DELETE: every response parses in order."""
    body = data(BLOCK + 10, seed=1)
    with RawConn(node) as c:
        c.send(signed_request(node, "PUT", f"/{bucket}/ka", body))
        assert c.read_response().status == 200
        c.send(signed_request(node, "HEAD", f"/{bucket}/ka"))
        h = c.read_response(head_only=True)
        assert h.status == 200
        assert int(h.header("content-length")) == len(body)
        c.send(signed_request(node, "GET", f"/{bucket}/ka"))
        g = c.read_response()
        assert g.body == body
        c.send(signed_request(node, "GET", f"/{bucket}/missing"))
        e = c.read_response()
        assert (e.status, e.error_code()) == (404, "NoSuchKey")
        assert e.header("connection") != "close"
        c.send(signed_request(node, "HEAD", f"/{bucket}/missing"))
        h = c.read_response(head_only=True)
        assert h.status == 404
        c.send(signed_request(node, "GET", f"/{bucket}", query="list-type=2"))
        ls = c.read_response()
        assert ls.status == 200 and b"<Key>ka</Key>" in ls.body
        c.send(signed_request(node, "DELETE", f"/{bucket}/ka"))
        assert c.read_response().status == 204
        c.send(signed_request(node, "GET", f"/{bucket}/ka"))
        assert c.read_response().status == 404
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="ka")


def test_connection_close_is_honoured(node, bucket):
    with RawConn(node) as c:
        c.send(signed_request(node, "GET", "/", headers={"Connection": "close"}))
        r = c.read_response()
        assert r.status == 200
        assert c.closed_by_peer(wait=5)


def test_http_1_0_request(node, s3, bucket):
    s3.put_object(Bucket=bucket, Key="old", Body=b"http/1.0")
    req = signed_request(node, "GET", f"/{bucket}/old").replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)
    with RawConn(node) as c:
        c.send(req)
        r = c.read_response()
        assert (r.status, r.body) == (200, b"http/1.0")
        assert c.closed_by_peer(wait=5)


def test_idle_connection_is_closed(start_node):
    node = start_node("idle", sets=["s3.idle_timeout_ms=500"])
    s3 = node.client()
    s3.create_bucket(Bucket="idle")
    # An idle keep-alive connection and a stalled half-sent head are both closed.
    idle = RawConn(node)
    idle.send(signed_request(node, "GET", "/"))
    assert idle.read_response().status == 200
    stalled = RawConn(node)
    stalled.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
    t0 = time.monotonic()
    assert idle.closed_by_peer(wait=5)
    assert stalled.closed_by_peer(wait=5)
    assert time.monotonic() - t0 < 4
    idle.close()
    stalled.close()
    # A body that stalls half way: closed, nothing stored.
    body = data(2 * BLOCK, seed=1)
    c = RawConn(node)
    c.send(signed_request(node, "PUT", "/idle/stall", body)[: -BLOCK])
    try:
        r = c.read_response()
        assert r.status in (400, 408)
    except ConnectionError:
        pass
    assert c.closed_by_peer(wait=5)
    c.close()
    with pytest.raises(ClientError):
        s3.head_object(Bucket="idle", Key="stall")
    s3.put_object(Bucket="idle", Key="after", Body=b"ok")
    assert s3.get_object(Bucket="idle", Key="after")["Body"].read() == b"ok"


def test_anonymous_read(start_node):
    node = start_node("anonread", sets=['s3.anonymous="read"'])
    s3 = node.client()
    s3.create_bucket(Bucket="public")
    s3.put_object(Bucket="public", Key="k", Body=b"public data")
    anon = node.client(signature_version=UNSIGNED)
    assert anon.get_object(Bucket="public", Key="k")["Body"].read() == b"public data"
    assert [o["Key"] for o in anon.list_objects_v2(Bucket="public")["Contents"]] == ["k"]
    with urllib.request.urlopen(f"{node.endpoint}/public/k", timeout=10) as r:
        assert r.read() == b"public data"
    for call in (
        lambda: anon.put_object(Bucket="public", Key="w", Body=b"x"),
        lambda: anon.delete_object(Bucket="public", Key="k"),
        lambda: anon.create_bucket(Bucket="anon-bucket"),
        lambda: anon.create_multipart_upload(Bucket="public", Key="m"),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="public")["Contents"]] == ["k"]
    # Signed requests with bad credentials are still refused.
    with pytest.raises(ClientError) as e:
        node.client(secret_key="wrong").get_object(Bucket="public", Key="k")
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_anonymous_all(start_node):
    node = start_node("anonall", sets=['s3.anonymous="all"'])
    anon = node.client(signature_version=UNSIGNED)
    anon.create_bucket(Bucket="open")
    anon.put_object(Bucket="open", Key="k", Body=data(BLOCK + 1, seed=2))
    assert anon.get_object(Bucket="open", Key="k")["Body"].read() == data(BLOCK + 1, seed=2)
    anon.delete_object(Bucket="open", Key="k")
    assert anon.list_objects_v2(Bucket="open")["KeyCount"] == 0


def test_max_connections_per_core(start_node):
    """Connections over the per-core limit are refused; the node recovers
    when they go away."""
    node = start_node("maxconn", sets=["s3.max_connections_per_core=4"])
    s3 = node.client()
    s3.create_bucket(Bucket="maxconn")
    held = []
    for _ in range(24):
        try:
            s = socket.create_connection(node.s3_addr, timeout=2)
            held.append(s)
        except OSError:
            pass
    time.sleep(0.3)
    refused = 0
    for s in held:
        s.settimeout(0.5)
        try:
            if s.recv(1) == b"":
                refused += 1
        except (socket.timeout, TimeoutError):
            pass
        except ConnectionResetError:
            refused += 1
    assert refused >= 24 - 2 * 4, refused
    for s in held:
        s.close()
    time.sleep(0.3)
    s3.put_object(Bucket="maxconn", Key="k", Body=b"after the storm")
    assert s3.get_object(Bucket="maxconn", Key="k")["Body"].read() == b"after the storm"
