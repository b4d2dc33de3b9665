"""Range GETs: bytes=a-b, bytes=a-, bytes=-n, across block boundaries,
inline objects, and unsatisfiable ranges (416 InvalidRange). Ranges across
multipart part boundaries are in test_multipart.py."""

import pytest
from botocore.exceptions import ClientError

from dpnode import BLOCK, RawConn, data, error_code, http_status, signed_request

SIZE = 3 * BLOCK + 1000


@pytest.fixture(scope="module")
def _ranged(shared_node):
    """One object of 3 blocks + 1000 bytes on a node shared by this module
    (these tests only read it)."""
    c = shared_node.client()
    c.create_bucket(Bucket="ranges")
    body = data(SIZE, seed=3)
    c.put_object(Bucket="ranges", Key="r", Body=body)
    return "ranges", body


@pytest.fixture
def obj(shared, _ranged):
    return _ranged


@pytest.fixture
def rs3(shared):
    return shared.client()


CASES = [
    (0, 0),
    (0, 99),
    (10, 10),
    (BLOCK - 1, BLOCK),  # the last byte of block 0 and the first of block 1
    (BLOCK - 10, BLOCK + 10),
    (BLOCK, 2 * BLOCK - 1),  # exactly block 1
    (BLOCK - 1, 2 * BLOCK),  # three blocks touched
    (2 * BLOCK + 5, SIZE - 1),  # into the short last block
    (5, SIZE - 1),
    (0, SIZE - 1),
]


@pytest.mark.parametrize("a,b", CASES, ids=[f"{a}-{b}" for a, b in CASES])
def test_closed_range(rs3, obj, a, b):
    bucket, body = obj
    g = rs3.get_object(Bucket=bucket, Key="r", Range=f"bytes={a}-{b}")
    assert g["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert g["ContentRange"] == f"bytes {a}-{b}/{SIZE}"
    assert g["ContentLength"] == b - a + 1
    assert g["Body"].read() == body[a : b + 1]


def test_end_beyond_object_is_clamped(rs3, obj):
    bucket, body = obj
    g = rs3.get_object(Bucket=bucket, Key="r", Range=f"bytes={SIZE - 10}-{SIZE + 1000}")
    assert g["ContentRange"] == f"bytes {SIZE - 10}-{SIZE - 1}/{SIZE}"
    assert g["Body"].read() == body[-10:]


@pytest.mark.parametrize("a", [0, 1, BLOCK - 1, BLOCK, 2 * BLOCK + 1, SIZE - 1])
def test_open_ended_range(rs3, obj, a):
    bucket, body = obj
    g = rs3.get_object(Bucket=bucket, Key="r", Range=f"bytes={a}-")
    assert g["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert g["ContentRange"] == f"bytes {a}-{SIZE - 1}/{SIZE}"
    assert g["Body"].read() == body[a:]


@pytest.mark.parametrize("n", [1, 999, 1000, 1001, BLOCK + 1000, SIZE, SIZE + 50])
def test_suffix_range(rs3, obj, n):
    bucket, body = obj
    g = rs3.get_object(Bucket=bucket, Key="r", Range=f"bytes=-{n}")
    assert g["ResponseMetadata"]["HTTPStatusCode"] == 206
    start = max(0, SIZE - n)
    assert g["ContentRange"] == f"bytes {start}-{SIZE - 1}/{SIZE}"
    assert g["Body"].read() == body[start:]


def test_range_on_inline_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="small", Body=b"0123456789")
    assert s3.get_object(Bucket=bucket, Key="small", Range="bytes=2-4")["Body"].read() == b"234"
    assert s3.get_object(Bucket=bucket, Key="small", Range="bytes=7-")["Body"].read() == b"789"
    assert s3.get_object(Bucket=bucket, Key="small", Range="bytes=-3")["Body"].read() == b"789"
    assert s3.get_object(Bucket=bucket, Key="small", Range="bytes=0-100")["Body"].read() == b"0123456789"


@pytest.mark.parametrize("rng", [f"bytes={SIZE}-", f"bytes={SIZE}-{SIZE + 10}", f"bytes={SIZE + 100}-{SIZE + 200}", "bytes=-0"])
def test_unsatisfiable_range_is_416(rs3, obj, rng):
    bucket, _ = obj
    with pytest.raises(ClientError) as e:
        rs3.get_object(Bucket=bucket, Key="r", Range=rng)
    assert http_status(e.value) == 416
    assert error_code(e.value) == "InvalidRange"


def test_range_on_empty_object_is_416(s3, bucket):
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="empty", Range="bytes=0-0")
    assert http_status(e.value) == 416
    assert error_code(e.value) == "InvalidRange"


def test_invalid_range_syntax_serves_whole_object(rs3, obj):
    bucket, body = obj
    for rng in ("bytes=10-5", "items=0-1", "bytes=0-1,5-6", "bytes=abc"):
        g = rs3.get_object(Bucket=bucket, Key="r", Range=rng)
        assert g["ResponseMetadata"]["HTTPStatusCode"] == 200, rng
        assert g["ContentLength"] == SIZE
        assert g["Body"].read() == body


def test_416_keeps_connection_usable(shared, obj):
    """A raw 416 response has an XML body and the connection still serves
    the next request."""
    bucket, body = obj
    node = shared
    with RawConn(node) as c:
        c.send(signed_request(node, "GET", f"/{bucket}/r", headers={"Range": f"bytes={SIZE}-"}))
        r = c.read_response()
        assert r.status == 416
        assert r.error_code() == "InvalidRange"
        c.send(signed_request(node, "GET", f"/{bucket}/r", headers={"Range": "bytes=0-9"}))
        r = c.read_response()
        assert r.status == 206
        assert r.body == body[:10]
