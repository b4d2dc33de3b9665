"""PutObject / GetObject / HeadObject with boto3: sizes around the block
size, ETags, user metadata, content types, overwrites."""

import pytest
from botocore.exceptions import ClientError

from dpnode import BLOCK, MiB, data, error_code, http_status, md5_hex

SIZES = [0, 1, 4095, 4096, 4097, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 17]


@pytest.mark.parametrize("size", SIZES, ids=[f"{s}B" for s in SIZES])
def test_put_get_head_roundtrip(s3, bucket, size):
    body = data(size, seed=size)
    r = s3.put_object(Bucket=bucket, Key=f"obj-{size}", Body=body)
    assert r["ETag"] == f'"{md5_hex(body)}"'

    g = s3.get_object(Bucket=bucket, Key=f"obj-{size}")
    got = g["Body"].read()
    assert len(got) == size
    assert got == body
    assert g["ContentLength"] == size
    assert g["ETag"] == f'"{md5_hex(body)}"'

    h = s3.head_object(Bucket=bucket, Key=f"obj-{size}")
    assert h["ContentLength"] == size
    assert h["ETag"] == f'"{md5_hex(body)}"'
    assert h["ResponseMetadata"]["HTTPHeaders"]["accept-ranges"] == "bytes"
    assert h["LastModified"] is not None


@pytest.mark.slow
def test_100_mib_object(s3, bucket):
    body = data(100 * MiB, seed=100)
    r = s3.put_object(Bucket=bucket, Key="big/100MiB.bin", Body=body)
    assert r["ETag"] == f'"{md5_hex(body)}"'
    h = s3.head_object(Bucket=bucket, Key="big/100MiB.bin")
    assert h["ContentLength"] == 100 * MiB
    g = s3.get_object(Bucket=bucket, Key="big/100MiB.bin")
    got = g["Body"].read()
    assert len(got) == len(body)
    assert md5_hex(got) == md5_hex(body)
    assert got == body


def test_user_metadata_and_content_type(s3, bucket):
    meta = {"colour": "blue", "project-name": "dataplane", "empty": "", "with-space": "a b  c"}
    s3.put_object(Bucket=bucket, Key="meta.json", Body=b'{"a":1}', Metadata=meta, ContentType="application/json")
    h = s3.head_object(Bucket=bucket, Key="meta.json")
    assert h["ContentType"] == "application/json"
    assert h["Metadata"] == meta
    g = s3.get_object(Bucket=bucket, Key="meta.json")
    assert g["ContentType"] == "application/json"
    assert g["Metadata"] == meta
    assert g["Body"].read() == b'{"a":1}'


def test_metadata_on_block_sized_object(s3, bucket):
    body = data(BLOCK + 1, seed=9)
    s3.put_object(Bucket=bucket, Key="m", Body=body, Metadata={"k": "v"}, ContentType="image/png")
    g = s3.get_object(Bucket=bucket, Key="m")
    assert g["Metadata"] == {"k": "v"}
    assert g["ContentType"] == "image/png"
    assert g["Body"].read() == body


def test_content_type_with_parameters_and_metadata_case(s3, bucket):
    s3.put_object(Bucket=bucket, Key="ct", Body=b"x", ContentType="text/plain; charset=utf-8", Metadata={"MiXeD-Case": "Value"})
    h = s3.head_object(Bucket=bucket, Key="ct")
    assert h["ContentType"] == "text/plain; charset=utf-8"
    # Header names are case-insensitive; S3 returns metadata names in lower case.
    assert h["Metadata"] == {"mixed-case": "Value"}


def test_default_content_type(s3, bucket):
    s3.put_object(Bucket=bucket, Key="noct", Body=b"x")
    h = s3.head_object(Bucket=bucket, Key="noct")
    # boto3 sends no Content-Type for bytes bodies; S3's default is binary/octet-stream.
    assert h["ContentType"] in ("binary/octet-stream", "application/octet-stream")


def test_metadata_too_large_is_refused(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="toomuch", Body=b"x", Metadata={"big": "v" * 3000})
    assert error_code(e.value) == "MetadataTooLarge"
    assert http_status(e.value) == 400
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="toomuch")
    assert http_status(e.value) == 404


def test_get_missing_key_and_bucket(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="nope")
    assert error_code(e.value) == "NoSuchKey"
    assert http_status(e.value) == 404
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="nope")
    assert http_status(e.value) == 404
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="no-such-bucket-xyz", Key="k")
    assert error_code(e.value) == "NoSuchBucket"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="no-such-bucket-xyz", Key="k", Body=b"data")
    assert error_code(e.value) == "NoSuchBucket"


@pytest.mark.parametrize("sizes", [(10, 20), (BLOCK * 2 + 5, 100), (100, BLOCK * 2 + 5), (BLOCK + 1, BLOCK * 3)], ids=["inline-inline", "blocks-inline", "inline-blocks", "blocks-blocks"])
def test_overwrite_replaces_content(node, s3, bucket, sizes):
    a, b = data(sizes[0], seed=1), data(sizes[1], seed=2)
    s3.put_object(Bucket=bucket, Key="k", Body=a, Metadata={"v": "1"}, ContentType="text/a")
    s3.put_object(Bucket=bucket, Key="k", Body=b, Metadata={"v": "2"})
    g = s3.get_object(Bucket=bucket, Key="k")
    assert g["Body"].read() == b
    assert g["ETag"] == f'"{md5_hex(b)}"'
    assert g["Metadata"] == {"v": "2"}
    assert g["ContentType"] != "text/a"
    lm1 = g["LastModified"]
    # Only one object is listed, with the new size.
    objs = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"]) for o in objs] == [("k", len(b))]
    assert lm1 is not None


def test_overwrite_reclaims_old_blocks(node, s3, bucket):
    """The blocks of a replaced version are expunged: the node's key count
    goes back to what one version of the object needs."""
    s3.put_object(Bucket=bucket, Key="k", Body=data(4 * BLOCK, seed=1))
    one_version = node.storage_keys()
    for i in range(3):
        s3.put_object(Bucket=bucket, Key="k", Body=data(4 * BLOCK, seed=10 + i))
    from dpnode import wait_until
    assert wait_until(lambda: node.storage_keys() <= one_version, timeout=10), (node.storage_keys(), one_version)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data(4 * BLOCK, seed=12)


def test_unicode_and_special_keys(s3, bucket):
    keys = ["dir/sub dir/file name.txt", "ümlaut/ßtraße€.bin", "a+b=c&d?e#f", "%2F-literal-percent", "tab\there", "~tilde!*'()", "x" * 1024]
    for i, k in enumerate(keys):
        s3.put_object(Bucket=bucket, Key=k, Body=f"v{i}".encode())
    for i, k in enumerate(keys):
        assert s3.get_object(Bucket=bucket, Key=k)["Body"].read() == f"v{i}".encode()
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == sorted(keys, key=lambda k: k.encode())


def test_conditional_get(s3, bucket):
    body = b"conditional"
    etag = s3.put_object(Bucket=bucket, Key="c", Body=body)["ETag"]
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == body
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"0123"')
    assert http_status(e.value) == 412
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert http_status(e.value) == 304


def test_concurrent_overwrites_of_one_key(node, s3, bucket):
    """Last writer wins: the object is one of the versions, whole, never a
    mix; the other versions' blocks are reclaimed."""
    import threading

    bodies = [data(3 * BLOCK + i, seed=50 + i) for i in range(5)]
    errors = []

    def put(b):
        try:
            node.client().put_object(Bucket=bucket, Key="contended", Body=b)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=put, args=(b,)) for b in bodies]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert errors == []
    g = s3.get_object(Bucket=bucket, Key="contended")
    got = g["Body"].read()
    assert got in bodies
    assert g["ETag"] == f'"{md5_hex(got)}"'
    from dpnode import wait_until

    # A bucket, one manifest and four blocks remain.
    assert wait_until(lambda: node.storage_keys() <= 1 + 1 + 4, timeout=10), node.storage_keys()


@pytest.mark.parametrize("then", ["overwrite", "delete"])
def test_get_in_progress_survives_overwrite(start_node, then):
    """A GET that has started streaming returns the version it started
    with, whole, even when the object is replaced or deleted meanwhile
    (the old blocks stay for s3.reclaim_leeway_ms)."""
    import socket
    import time

    from dpnode import RawConn, signed_request

    node = start_node("it", sets=("s3.reclaim_leeway_ms=30000",))
    s3 = node.client()
    bucket = "inprogress"
    s3.create_bucket(Bucket=bucket)

    old = data(30 * MiB, seed=1)
    s3.put_object(Bucket=bucket, Key="k", Body=old)
    c = RawConn(node, timeout=30)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    c.send(signed_request(node, "GET", f"/{bucket}/k"))
    # Read only the head and a little of the body; the rest waits in the server.
    r = c.read_response(head_only=True)
    assert r.status == 200 and int(r.header("content-length")) == len(old)
    if then == "overwrite":
        s3.put_object(Bucket=bucket, Key="k", Body=data(30 * MiB, seed=2))
    else:
        s3.delete_object(Bucket=bucket, Key="k")
    time.sleep(1.0)  # let the replaced version's reclamation run
    got = bytearray(c.buf)
    c.sock.settimeout(15)
    while len(got) < len(old):
        chunk = c.sock.recv(1 << 20)
        if not chunk:
            break
        got += chunk
    c.close()
    # Whatever arrived is the old version's bytes (never an error document
    # spliced into the body)...
    n, total = len(got), len(old)
    is_prefix = bytes(got) == old[:n]
    assert is_prefix, "the body contains bytes that are not the object's"
    # ...and all of it arrived.
    assert n == total, f"GET broke off after {n} of {total} bytes"


def test_copy_object_with_a_version_id_is_refused_and_copies_nothing(s3, bucket):
    """This node keeps one version per key: a copy naming a source version
    answers NotImplemented and writes nothing (plain copies are in
    test_s3_copy_tagging.py)."""
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src", "VersionId": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"})
    assert error_code(e.value) == "NotImplemented"
    assert http_status(e.value) == 501
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="dst")


def test_dotted_bucket_name(s3):
    s3.create_bucket(Bucket="dotted.bucket.name")
    s3.put_object(Bucket="dotted.bucket.name", Key="k", Body=b"dots")
    assert s3.get_object(Bucket="dotted.bucket.name", Key="k")["Body"].read() == b"dots"
