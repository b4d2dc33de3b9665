"""DeleteObject, DeleteObjects (verbose and quiet), deletes of missing keys,
and that deleted and overwritten content is really gone."""

import pytest
from botocore.exceptions import ClientError

from dpnode import BLOCK, data, error_code, http_status, wait_until


def test_delete_object_then_404(s3, bucket):
    s3.put_object(Bucket=bucket, Key="gone", Body=b"soon gone")
    r = s3.delete_object(Bucket=bucket, Key="gone")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="gone")
    assert error_code(e.value) == "NoSuchKey"
    assert http_status(e.value) == 404
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="gone")
    assert http_status(e.value) == 404
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_delete_missing_key_is_204(s3, bucket):
    r = s3.delete_object(Bucket=bucket, Key="never-existed")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    # Twice in a row too.
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert s3.delete_object(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.delete_object(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_delete_in_missing_bucket(s3):
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket="no-such-bucket-del", Key="k")
    assert error_code(e.value) == "NoSuchBucket"


def test_delete_large_object_reclaims_blocks(node, s3, bucket):
    before = node.storage_keys()
    s3.put_object(Bucket=bucket, Key="big", Body=data(5 * BLOCK + 3, seed=1))
    assert node.storage_keys() >= before + 6  # six blocks and a manifest
    s3.delete_object(Bucket=bucket, Key="big")
    # What stays is at most the tombstone of the manifest.
    assert wait_until(lambda: node.storage_keys() <= before + 1, timeout=10), (node.storage_keys(), before)
    with pytest.raises(ClientError):
        s3.get_object(Bucket=bucket, Key="big")


def test_put_after_delete(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"one")
    s3.delete_object(Bucket=bucket, Key="k")
    s3.put_object(Bucket=bucket, Key="k", Body=b"two")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"


def test_delete_objects_verbose(s3, bucket):
    keys = [f"multi/{i}" for i in range(10)]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    s3.put_object(Bucket=bucket, Key="keep", Body=b"keep")
    victims = keys[:7] + ["multi/does-not-exist"]
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in victims]})
    assert sorted(d["Key"] for d in r["Deleted"]) == sorted(victims)
    assert r.get("Errors", []) == []
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert left == ["keep"] + keys[7:]
    for k in keys[:7]:
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket=bucket, Key=k)
        assert error_code(e.value) == "NoSuchKey"
    for k in keys[7:]:
        assert s3.get_object(Bucket=bucket, Key=k)["Body"].read() == k.encode()


def test_delete_objects_quiet(s3, bucket):
    keys = [f"q/{i:02d}" for i in range(12)]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x" * 10)
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
    assert r.get("Deleted", []) == []
    assert r.get("Errors", []) == []
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_delete_objects_with_special_keys(s3, bucket):
    keys = ["a&b", "<tag>", "sp ace", "ü/ß", "quote\"s"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    assert sorted(d["Key"] for d in r["Deleted"]) == sorted(keys)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_delete_objects_missing_bucket(s3):
    with pytest.raises(ClientError) as e:
        s3.delete_objects(Bucket="no-such-bucket-dobj", Delete={"Objects": [{"Key": "a"}]})
    assert error_code(e.value) == "NoSuchBucket"


def test_overwrite_old_content_gone(node, s3, bucket):
    old = data(2 * BLOCK + 100, seed=1)
    new = b"brand new, short"
    s3.put_object(Bucket=bucket, Key="v", Body=old)
    etag_old = s3.head_object(Bucket=bucket, Key="v")["ETag"]
    s3.put_object(Bucket=bucket, Key="v", Body=new)
    g = s3.get_object(Bucket=bucket, Key="v")
    assert g["Body"].read() == new
    assert g["ETag"] != etag_old
    # A Range read cannot reach into the old, longer version.
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="v", Range=f"bytes={len(new) + 10}-{len(new) + 20}")
    assert http_status(e.value) == 416
    # Conditional GET on the old ETag fails.
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="v", IfMatch=etag_old)
    assert http_status(e.value) == 412


def test_delete_objects_over_1000_keys_is_malformed(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k1", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": f"k{i}"} for i in range(1001)]})
    assert error_code(e.value) == "MalformedXML"
    assert s3.get_object(Bucket=bucket, Key="k1")["Body"].read() == b"x"


def test_listing_skips_deleted_keys(s3, bucket):
    for i in range(40):
        s3.put_object(Bucket=bucket, Key=f"k{i:02d}", Body=b"x")
    for i in range(0, 40, 2):
        s3.delete_object(Bucket=bucket, Key=f"k{i:02d}")
    for i in range(30):  # a run of deleted keys longer than a page
        s3.delete_object(Bucket=bucket, Key=f"k{i:02d}")
    want = [f"k{i:02d}" for i in range(31, 40, 2)]
    keys = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 2}) for o in p.get("Contents", [])]
    assert keys == want
    r = s3.list_objects_v2(Bucket=bucket, MaxKeys=3)
    assert [o["Key"] for o in r["Contents"]] == want[:3]
    assert r["IsTruncated"] is True
