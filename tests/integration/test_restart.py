"""Restarts on the same data directory: after SIGTERM (clean shutdown) and
after SIGKILL (acknowledged writes must survive a crash of the process),
including interrupted uploads that are cleaned up at the next start."""

import time

import pytest
from botocore.exceptions import ClientError

from dpnode import BLOCK, MiB, RawConn, build_request, data, http_status, md5_hex, sign_headers, wait_until

SIZES = [0, 1, 4096, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 5]


def populate(s3, bucket):
    """Writes a mix of objects; returns {key: (bytes, metadata)}."""
    want = {}
    for i, size in enumerate(SIZES):
        k = f"obj/{size}"
        body = data(size, seed=100 + i)
        s3.put_object(Bucket=bucket, Key=k, Body=body, Metadata={"i": str(i)}, ContentType="application/x-test")
        want[k] = (body, {"i": str(i)})
    # Overwritten: only the second version may come back.
    s3.put_object(Bucket=bucket, Key="over", Body=data(2 * BLOCK, seed=1))
    s3.put_object(Bucket=bucket, Key="over", Body=b"second version")
    want["over"] = (b"second version", {})
    # Deleted: must stay deleted.
    s3.put_object(Bucket=bucket, Key="deleted", Body=data(BLOCK + 7, seed=2))
    s3.delete_object(Bucket=bucket, Key="deleted")
    # Multipart.
    parts = [data(5 * MiB, seed=3), data(123_456, seed=4)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="multi")["UploadId"]
    done = []
    for n, p in enumerate(parts, 1):
        done.append({"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key="multi", UploadId=up, PartNumber=n, Body=p)["ETag"]})
    s3.complete_multipart_upload(Bucket=bucket, Key="multi", UploadId=up, MultipartUpload={"Parts": done})
    want["multi"] = (b"".join(parts), {})
    return want


def verify(s3, bucket, want):
    listed = {o["Key"]: o for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert sorted(listed) == sorted(want)
    for k, (body, meta) in want.items():
        g = s3.get_object(Bucket=bucket, Key=k)
        got = g["Body"].read()
        assert len(got) == len(body), k
        assert got == body, k
        assert g["Metadata"] == meta, k
        assert listed[k]["Size"] == len(body)
        if k != "multi":
            assert g["ETag"] == f'"{md5_hex(body)}"'
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="deleted")
    assert http_status(e.value) == 404


def test_sigterm_restart_keeps_everything(node, bucket):
    s3 = node.client()
    want = populate(s3, bucket)
    keys_before = node.storage_keys()
    node.restart()
    s3 = node.client()
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [bucket]
    verify(s3, bucket, want)
    # Reclamation of replaced blocks may finish only now; nothing is added.
    assert node.storage_keys() <= keys_before
    # And it keeps working: write, restart again, read.
    s3.put_object(Bucket=bucket, Key="after-restart", Body=b"new")
    want["after-restart"] = (b"new", {})
    node.restart()
    verify(node.client(), bucket, want)


def test_sigkill_restart_keeps_acknowledged_writes(node, bucket):
    s3 = node.client()
    want = populate(s3, bucket)
    # The last acknowledged write right before the kill.
    last = data(2 * BLOCK + 1, seed=77)
    s3.put_object(Bucket=bucket, Key="last-before-kill", Body=last)
    want["last-before-kill"] = (last, {})
    node.kill()
    assert node.proc.returncode == -9
    node.start()
    verify(node.client(), bucket, want)


def test_sigkill_right_after_many_small_puts(node, bucket):
    s3 = node.client()
    for i in range(200):
        s3.put_object(Bucket=bucket, Key=f"small/{i:03d}", Body=f"value {i}".encode())
    node.kill()
    node.start()
    s3 = node.client()
    keys = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket) for o in p.get("Contents", [])]
    assert keys == [f"small/{i:03d}" for i in range(200)]
    for i in (0, 99, 199):
        assert s3.get_object(Bucket=bucket, Key=f"small/{i:03d}")["Body"].read() == f"value {i}".encode()


def test_multipart_upload_survives_sigkill(node, bucket):
    s3 = node.client()
    p1, p2 = data(5 * MiB + 1, seed=1), data(999, seed=2)
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", Metadata={"m": "1"})["UploadId"]
    e1 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=p1)["ETag"]
    node.kill()
    node.start()
    s3 = node.client()
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [up]
    assert [(p["PartNumber"], p["Size"]) for p in s3.list_parts(Bucket=bucket, Key="mp", UploadId=up)["Parts"]] == [(1, len(p1))]
    e2 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=2, Body=p2)["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    g = s3.get_object(Bucket=bucket, Key="mp")
    assert g["Body"].read() == p1 + p2
    assert g["Metadata"] == {"m": "1"}


def test_sigkill_during_upload_then_restart_reclaims_blocks(node, bucket):
    """A PUT cut off by a crash leaves blocks behind an intent; the next start
    reclaims them and the object never appears."""
    s3 = node.client()
    s3.put_object(Bucket=bucket, Key="keep", Body=b"kept")
    before = node.storage_keys()
    size = 20 * MiB
    body = data(size, seed=5)
    hs = sign_headers(node, "PUT", f"/{bucket}/torn", headers={"Content-Length": str(size)}, body=body)
    c = RawConn(node, timeout=30)
    c.send(build_request("PUT", f"/{bucket}/torn", hs, body[: 9 * MiB]))
    assert wait_until(lambda: node.storage_keys() >= before + 5, timeout=10)
    node.kill()
    c.close()
    node.start()
    s3 = node.client()
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="torn")
    assert http_status(e.value) == 404
    assert wait_until(lambda: node.storage_keys() == before, timeout=10), (node.storage_keys(), before)
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"kept"


def test_sigterm_during_upload(node, bucket):
    """SIGTERM while a client is in the middle of a PUT: the node stops
    cleanly (exit 0) and the half-sent object does not exist afterwards."""
    s3 = node.client()
    size = 10 * MiB
    body = data(size, seed=6)
    hs = sign_headers(node, "PUT", f"/{bucket}/half", headers={"Content-Length": str(size)}, body=body)
    c = RawConn(node, timeout=30)
    c.send(build_request("PUT", f"/{bucket}/half", hs, body[: 4 * MiB]))
    time.sleep(0.3)
    t0 = time.monotonic()
    code = node.stop()
    assert code == 0, node.log_tail()
    assert time.monotonic() - t0 < 15
    c.close()
    node.start()
    with pytest.raises(ClientError):
        node.client().head_object(Bucket=bucket, Key="half")


@pytest.mark.parametrize("round_", range(3))
def test_sigterm_right_after_overwrites_exits_cleanly(node, bucket, round_):
    """Overwrites and deletes start background block reclamation; a SIGTERM
    right after them must still shut down cleanly (exit 0, no panic)."""
    s3 = node.client()
    for i in range(4):
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=data(3 * BLOCK, seed=i))
    for i in range(4):
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=data(3 * BLOCK, seed=10 + i))
    s3.delete_object(Bucket=bucket, Key="k0")
    code = node.stop()
    log = node.log_text()
    assert "panicked" not in log, node.log_tail()
    assert code == 0, node.log_tail()
    node.start()
    s3 = node.client()
    for i in range(1, 4):
        assert s3.get_object(Bucket=bucket, Key=f"k{i}")["Body"].read() == data(3 * BLOCK, seed=10 + i)
    # Whatever reclamation was cut short is finished at start: 3 objects of
    # 3 blocks, their manifests, one tombstone, and the bucket.
    assert wait_until(lambda: node.storage_keys() <= 3 * 4 + 1 + 1, timeout=10), node.storage_keys()


def test_restart_with_different_ports(node, bucket):
    """The data does not depend on the listen addresses."""
    s3 = node.client()
    s3.put_object(Bucket=bucket, Key="k", Body=b"portable")
    old = node.s3_port
    node.restart()  # start() picks new free ports
    assert node.s3_port != old
    assert node.client().get_object(Bucket=bucket, Key="k")["Body"].read() == b"portable"
