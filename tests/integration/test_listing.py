"""Listings and buckets: ListObjectsV2 (prefix, delimiter, max-keys,
continuation tokens, start-after), ListObjects v1 (marker), ListBuckets,
HeadBucket, CreateBucket, DeleteBucket."""

import uuid
from urllib.parse import unquote

import pytest
from botocore.exceptions import ClientError

from dpnode import error_code, http_status


def make_keys():
    keys = []
    for d in ("alpha", "beta", "gamma"):
        for s in range(4):
            for i in range(25):
                keys.append(f"{d}/sub{s}/file-{i:03d}.txt")
    for i in range(40):
        keys.append(f"top-{i:03d}")
    keys += ["alpha", "alpha/", "beta/sub0/", "z/deep/a/b/c", "ünï/cödé", "a b/c d"]
    return sorted(set(keys), key=lambda k: k.encode())


KEYS = make_keys()  # 346 keys


@pytest.fixture(scope="module")
def listed(shared_node):
    """A bucket with a few hundred keys on a node shared by this module."""
    s3 = shared_node.client()
    b = "listing-" + uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=b)
    for k in KEYS:
        s3.put_object(Bucket=b, Key=k, Body=k.encode())
    return b


@pytest.fixture
def ls3(shared, listed):
    return shared.client(), listed


def all_v2(s3, bucket, **kw):
    keys, prefixes, pages = [], [], 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, **kw):
        pages += 1
        keys += [o["Key"] for o in page.get("Contents", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return keys, prefixes, pages


def test_list_all_keys_in_order(ls3):
    s3, b = ls3
    r = s3.list_objects_v2(Bucket=b)
    assert r["KeyCount"] == len(KEYS)
    assert r["IsTruncated"] is False
    assert [o["Key"] for o in r["Contents"]] == KEYS
    by_key = {o["Key"]: o for o in r["Contents"]}
    assert by_key["top-007"]["Size"] == len(b"top-007")
    import hashlib

    assert by_key["top-007"]["ETag"] == '"%s"' % hashlib.md5(b"top-007").hexdigest()


@pytest.mark.parametrize("page_size", [1, 7, 50, 100, 345, 346, 1000])
def test_paginate_v2(ls3, page_size):
    s3, b = ls3
    keys, prefixes, pages = all_v2(s3, b, PaginationConfig={"PageSize": page_size})
    assert keys == KEYS
    assert prefixes == []
    assert pages == max(1, -(-len(KEYS) // page_size))


def test_max_keys_and_continuation_token(ls3):
    s3, b = ls3
    r = s3.list_objects_v2(Bucket=b, MaxKeys=10)
    assert r["KeyCount"] == 10 and r["MaxKeys"] == 10
    assert r["IsTruncated"] is True
    assert [o["Key"] for o in r["Contents"]] == KEYS[:10]
    r2 = s3.list_objects_v2(Bucket=b, MaxKeys=10, ContinuationToken=r["NextContinuationToken"])
    assert r2["ContinuationToken"] == r["NextContinuationToken"]
    assert [o["Key"] for o in r2["Contents"]] == KEYS[10:20]


def test_max_keys_zero(ls3):
    s3, b = ls3
    r = s3.list_objects_v2(Bucket=b, MaxKeys=0)
    assert r["KeyCount"] == 0
    assert "Contents" not in r


@pytest.mark.parametrize("prefix", ["alpha/", "alpha", "beta/sub2/", "top-01", "gamma/sub3/file-02", "ü", "nothing-here", "a b/"])
def test_prefix(ls3, prefix):
    s3, b = ls3
    keys, _, _ = all_v2(s3, b, Prefix=prefix, PaginationConfig={"PageSize": 13})
    assert keys == [k for k in KEYS if k.startswith(prefix)]


def expected_delimited(prefix, delim="/", start_after=""):
    contents, cps = [], []
    for k in KEYS:
        if not k.startswith(prefix) or k.encode() <= start_after.encode():
            continue
        rest = k[len(prefix) :]
        i = rest.find(delim)
        if i >= 0:
            cp = prefix + rest[: i + len(delim)]
            if cp not in cps:
                cps.append(cp)
        else:
            contents.append(k)
    return contents, cps


@pytest.mark.parametrize("prefix", ["", "alpha/", "beta/", "gamma/sub1/", "z/", "z/deep/"])
@pytest.mark.parametrize("page_size", [1000, 3])
def test_delimiter_common_prefixes(ls3, prefix, page_size):
    s3, b = ls3
    keys, prefixes, _ = all_v2(s3, b, Prefix=prefix, Delimiter="/", PaginationConfig={"PageSize": page_size})
    want_keys, want_cps = expected_delimited(prefix)
    assert keys == want_keys
    assert prefixes == want_cps


def test_delimiter_top_level_exact(ls3):
    s3, b = ls3
    r = s3.list_objects_v2(Bucket=b, Delimiter="/")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a b/", "alpha/", "beta/", "gamma/", "z/", "ünï/"]
    assert [o["Key"] for o in r["Contents"]] == ["alpha"] + [f"top-{i:03d}" for i in range(40)]
    assert r["KeyCount"] == 6 + 41


def test_delimiter_other_than_slash(ls3):
    s3, b = ls3
    keys, prefixes, _ = all_v2(s3, b, Prefix="top-0", Delimiter="1")
    want_keys, want_cps = expected_delimited("top-0", "1")
    assert keys == want_keys
    assert prefixes == want_cps


@pytest.mark.parametrize("start_after", ["", "alpha/sub3/file-024.txt", "beta", "top-039", "zzz", "a"])
def test_start_after(ls3, start_after):
    s3, b = ls3
    keys, _, _ = all_v2(s3, b, StartAfter=start_after, PaginationConfig={"PageSize": 60})
    assert keys == [k for k in KEYS if k.encode() > start_after.encode()]


def test_v1_marker_pagination(ls3):
    s3, b = ls3
    keys, marker, pages = [], "", 0
    while True:
        r = s3.list_objects(Bucket=b, Marker=marker, MaxKeys=37)
        pages += 1
        page = [o["Key"] for o in r.get("Contents", [])]
        keys += page
        if not r["IsTruncated"]:
            break
        marker = r.get("NextMarker", page[-1])
        assert pages < 100
    assert keys == KEYS
    assert pages == -(-len(KEYS) // 37)


def test_v1_paginator_with_delimiter(ls3):
    s3, b = ls3
    keys, cps = [], []
    for page in s3.get_paginator("list_objects").paginate(Bucket=b, Delimiter="/", Prefix="alpha/", PaginationConfig={"PageSize": 2}):
        keys += [o["Key"] for o in page.get("Contents", [])]
        cps += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    want_keys, want_cps = expected_delimited("alpha/")
    assert (keys, cps) == (want_keys, want_cps)


def test_v1_marker(ls3):
    s3, b = ls3
    r = s3.list_objects(Bucket=b, Marker="top-035")
    assert [o["Key"] for o in r["Contents"]] == [k for k in KEYS if k.encode() > b"top-035"]
    assert r["Marker"] == "top-035"


def test_encoding_type_url(ls3):
    s3, b = ls3
    # botocore asks for EncodingType=url on every listing and decodes the keys
    # itself; when the caller asks explicitly, the encoded keys come through.
    r = s3.list_objects_v2(Bucket=b, Prefix="a b/", EncodingType="url")
    assert [o["Key"] for o in r["Contents"]] == ["a%20b/c%20d"]
    r = s3.list_objects_v2(Bucket=b, Prefix="ü", EncodingType="url", Delimiter="/")
    assert [unquote(p["Prefix"]) for p in r["CommonPrefixes"]] == ["ünï/"]
    assert r["CommonPrefixes"][0]["Prefix"] != "ünï/"
    r = s3.list_objects(Bucket=b, Prefix="a b", EncodingType="url")
    assert [o["Key"] for o in r["Contents"]] == ["a%20b/c%20d"]


def test_list_missing_bucket(ls3):
    s3, _ = ls3
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket="does-not-exist-" + uuid.uuid4().hex[:6])
    assert error_code(e.value) == "NoSuchBucket"
    assert http_status(e.value) == 404


# ------------------------------------------------------------------ buckets


def test_list_buckets_and_head_bucket(s3):
    names = sorted(f"lb-{i}-{uuid.uuid4().hex[:6]}" for i in range(5))
    for n in names:
        s3.create_bucket(Bucket=n)
    r = s3.list_buckets()
    assert sorted(b["Name"] for b in r["Buckets"]) == names
    assert all(b["CreationDate"] is not None for b in r["Buckets"])
    for n in names:
        assert s3.head_bucket(Bucket=n)["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket="missing-bucket-" + uuid.uuid4().hex[:6])
    assert http_status(e.value) == 404


def test_create_bucket_twice(s3):
    s3.create_bucket(Bucket="twice-bucket")
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket="twice-bucket")
    assert error_code(e.value) in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")
    assert http_status(e.value) == 409


def test_create_bucket_with_location_configuration(s3):
    s3.create_bucket(Bucket="with-config", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert s3.head_bucket(Bucket="with-config")["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_delete_bucket_not_empty_then_empty(s3, bucket):
    s3.put_object(Bucket=bucket, Key="a/b", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=bucket)
    assert error_code(e.value) == "BucketNotEmpty"
    assert http_status(e.value) == 409
    # Still there, object intact.
    assert s3.get_object(Bucket=bucket, Key="a/b")["Body"].read() == b"x"
    s3.delete_object(Bucket=bucket, Key="a/b")
    r = s3.delete_bucket(Bucket=bucket)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket=bucket)
    assert http_status(e.value) == 404
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert error_code(e.value) == "NoSuchBucket"
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=bucket)
    assert error_code(e.value) == "NoSuchBucket"
    # The name can be used again.
    s3.create_bucket(Bucket=bucket)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_delete_bucket_with_pending_multipart_upload(node, s3, bucket):
    """A bucket whose only content is an unfinished multipart upload can be
    deleted; the upload goes with it and nothing can be added to the
    deleted bucket through it."""
    from dpnode import wait_until

    before = node.storage_keys()
    up = s3.create_multipart_upload(Bucket=bucket, Key="pending")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="pending", UploadId=up, PartNumber=1, Body=b"x" * 3_000_000)["ETag"]
    s3.delete_bucket(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="pending", UploadId=up, PartNumber=2, Body=b"late part")
    assert error_code(e.value) in ("NoSuchBucket", "NoSuchUpload")
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="pending", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert error_code(e.value) in ("NoSuchBucket", "NoSuchUpload")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="pending")
    assert http_status(e.value) == 404
    # A new bucket of the same name starts empty, without the old upload.
    s3.create_bucket(Bucket=bucket)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="pending", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert error_code(e.value) == "NoSuchUpload"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="pending")
    # The part's blocks are reclaimed (the bucket record is back, one tombstone more at most).
    assert wait_until(lambda: node.storage_keys() <= before + 1, timeout=10), (node.storage_keys(), before)


def test_get_bucket_location(s3, bucket):
    r = s3.get_bucket_location(Bucket=bucket)
    assert r["LocationConstraint"] in (None, "us-east-1")
