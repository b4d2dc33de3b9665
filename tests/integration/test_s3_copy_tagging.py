"""CopyObject, UploadPartCopy, object tagging, conditional writes, stored
standard headers, GET ?partNumber, GetObjectAttributes, SigV2 and
virtual-hosted–style requests, with boto3, the aws CLI v1, urllib, curl and
raw sockets against real nodes."""

import base64
import datetime
import gzip
import hashlib
import re
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from dpnode import (
    ACCESS_KEY,
    BLOCK,
    REGION,
    SECRET_KEY,
    MiB,
    RawConn,
    aws_cli,
    build_request,
    crc32_b64,
    data,
    error_code,
    http_status,
    md5_hex,
    s3_client,
    wait_until,
)

# Longer than the test nodes' reclaim leeway (s3.reclaim_leeway_ms=1500):
# blocks of replaced versions are gone after this.
RECLAIM_WAIT = 3.0


def multipart_etag(parts) -> str:
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


def put_multipart(s3, bucket, key, parts, **create_kw):
    """Uploads `parts` as one multipart object; returns complete's answer."""
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, **create_kw)["UploadId"]
    done = []
    for i, p in enumerate(parts, start=1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=i, Body=p)
        done.append({"PartNumber": i, "ETag": r["ETag"]})
    return s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up, MultipartUpload={"Parts": done})


def hdrs(r) -> dict:
    return r["ResponseMetadata"]["HTTPHeaders"]


def tags_of(s3, bucket, key) -> dict:
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}


def new_bucket(s3, prefix="b") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def urlopen(url, method="GET", body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def code_of(body: bytes) -> str:
    m = re.search(rb"<Code>(.*?)</Code>", body)
    return m.group(1).decode() if m else ""


def assert_missing(s3, bucket, key):
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key=key)
    assert http_status(e.value) == 404


# ------------------------------------------------------------------ CopyObject

MP_PARTS = (5 * MiB, 1024)  # a 2-part multipart source: 5 MiB + 1 KiB
SOURCES = {"0B": 0, "100B-inline": 100, "3blocks+17": 3 * BLOCK + 17, "multipart": None}


def make_source(s3, bucket, kind, key="src", seed=1):
    """Creates the source object; returns (bytes, ETag, is_multipart)."""
    size = SOURCES[kind]
    if size is None:
        parts = [data(n, seed=seed * 10 + i) for i, n in enumerate(MP_PARTS)]
        r = put_multipart(s3, bucket, key, parts, Metadata={"src": "yes"}, ContentType="text/x-src")
        assert r["ETag"] == multipart_etag(parts)
        return b"".join(parts), r["ETag"], True
    body = data(size, seed=seed)
    etag = s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata={"src": "yes"}, ContentType="text/x-src")["ETag"]
    return body, etag, False


@pytest.mark.parametrize("where", ["same-bucket", "cross-bucket"])
@pytest.mark.parametrize("kind", list(SOURCES))
def test_copy_object(s3, bucket, kind, where):
    """CopyObject copies the bytes exactly (inline, block-sized and
    multipart sources, within a bucket and across buckets); the copy of a
    single-PUT source keeps its ETag; the default directive (COPY) keeps
    the user metadata and Content-Type; the source is untouched."""
    body, src_etag, multipart = make_source(s3, bucket, kind)
    dst = bucket if where == "same-bucket" else new_bucket(s3, "dst")
    r = s3.copy_object(Bucket=dst, Key="copy", CopySource={"Bucket": bucket, "Key": "src"})
    etag = r["CopyObjectResult"]["ETag"]
    assert r["CopyObjectResult"]["LastModified"] is not None
    if not multipart:
        assert etag == src_etag
    g = s3.get_object(Bucket=dst, Key="copy")
    got = g["Body"].read()
    assert len(got) == len(body)
    assert got == body
    assert g["ETag"] == etag
    assert g["ContentLength"] == len(body)
    assert g["Metadata"] == {"src": "yes"}
    assert g["ContentType"] == "text/x-src"
    # The source is unchanged.
    s = s3.get_object(Bucket=bucket, Key="src")
    assert s["Body"].read() == body
    assert s["ETag"] == src_etag
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=dst)["Contents"])
    assert keys == (["copy", "src"] if dst == bucket else ["copy"])


def test_copy_metadata_directive(s3, bucket):
    """COPY keeps x-amz-meta-*, Content-Type and the stored standard
    headers; REPLACE takes the request's and drops the source's."""
    s3.put_object(Bucket=bucket, Key="src", Body=b"meta source", Metadata={"a": "1", "shared": "src"}, ContentType="text/a", CacheControl="max-age=60", ContentLanguage="de")
    s3.copy_object(Bucket=bucket, Key="kept", CopySource={"Bucket": bucket, "Key": "src"}, MetadataDirective="COPY", Metadata={"ignored": "x"}, ContentType="text/ignored")
    h = s3.head_object(Bucket=bucket, Key="kept")
    assert h["Metadata"] == {"a": "1", "shared": "src"}
    assert h["ContentType"] == "text/a"
    assert h.get("CacheControl") == "max-age=60"
    assert h.get("ContentLanguage") == "de"

    s3.copy_object(Bucket=bucket, Key="replaced", CopySource={"Bucket": bucket, "Key": "src"}, MetadataDirective="REPLACE", Metadata={"b": "2"}, ContentType="text/b")
    h = s3.head_object(Bucket=bucket, Key="replaced")
    assert h["Metadata"] == {"b": "2"}
    assert h["ContentType"] == "text/b"
    assert "CacheControl" not in h
    assert "ContentLanguage" not in h
    assert s3.get_object(Bucket=bucket, Key="replaced")["Body"].read() == b"meta source"


def test_copy_onto_itself(s3, bucket):
    """A copy onto itself without REPLACE is InvalidRequest and changes
    nothing; with REPLACE it changes the metadata and keeps the bytes and
    ETag, also after the replaced version's blocks would have been
    reclaimed."""
    body = data(3 * BLOCK + 17, seed=5)
    etag = s3.put_object(Bucket=bucket, Key="self", Body=body, Metadata={"v": "1"})["ETag"]
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="self", CopySource={"Bucket": bucket, "Key": "self"})
    assert error_code(e.value) == "InvalidRequest"
    assert http_status(e.value) == 400
    assert s3.head_object(Bucket=bucket, Key="self")["Metadata"] == {"v": "1"}

    r = s3.copy_object(Bucket=bucket, Key="self", CopySource={"Bucket": bucket, "Key": "self"}, MetadataDirective="REPLACE", Metadata={"v": "2"}, ContentType="text/new")
    assert r["CopyObjectResult"]["ETag"] == etag
    time.sleep(RECLAIM_WAIT)
    g = s3.get_object(Bucket=bucket, Key="self")
    assert g["Metadata"] == {"v": "2"}
    assert g["ContentType"] == "text/new"
    assert g["ETag"] == etag
    assert g["Body"].read() == body


def test_copy_errors(s3, bucket):
    """CopySource with a versionId is NotImplemented; failing
    x-amz-copy-source-if-match / -if-none-match are 412; a missing source
    key or bucket and a missing destination bucket are NoSuchKey /
    NoSuchBucket; none of them creates the destination."""
    etag = s3.put_object(Bucket=bucket, Key="src", Body=b"precondition source")["ETag"]
    src = {"Bucket": bucket, "Key": "src"}
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={**src, "VersionId": "abc"})
    assert (error_code(e.value), http_status(e.value)) == ("NotImplemented", 501)
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=src, CopySourceIfMatch='"0123456789abcdef0123456789abcdef"')
    assert (error_code(e.value), http_status(e.value)) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=src, CopySourceIfNoneMatch=etag)
    assert (error_code(e.value), http_status(e.value)) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "nope"})
    assert (error_code(e.value), http_status(e.value)) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": "no-such-source-bucket", "Key": "src"})
    assert error_code(e.value) == "NoSuchBucket"
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket="no-such-dest-bucket", Key="dst", CopySource=src)
    assert error_code(e.value) == "NoSuchBucket"
    assert_missing(s3, bucket, "dst")
    # The matching preconditions let the copy through.
    s3.copy_object(Bucket=bucket, Key="dst", CopySource=src, CopySourceIfMatch=etag, CopySourceIfNoneMatch='"0123456789abcdef0123456789abcdef"')
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"precondition source"


@pytest.mark.parametrize("kind", ["3blocks+17", "multipart"])
def test_copy_shares_no_blocks_with_its_source(node, s3, bucket, kind):
    """After a copy, overwriting and then deleting the SOURCE (and waiting
    out the reclaim leeway) leaves the copy byte-exact; deleting the copy
    leaves a second source intact; once everything is deleted the node's
    keys come back to what an empty bucket needs plus the deleted keys'
    tombstones (no block leaked)."""
    baseline = node.storage_keys()
    body, _, _ = make_source(s3, bucket, kind)
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "src"})
    s3.put_object(Bucket=bucket, Key="src", Body=data(2 * BLOCK + 1, seed=99))
    s3.delete_object(Bucket=bucket, Key="src")
    time.sleep(RECLAIM_WAIT)
    g = s3.get_object(Bucket=bucket, Key="copy")
    got = g["Body"].read()
    assert len(got) == len(body)
    assert got == body

    # The other way round: the copy goes, the source stays.
    body2, etag2, _ = make_source(s3, bucket, kind, key="src2", seed=2)
    s3.copy_object(Bucket=bucket, Key="copy2", CopySource={"Bucket": bucket, "Key": "src2"})
    s3.delete_object(Bucket=bucket, Key="copy2")
    time.sleep(RECLAIM_WAIT)
    g = s3.get_object(Bucket=bucket, Key="src2")
    assert g["Body"].read() == body2
    assert g["ETag"] == etag2

    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "copy"}, {"Key": "src2"}]})
    # What stays is at most a tombstone for each of the four keys.
    assert wait_until(lambda: node.storage_keys() <= baseline + 4, timeout=15), (node.storage_keys(), baseline)


# -------------------------------------------------------------- UploadPartCopy


def test_upload_part_copy(node, s3, bucket):
    """A multipart upload whose parts are copied by byte range from a 6 MiB
    object completes to the source's bytes, with the multipart ETag of the
    ranges; the parts own their blocks (the source is overwritten and
    deleted before completion); a bad range is InvalidArgument."""
    src = data(6 * MiB, seed=7)
    s3.put_object(Bucket=bucket, Key="src6", Body=src)
    up = s3.create_multipart_upload(Bucket=bucket, Key="assembled", ContentType="text/x-assembled")["UploadId"]
    r1 = s3.upload_part_copy(Bucket=bucket, Key="assembled", UploadId=up, PartNumber=1, CopySource={"Bucket": bucket, "Key": "src6"}, CopySourceRange="bytes=0-5242879")
    r2 = s3.upload_part_copy(Bucket=bucket, Key="assembled", UploadId=up, PartNumber=2, CopySource={"Bucket": bucket, "Key": "src6"}, CopySourceRange=f"bytes=5242880-{len(src) - 1}")
    p1, p2 = src[:5242880], src[5242880:]
    assert r1["CopyPartResult"]["ETag"] == f'"{md5_hex(p1)}"'
    assert r2["CopyPartResult"]["ETag"] == f'"{md5_hex(p2)}"'
    lp = s3.list_parts(Bucket=bucket, Key="assembled", UploadId=up)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in lp] == [(1, len(p1)), (2, len(p2))]

    for bad in ["bytes=0-6291456", "bytes=5-2", "bytes=abc", "0-10", f"bytes={len(src)}-{len(src)}"]:
        with pytest.raises(ClientError) as e:
            s3.upload_part_copy(Bucket=bucket, Key="assembled", UploadId=up, PartNumber=3, CopySource={"Bucket": bucket, "Key": "src6"}, CopySourceRange=bad)
        assert error_code(e.value) == "InvalidArgument", bad
        assert http_status(e.value) == 400, bad

    # The copied parts do not depend on the source any more.
    s3.put_object(Bucket=bucket, Key="src6", Body=b"replaced")
    s3.delete_object(Bucket=bucket, Key="src6")
    time.sleep(RECLAIM_WAIT)
    done = [{"PartNumber": 1, "ETag": r1["CopyPartResult"]["ETag"]}, {"PartNumber": 2, "ETag": r2["CopyPartResult"]["ETag"]}]
    c = s3.complete_multipart_upload(Bucket=bucket, Key="assembled", UploadId=up, MultipartUpload={"Parts": done})
    assert c["ETag"] == multipart_etag([p1, p2])
    g = s3.get_object(Bucket=bucket, Key="assembled")
    got = g["Body"].read()
    assert len(got) == len(src)
    assert got == src
    assert g["ContentType"] == "text/x-assembled"


def test_upload_part_copy_from_multipart_source_across_its_parts(s3, bucket):
    """A copied range that spans the boundary between two parts of a
    multipart source, and a whole-object part copy without a range."""
    parts = [data(5 * MiB, seed=31), data(300_000, seed=32)]
    put_multipart(s3, bucket, "mp-src", parts)
    whole = b"".join(parts)
    up = s3.create_multipart_upload(Bucket=bucket, Key="spanning")["UploadId"]
    a, z = 5 * MiB - 100_000, 5 * MiB + 200_000
    r1 = s3.upload_part_copy(Bucket=bucket, Key="spanning", UploadId=up, PartNumber=1, CopySource={"Bucket": bucket, "Key": "mp-src"})  # whole source
    r2 = s3.upload_part_copy(Bucket=bucket, Key="spanning", UploadId=up, PartNumber=2, CopySource={"Bucket": bucket, "Key": "mp-src"}, CopySourceRange=f"bytes={a}-{z}")
    done = [{"PartNumber": 1, "ETag": r1["CopyPartResult"]["ETag"]}, {"PartNumber": 2, "ETag": r2["CopyPartResult"]["ETag"]}]
    c = s3.complete_multipart_upload(Bucket=bucket, Key="spanning", UploadId=up, MultipartUpload={"Parts": done})
    want = whole + whole[a : z + 1]
    assert c["ETag"] == multipart_etag([whole, whole[a : z + 1]])
    assert s3.get_object(Bucket=bucket, Key="spanning")["Body"].read() == want


def test_upload_part_copy_errors(s3, bucket):
    """UploadPartCopy from a missing key is NoSuchKey, into a missing upload
    NoSuchUpload; a failing x-amz-copy-source-if-match is 412."""
    s3.put_object(Bucket=bucket, Key="src", Body=data(1000))
    up = s3.create_multipart_upload(Bucket=bucket, Key="t")["UploadId"]
    with pytest.raises(ClientError) as e:
        s3.upload_part_copy(Bucket=bucket, Key="t", UploadId=up, PartNumber=1, CopySource={"Bucket": bucket, "Key": "missing"})
    assert error_code(e.value) == "NoSuchKey"
    with pytest.raises(ClientError) as e:
        s3.upload_part_copy(Bucket=bucket, Key="t", UploadId=up, PartNumber=1, CopySource={"Bucket": bucket, "Key": "src"}, CopySourceIfMatch='"ffffffffffffffffffffffffffffffff"')
    assert http_status(e.value) == 412
    s3.abort_multipart_upload(Bucket=bucket, Key="t", UploadId=up)
    with pytest.raises(ClientError) as e:
        s3.upload_part_copy(Bucket=bucket, Key="t", UploadId=up, PartNumber=1, CopySource={"Bucket": bucket, "Key": "src"})
    assert error_code(e.value) == "NoSuchUpload"


# --------------------------------------------------------------------- aws CLI


def test_aws_cli_cp_and_mv_between_buckets(node, s3, bucket):
    """`aws s3 cp s3://b/x s3://b2/y` copies server-side (CopyObject);
    `aws s3 mv s3://b/x s3://b/z` leaves z and removes x; a 10 MiB object
    is copied by the CLI as a multipart copy (UploadPartCopy)."""
    b2 = new_bucket(s3, "cli2")
    body = data(100_000, seed=41)
    s3.put_object(Bucket=bucket, Key="x", Body=body, ContentType="text/x-cli")
    aws_cli(node, "s3", "cp", f"s3://{bucket}/x", f"s3://{b2}/y")
    g = s3.get_object(Bucket=b2, Key="y")
    assert g["Body"].read() == body
    assert g["ETag"] == f'"{md5_hex(body)}"'

    aws_cli(node, "s3", "mv", f"s3://{bucket}/x", f"s3://{bucket}/z")
    assert s3.get_object(Bucket=bucket, Key="z")["Body"].read() == body
    assert_missing(s3, bucket, "x")

    big = data(10 * MiB + 5, seed=42)
    s3.put_object(Bucket=bucket, Key="big", Body=big)
    aws_cli(node, "s3", "cp", f"s3://{bucket}/big", f"s3://{b2}/big-copy")
    g = s3.get_object(Bucket=b2, Key="big-copy")
    got = g["Body"].read()
    assert len(got) == len(big)
    assert got == big
    assert g["ETag"].endswith('-2"'), g["ETag"]  # 8 MiB chunks: a multipart copy


# --------------------------------------------------------------------- tagging


def test_object_tagging(s3, bucket):
    """Tags from the x-amz-tagging header; GetObjectTagging, the tag count on
    HEAD and GET, PutObjectTagging replacing the set, DeleteObjectTagging
    clearing it; the object's bytes and ETag never change."""
    body = data(3 * BLOCK + 17, seed=51)
    etag = s3.put_object(Bucket=bucket, Key="t", Body=body, Tagging="a=1&b=2")["ETag"]
    assert tags_of(s3, bucket, "t") == {"a": "1", "b": "2"}
    h = s3.head_object(Bucket=bucket, Key="t")
    assert hdrs(h).get("x-amz-tagging-count") == "2"
    assert s3.get_object(Bucket=bucket, Key="t")["TagCount"] == 2

    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": "c", "Value": "3"}, {"Key": "space key", "Value": "a/b=c&d"}]})
    assert tags_of(s3, bucket, "t") == {"c": "3", "space key": "a/b=c&d"}
    g = s3.get_object(Bucket=bucket, Key="t")
    assert g["Body"].read() == body
    assert g["ETag"] == etag
    assert g["TagCount"] == 2

    s3.delete_object_tagging(Bucket=bucket, Key="t")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []
    h = s3.head_object(Bucket=bucket, Key="t")
    assert "x-amz-tagging-count" not in hdrs(h)
    assert h["ETag"] == etag
    # The tag changes kept the object's blocks: still whole after the
    # reclaim leeway.
    time.sleep(RECLAIM_WAIT)
    assert s3.get_object(Bucket=bucket, Key="t")["Body"].read() == body
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["t"]


def test_tag_changes_do_not_leak_or_lose_blocks(node, s3, bucket):
    """Many tag changes of a block-sized object: the node's key count does
    not grow (each change writes a new manifest version naming the same
    blocks) and the bytes stay."""
    body = data(4 * BLOCK, seed=52)
    s3.put_object(Bucket=bucket, Key="t", Body=body)
    keys = node.storage_keys()
    for i in range(8):
        s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": "n", "Value": str(i)}]})
    time.sleep(RECLAIM_WAIT)
    assert wait_until(lambda: node.storage_keys() <= keys, timeout=10), (node.storage_keys(), keys)
    assert s3.get_object(Bucket=bucket, Key="t")["Body"].read() == body
    assert tags_of(s3, bucket, "t") == {"n": "7"}


def test_tagging_limits(s3, bucket):
    """11 tags, a 129-character key, a 257-character value, a duplicate
    key: InvalidTag (400), through PutObjectTagging and through the
    x-amz-tagging header of PutObject (which then stores nothing); the
    limits themselves (10 tags, 128 / 256 characters) are accepted."""
    s3.put_object(Bucket=bucket, Key="t", Body=b"x")
    bad_sets = {
        "11 tags": [{"Key": f"k{i}", "Value": "v"} for i in range(11)],
        "129-char key": [{"Key": "k" * 129, "Value": "v"}],
        "257-char value": [{"Key": "k", "Value": "v" * 257}],
        "duplicate key": [{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}],
    }
    for name, ts in bad_sets.items():
        with pytest.raises(ClientError) as e:
            s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": ts})
        assert (error_code(e.value), http_status(e.value)) == ("InvalidTag", 400), name
        header = "&".join(f"{urllib.parse.quote(t['Key'])}={urllib.parse.quote(t['Value'])}" for t in ts)
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=bucket, Key=f"hdr-{len(ts)}", Body=b"y", Tagging=header)
        assert error_code(e.value) == "InvalidTag", name
        assert_missing(s3, bucket, f"hdr-{len(ts)}")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []
    ok = [{"Key": f"k{i}", "Value": "v"} for i in range(9)] + [{"Key": "k" * 128, "Value": "v" * 256}]
    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": ok})
    assert len(s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"]) == 10
    with pytest.raises(ClientError) as e:
        s3.get_object_tagging(Bucket=bucket, Key="missing")
    assert error_code(e.value) == "NoSuchKey"
    with pytest.raises(ClientError) as e:
        s3.put_object_tagging(Bucket=bucket, Key="missing", Tagging={"TagSet": []})
    assert error_code(e.value) == "NoSuchKey"
    assert_missing(s3, bucket, "missing")


def test_tags_on_multipart_and_copy(s3, bucket):
    """Tagging on CreateMultipartUpload carries to the completed object; a
    copy keeps the source's tags (COPY) or takes x-amz-tagging
    (TaggingDirective=REPLACE)."""
    parts = [data(5 * MiB, seed=61), data(10, seed=62)]
    put_multipart(s3, bucket, "mp", parts, Tagging="mp=yes&n=2")
    assert tags_of(s3, bucket, "mp") == {"mp": "yes", "n": "2"}
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"".join(parts)

    s3.put_object(Bucket=bucket, Key="src", Body=b"tagged source", Tagging="s=1")
    s3.copy_object(Bucket=bucket, Key="copy-tags", CopySource={"Bucket": bucket, "Key": "src"})
    assert tags_of(s3, bucket, "copy-tags") == {"s": "1"}
    s3.copy_object(Bucket=bucket, Key="replace-tags", CopySource={"Bucket": bucket, "Key": "src"}, TaggingDirective="REPLACE", Tagging="x=y")
    assert tags_of(s3, bucket, "replace-tags") == {"x": "y"}
    assert s3.get_object(Bucket=bucket, Key="replace-tags")["Body"].read() == b"tagged source"
    assert tags_of(s3, bucket, "src") == {"s": "1"}


# ---------------------------------------------------------- conditional writes


def test_put_if_none_match(node, s3, bucket):
    """PutObject If-None-Match: * creates a new key, and on an existing key
    is 412 PreconditionFailed with the content unchanged (a refused
    block-sized body leaves no blocks behind)."""
    r = s3.put_object(Bucket=bucket, Key="once", Body=b"first", IfNoneMatch="*")
    etag = r["ETag"]
    keys = node.storage_keys()
    for body in (b"second", data(3 * BLOCK + 1, seed=71)):
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=bucket, Key="once", Body=body, IfNoneMatch="*")
        assert (error_code(e.value), http_status(e.value)) == ("PreconditionFailed", 412)
    g = s3.get_object(Bucket=bucket, Key="once")
    assert g["Body"].read() == b"first"
    assert g["ETag"] == etag
    assert wait_until(lambda: node.storage_keys() <= keys, timeout=10), (node.storage_keys(), keys)
    # Once deleted, the key can be created again under the condition.
    s3.delete_object(Bucket=bucket, Key="once")
    s3.put_object(Bucket=bucket, Key="once", Body=b"third", IfNoneMatch="*")
    assert s3.get_object(Bucket=bucket, Key="once")["Body"].read() == b"third"


def test_put_if_match(s3, bucket):
    """PutObject If-Match: the current ETag replaces the object; another
    ETag is 412; on a missing key it is 404 NoSuchKey and creates
    nothing."""
    etag = s3.put_object(Bucket=bucket, Key="cas", Body=b"v1")["ETag"]
    etag2 = s3.put_object(Bucket=bucket, Key="cas", Body=b"v2", IfMatch=etag)["ETag"]
    assert s3.get_object(Bucket=bucket, Key="cas")["Body"].read() == b"v2"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="cas", Body=b"v3", IfMatch=etag)  # stale
    assert (error_code(e.value), http_status(e.value)) == ("PreconditionFailed", 412)
    g = s3.get_object(Bucket=bucket, Key="cas")
    assert g["Body"].read() == b"v2"
    assert g["ETag"] == etag2
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="absent", Body=b"x", IfMatch=etag)
    assert (error_code(e.value), http_status(e.value)) == ("NoSuchKey", 404)
    assert_missing(s3, bucket, "absent")


def test_complete_multipart_if_none_match(s3, bucket):
    """CompleteMultipartUpload If-None-Match: * on an existing key is 412,
    leaves the object and the upload; completing again without the
    condition succeeds. On a new key the condition lets it through."""
    s3.put_object(Bucket=bucket, Key="mp", Body=b"existing")
    parts = [data(5 * MiB, seed=81), data(100, seed=82)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    done = []
    for i, p in enumerate(parts, start=1):
        done.append({"PartNumber": i, "ETag": s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=i, Body=p)["ETag"]})
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": done}, IfNoneMatch="*")
    assert (error_code(e.value), http_status(e.value)) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"existing"
    assert [p["PartNumber"] for p in s3.list_parts(Bucket=bucket, Key="mp", UploadId=up)["Parts"]] == [1, 2]
    r = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": done})
    assert r["ETag"] == multipart_etag(parts)
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"".join(parts)

    up = s3.create_multipart_upload(Bucket=bucket, Key="mp-new")["UploadId"]
    e1 = s3.upload_part(Bucket=bucket, Key="mp-new", UploadId=up, PartNumber=1, Body=b"only part")["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp-new", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}]}, IfNoneMatch="*")
    assert s3.get_object(Bucket=bucket, Key="mp-new")["Body"].read() == b"only part"


# ------------------------------------------------------------ standard headers

EXPIRES = datetime.datetime(2031, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
EXPIRES_HTTP = "Thu, 02 Jan 2031 03:04:05 GMT"


def test_standard_headers_are_stored_and_returned(s3, bucket):
    """Cache-Control, Content-Disposition, Content-Encoding, Content-Language,
    Expires and x-amz-website-redirect-location given on PUT come back on
    HEAD and GET (and through a multipart upload)."""
    body = gzip.compress(b"hello standard headers " * 50)
    kw = dict(
        CacheControl="max-age=3600, public",
        ContentDisposition='attachment; filename="report.txt"',
        ContentEncoding="gzip",
        ContentLanguage="en-GB",
        Expires=EXPIRES,
        WebsiteRedirectLocation="/other",
        ContentType="text/plain",
    )
    s3.put_object(Bucket=bucket, Key="std", Body=body, **kw)
    for r in (s3.head_object(Bucket=bucket, Key="std"), s3.get_object(Bucket=bucket, Key="std")):
        assert r["CacheControl"] == "max-age=3600, public"
        assert r["ContentDisposition"] == 'attachment; filename="report.txt"'
        assert r["ContentEncoding"] == "gzip"
        assert r["ContentLanguage"] == "en-GB"
        assert hdrs(r)["expires"] == EXPIRES_HTTP
        assert r["WebsiteRedirectLocation"] == "/other"
        assert r["ContentType"] == "text/plain"
    assert s3.get_object(Bucket=bucket, Key="std")["Body"].read() == body

    parts = [data(5 * MiB, seed=91), data(10, seed=92)]
    put_multipart(s3, bucket, "std-mp", parts, CacheControl="no-cache", ContentDisposition="inline", ContentLanguage="fr")
    h = s3.head_object(Bucket=bucket, Key="std-mp")
    assert (h.get("CacheControl"), h.get("ContentDisposition"), h.get("ContentLanguage")) == ("no-cache", "inline", "fr")

    # An overwrite without them drops them.
    s3.put_object(Bucket=bucket, Key="std", Body=b"plain")
    h = s3.head_object(Bucket=bucket, Key="std")
    for k in ("CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage", "WebsiteRedirectLocation"):
        assert k not in h, k
    assert "expires" not in hdrs(h)


def test_response_header_overrides(s3, bucket):
    """GetObject's response-* parameters override the stored headers (and
    supply ones the object does not have)."""
    s3.put_object(Bucket=bucket, Key="o", Body=b"override me", ContentType="text/plain", CacheControl="max-age=1", ContentDisposition="inline")
    g = s3.get_object(
        Bucket=bucket,
        Key="o",
        ResponseContentType="application/x-override",
        ResponseCacheControl="no-store",
        ResponseContentDisposition='attachment; filename="o.bin"',
        ResponseContentLanguage="nl",
        ResponseExpires=EXPIRES,
    )
    assert g["ContentType"] == "application/x-override"
    assert g["CacheControl"] == "no-store"
    assert g["ContentDisposition"] == 'attachment; filename="o.bin"'
    assert g["ContentLanguage"] == "nl"
    assert hdrs(g)["expires"] == EXPIRES_HTTP
    assert g["Body"].read() == b"override me"
    # Without them the stored values are back.
    h = s3.head_object(Bucket=bucket, Key="o")
    assert (h["ContentType"], h["CacheControl"], h["ContentDisposition"]) == ("text/plain", "max-age=1", "inline")


# ----------------------------------------------------------- GET ?partNumber


def test_get_part_number(s3, bucket):
    """GET ?partNumber=N of a multipart object returns exactly part N (206,
    its Content-Range, x-amz-mp-parts-count); HEAD too; a part beyond the
    last is 416 InvalidPartNumber. A single-PUT object is one part."""
    parts = [data(5 * MiB, seed=101), data(1000, seed=102)]
    put_multipart(s3, bucket, "mp", parts)
    total = sum(map(len, parts))
    for n, want in ((1, parts[0]), (2, parts[1])):
        g = s3.get_object(Bucket=bucket, Key="mp", PartNumber=n)
        assert g["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert g["PartsCount"] == 2
        start = 0 if n == 1 else len(parts[0])
        assert g["ContentRange"] == f"bytes {start}-{start + len(want) - 1}/{total}"
        got = g["Body"].read()
        assert len(got) == len(want)
        assert got == want
    h = s3.head_object(Bucket=bucket, Key="mp", PartNumber=2)
    assert h["ContentLength"] == 1000
    assert h["PartsCount"] == 2
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="mp", PartNumber=3)
    assert (error_code(e.value), http_status(e.value)) == ("InvalidPartNumber", 416)

    s3.put_object(Bucket=bucket, Key="single", Body=b"one part")
    assert s3.get_object(Bucket=bucket, Key="single", PartNumber=1)["Body"].read() == b"one part"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="single", PartNumber=2)
    assert http_status(e.value) == 416


# ------------------------------------------------------ GetObjectAttributes

ALL_ATTRS = ["ETag", "ObjectSize", "ObjectParts", "Checksum", "StorageClass"]


def test_get_object_attributes_single_put(s3, bucket):
    """GetObjectAttributes of a single PUT: ETag without quotes, size,
    STANDARD storage class, the CRC32 it was uploaded with; no parts."""
    body = data(BLOCK + 5, seed=111)
    s3.put_object(Bucket=bucket, Key="one", Body=body, ChecksumAlgorithm="CRC32")
    a = s3.get_object_attributes(Bucket=bucket, Key="one", ObjectAttributes=ALL_ATTRS)
    assert a["ETag"] == md5_hex(body)
    assert a["ObjectSize"] == len(body)
    assert a["StorageClass"] == "STANDARD"
    assert a["Checksum"]["ChecksumCRC32"] == crc32_b64(body)
    assert "ObjectParts" not in a or not a["ObjectParts"].get("TotalPartsCount")
    # Only what was asked for.
    a = s3.get_object_attributes(Bucket=bucket, Key="one", ObjectAttributes=["ObjectSize"])
    assert a["ObjectSize"] == len(body)
    assert "ETag" not in a and "StorageClass" not in a
    with pytest.raises(ClientError) as e:
        s3.get_object_attributes(Bucket=bucket, Key="missing", ObjectAttributes=["ETag"])
    assert error_code(e.value) == "NoSuchKey"


def test_get_object_attributes_multipart_crc32(s3, bucket):
    """A 2-part upload with CRC32 on create and on each part: complete's
    answer and HEAD (ChecksumMode=ENABLED) carry the composite CRC32
    (`…-2`); GetObjectAttributes reports size, unquoted ETag and 2 parts
    with their sizes and checksums."""
    parts = [data(5 * MiB, seed=121), data(4321, seed=122)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="mpc", ChecksumAlgorithm="CRC32")["UploadId"]
    done = []
    for i, p in enumerate(parts, start=1):
        r = s3.upload_part(Bucket=bucket, Key="mpc", UploadId=up, PartNumber=i, Body=p, ChecksumAlgorithm="CRC32")
        assert r["ChecksumCRC32"] == crc32_b64(p)
        done.append({"PartNumber": i, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    c = s3.complete_multipart_upload(Bucket=bucket, Key="mpc", UploadId=up, MultipartUpload={"Parts": done})
    raw = b"".join(base64.b64decode(crc32_b64(p)) for p in parts)
    composite = base64.b64encode((zlib.crc32(raw) & 0xFFFFFFFF).to_bytes(4, "big")).decode() + "-2"
    assert c.get("ChecksumCRC32") == composite
    h = s3.head_object(Bucket=bucket, Key="mpc", ChecksumMode="ENABLED")
    assert h["ChecksumCRC32"] == composite
    assert h["ChecksumCRC32"].endswith("-2")

    a = s3.get_object_attributes(Bucket=bucket, Key="mpc", ObjectAttributes=ALL_ATTRS)
    etag = multipart_etag(parts).strip('"')
    assert a["ETag"] == etag
    assert a["ObjectSize"] == sum(map(len, parts))
    assert a["StorageClass"] == "STANDARD"
    listed = a["ObjectParts"].get("Parts", [])
    assert [(p["PartNumber"], p["Size"]) for p in listed] == [(1, len(parts[0])), (2, len(parts[1]))]
    assert [p.get("ChecksumCRC32") for p in listed] == [crc32_b64(p) for p in parts]
    assert a["Checksum"]["ChecksumCRC32"].startswith(composite.split("-")[0])
    page = s3.get_object_attributes(Bucket=bucket, Key="mpc", ObjectAttributes=["ObjectParts"], MaxParts=1)
    assert [p["PartNumber"] for p in page["ObjectParts"]["Parts"]] == [1]
    assert page["ObjectParts"]["IsTruncated"] is True
    # S3's element is <PartsCount> (botocore's TotalPartsCount).
    assert a["ObjectParts"].get("TotalPartsCount") == 2, a["ObjectParts"]


# ----------------------------------------------------------------------- SigV2


def test_sigv2_header_auth_with_boto3(node, bucket):
    """A boto3 client signing with SigV2 (botocore's HmacV1, signature_version
    's3') puts, gets, heads, copies, tags, deletes objects; a wrong secret is
    403 SignatureDoesNotMatch and stores nothing."""
    v2 = node.client(signature_version="s3")
    body = data(BLOCK + 11, seed=131)
    etag = v2.put_object(Bucket=bucket, Key="dir/v2 key+ü", Body=body, Metadata={"sig": "v2"}, ContentType="text/v2")["ETag"]
    assert etag == f'"{md5_hex(body)}"'
    g = v2.get_object(Bucket=bucket, Key="dir/v2 key+ü")
    assert g["Body"].read() == body
    assert g["Metadata"] == {"sig": "v2"}
    assert v2.get_object(Bucket=bucket, Key="dir/v2 key+ü", Range="bytes=10-19")["Body"].read() == body[10:20]
    assert v2.head_object(Bucket=bucket, Key="dir/v2 key+ü")["ContentLength"] == len(body)
    v2.copy_object(Bucket=bucket, Key="copied", CopySource={"Bucket": bucket, "Key": "dir/v2 key+ü"})
    v2.put_object_tagging(Bucket=bucket, Key="copied", Tagging={"TagSet": [{"Key": "t", "Value": "v"}]})
    assert {t["Key"]: t["Value"] for t in v2.get_object_tagging(Bucket=bucket, Key="copied")["TagSet"]} == {"t": "v"}
    assert v2.get_object(Bucket=bucket, Key="copied")["Body"].read() == body
    v2.delete_object(Bucket=bucket, Key="copied")
    assert_missing(v2, bucket, "copied")

    bad = node.client(signature_version="s3", secret_key=SECRET_KEY + "x")
    with pytest.raises(ClientError) as e:
        bad.put_object(Bucket=bucket, Key="evil", Body=b"x")
    assert (error_code(e.value), http_status(e.value)) == ("SignatureDoesNotMatch", 403)
    with pytest.raises(ClientError) as e:
        node.client(signature_version="s3", access_key="NOBODY").get_object(Bucket=bucket, Key="dir/v2 key+ü")
    assert http_status(e.value) == 403
    assert_missing(v2, bucket, "evil")


def test_sigv2_bucket_level_requests_with_boto3(node, s3, bucket):
    """SigV2 requests that name only a bucket (path style): botocore signs
    the resource `/bucket/` (with a slash, "to generate a signature that the
    server will accept", botocore handlers.py) although it sends `/bucket`.
    ListObjects (v1 and v2), HeadBucket, ListMultipartUploads, CreateBucket,
    DeleteBucket and ListBuckets all work."""
    s3.put_object(Bucket=bucket, Key="dir/a", Body=b"a")
    v2 = node.client(signature_version="s3")
    assert [b["Name"] for b in v2.list_buckets()["Buckets"]] == [bucket]
    assert [o["Key"] for o in v2.list_objects_v2(Bucket=bucket, Prefix="dir/")["Contents"]] == ["dir/a"]
    assert [o["Key"] for o in v2.list_objects(Bucket=bucket)["Contents"]] == ["dir/a"]
    v2.head_bucket(Bucket=bucket)
    assert v2.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    v2.create_bucket(Bucket="made-with-v2")
    assert "made-with-v2" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    v2.delete_bucket(Bucket="made-with-v2")
    assert "made-with-v2" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def put_raw(url, body):
    """PUT with http.client, which (unlike urllib) sends no Content-Type:
    SigV2 signs the Content-Type, and the presigned URL was made without
    one."""
    import http.client

    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        c.request("PUT", f"{u.path}?{u.query}", body=body)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def test_sigv2_presigned_urls(node, s3, bucket):
    """SigV2 presigned URLs (AWSAccessKeyId/Expires/Signature) from boto3
    work with urllib, also with a Range; a tampered signature or key is
    403 SignatureDoesNotMatch; an expired one is 403 AccessDenied; a
    presigned PUT uploads."""
    body = data(2 * BLOCK + 3, seed=141)
    s3.put_object(Bucket=bucket, Key="pre v2/ü.bin", Body=body)
    s3.put_object(Bucket=bucket, Key="other", Body=b"other")
    v2 = node.client(signature_version="s3")
    url = v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "pre v2/ü.bin"}, ExpiresIn=300)
    assert "AWSAccessKeyId=" in url and "Signature=" in url and "X-Amz-" not in url
    st, _, got = urlopen(url)
    assert st == 200
    assert got == body
    st, _, got = urlopen(url, headers={"Range": "bytes=5-9"})
    assert (st, got) == (206, body[5:10])

    u = urllib.parse.urlsplit(url)
    q = urllib.parse.parse_qsl(u.query)
    sig = dict(q)["Signature"]
    tampered_sig = ("A" if sig[0] != "A" else "B") + sig[1:]
    tampered = urllib.parse.urlunsplit(u._replace(query=urllib.parse.urlencode([(k, tampered_sig if k == "Signature" else v) for k, v in q])))
    st, _, got = urlopen(tampered)
    assert st == 403
    assert code_of(got) == "SignatureDoesNotMatch"
    st, _, got = urlopen(urllib.parse.urlunsplit(u._replace(path=f"/{bucket}/other")))
    assert st == 403
    assert code_of(got) == "SignatureDoesNotMatch"
    assert got != b"other"

    short = v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "other"}, ExpiresIn=1)
    time.sleep(2.2)
    st, _, got = urlopen(short)
    assert st == 403
    assert code_of(got) == "AccessDenied"

    put_url = v2.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "via-v2-put"}, ExpiresIn=300)
    st, got = put_raw(put_url, b"uploaded with a v2 URL")
    assert st == 200, got
    assert s3.get_object(Bucket=bucket, Key="via-v2-put")["Body"].read() == b"uploaded with a v2 URL"


def test_aws_cli_presign(node, s3, bucket):
    """`aws s3 presign s3://b/k` (the CLI v1 signs it with SigV2 by default;
    a v4 URL must work as well) fetched with urllib gives the object."""
    body = data(BLOCK + 1, seed=151)
    s3.put_object(Bucket=bucket, Key="cli/presigned obj", Body=body)
    p = aws_cli(node, "s3", "presign", f"s3://{bucket}/cli/presigned obj", "--expires-in", "300")
    url = p.stdout.decode().strip()
    assert url.startswith(node.endpoint), url
    assert "Signature=" in url
    st, _, got = urlopen(url)
    assert st == 200, got[:300]
    assert got == body


# ------------------------------------------------------ virtual-hosted style

DOMAIN = "s3.test.local"


def vhost_node(start_node):
    return start_node("vh", sets=(f's3.domains=["{DOMAIN}"]',))


def vhost_request(node, bucket, method, path, query="", body=b"", headers=None, secret_key=SECRET_KEY):
    """A SigV4-signed request with Host: BUCKET.s3.test.local:PORT, sent to
    127.0.0.1:PORT over a raw socket."""
    host = f"{bucket}.{DOMAIN}:{node.s3_port}"
    hs = {"Host": host}
    hs.update(headers or {})
    if body or method in ("PUT", "POST"):
        hs["Content-Length"] = str(len(body))
    req = AWSRequest(method=method, url=f"http://{host}{path}" + (f"?{query}" if query else ""), headers=hs, data=body)
    S3SigV4Auth(Credentials(ACCESS_KEY, secret_key), "s3", REGION).add_auth(req)
    raw = build_request(method, path + (f"?{query}" if query else ""), dict(req.headers.items()), body)
    with RawConn(node, timeout=30) as c:
        c.send(raw)
        return c.read_response(head_only=(method == "HEAD"))


def curl(url, *resolve):
    args = ["curl", "-sS", "--noproxy", "*", "-o", "-", "-w", "\n%{http_code}"]
    for r in resolve:
        args += ["--resolve", r]
    p = subprocess.run(args + [url], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    out, _, code = p.stdout.rpartition(b"\n")
    return int(code), out


def test_virtual_hosted_raw_requests(start_node):
    """With s3.domains = ["s3.test.local"], Host BUCKET.s3.test.local:PORT
    names the bucket and the whole path is the key: PUT, GET, HEAD, GET /
    (ListObjects, also ?list-type=2&prefix=), DELETE, and PUT / creating a
    bucket; a path-style request (Host 127.0.0.1) still works; a wrong
    signature is refused."""
    node = vhost_node(start_node)
    s3 = node.client()
    s3.create_bucket(Bucket="vbucket")
    body = data(BLOCK + 9, seed=161)
    r = vhost_request(node, "vbucket", "PUT", "/dir/v%20key.bin", body=body, headers={"x-amz-meta-how": "vhost"})
    assert r.status == 200, r.text
    assert r.header("etag") == f'"{md5_hex(body)}"'
    r = vhost_request(node, "vbucket", "GET", "/dir/v%20key.bin")
    assert r.status == 200, r.text
    assert r.body == body
    assert r.header("x-amz-meta-how") == "vhost"
    r = vhost_request(node, "vbucket", "HEAD", "/dir/v%20key.bin")
    assert r.status == 200 and int(r.header("content-length")) == len(body)
    # The same object through path style.
    assert s3.get_object(Bucket="vbucket", Key="dir/v key.bin")["Body"].read() == body

    r = vhost_request(node, "vbucket", "GET", "/")
    assert r.status == 200, r.text
    assert b"<Key>dir/v key.bin</Key>" in r.body
    assert b"<Name>vbucket</Name>" in r.body
    r = vhost_request(node, "vbucket", "GET", "/", query="list-type=2&prefix=dir%2F")
    assert r.status == 200, r.text
    assert b"<Key>dir/v key.bin</Key>" in r.body and b"<KeyCount>1</KeyCount>" in r.body
    r = vhost_request(node, "vbucket", "HEAD", "/")
    assert r.status == 200

    r = vhost_request(node, "vbucket", "GET", "/dir/v%20key.bin", secret_key="wrong")
    assert r.status == 403 and r.error_code() == "SignatureDoesNotMatch", r.text

    r = vhost_request(node, "made-by-vhost", "PUT", "/")
    assert r.status == 200, r.text
    assert "made-by-vhost" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    r = vhost_request(node, "made-by-vhost", "PUT", "/k", body=b"in the new bucket")
    assert r.status == 200, r.text
    assert s3.get_object(Bucket="made-by-vhost", Key="k")["Body"].read() == b"in the new bucket"

    r = vhost_request(node, "vbucket", "DELETE", "/dir/v%20key.bin")
    assert r.status == 204, r.text
    assert_missing(s3, "vbucket", "dir/v key.bin")
    r = vhost_request(node, "no-such-vbucket", "GET", "/k")
    assert r.status == 404 and r.error_code() == "NoSuchBucket", r.text


def test_virtual_hosted_presigned_urls_with_curl(start_node):
    """Presigned URLs made by boto3 for endpoint http://s3.test.local:PORT
    with virtual addressing (SigV4, and SigV2), fetched with
    `curl --resolve BUCKET.s3.test.local:PORT:127.0.0.1`."""
    node = vhost_node(start_node)
    s3 = node.client()
    s3.create_bucket(Bucket="vbucket")
    body = data(BLOCK + 99, seed=171)
    s3.put_object(Bucket="vbucket", Key="pre/signed obj", Body=body)
    resolve = f"vbucket.{DOMAIN}:{node.s3_port}:127.0.0.1"
    for sv in ("s3v4", "s3"):
        c = s3_client(f"http://{DOMAIN}:{node.s3_port}", signature_version=sv, s3={"addressing_style": "virtual"})
        url = c.generate_presigned_url("get_object", Params={"Bucket": "vbucket", "Key": "pre/signed obj"}, ExpiresIn=300)
        assert url.startswith(f"http://vbucket.{DOMAIN}:{node.s3_port}/pre/signed%20obj?"), url
        code, got = curl(url, resolve)
        assert code == 200, (sv, got[:300])
        assert got == body, sv
        # Another key with the same signature is refused.
        code, got = curl(url.replace("/pre/signed%20obj?", "/pre/other?"), resolve)
        assert code == 403, sv


def test_virtual_hosted_boto3(start_node, monkeypatch):
    """boto3 with virtual addressing against http://s3.test.local:PORT (the
    names resolved to 127.0.0.1 inside this process): put, get, list,
    copy, tagging, multipart, delete; and path style against the bare
    domain still works."""
    node = vhost_node(start_node)
    real = socket.getaddrinfo

    def resolve(host, *a, **k):
        if isinstance(host, str) and (host == DOMAIN or host.endswith("." + DOMAIN)):
            host = "127.0.0.1"
        return real(host, *a, **k)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    endpoint = f"http://{DOMAIN}:{node.s3_port}"
    v = s3_client(endpoint, s3={"addressing_style": "virtual"})
    p = s3_client(endpoint, s3={"addressing_style": "path"})
    v.create_bucket(Bucket="vboto")
    body = data(3 * BLOCK + 1, seed=181)
    v.put_object(Bucket="vboto", Key="a/b c", Body=body, Tagging="t=1")
    assert v.get_object(Bucket="vboto", Key="a/b c")["Body"].read() == body
    assert p.get_object(Bucket="vboto", Key="a/b c")["Body"].read() == body
    assert [o["Key"] for o in v.list_objects_v2(Bucket="vboto")["Contents"]] == ["a/b c"]
    v.copy_object(Bucket="vboto", Key="copy", CopySource={"Bucket": "vboto", "Key": "a/b c"})
    assert v.get_object(Bucket="vboto", Key="copy")["Body"].read() == body
    assert tags_of(v, "vboto", "copy") == {"t": "1"}
    parts = [data(5 * MiB, seed=182), data(7, seed=183)]
    put_multipart(v, "vboto", "mp", parts)
    assert v.get_object(Bucket="vboto", Key="mp")["Body"].read() == b"".join(parts)
    v.delete_object(Bucket="vboto", Key="copy")
    assert sorted(o["Key"] for o in p.list_objects_v2(Bucket="vboto")["Contents"]) == ["a/b c", "mp"]
    assert "vboto" in [b["Name"] for b in v.list_buckets()["Buckets"]]


# ---------------------------------------------------------------- more edges


def test_copy_special_keys_and_checksums(s3, bucket):
    """Keys with spaces, '+', '%', unicode and '/' as copy sources (boto3
    URL-encodes x-amz-copy-source); the copy of a CRC32-checksummed object
    keeps the CRC32; an unknown metadata directive is InvalidArgument."""
    keys = ["dir/sp ace+plus%pct/ü.bin", "a+b=c&d?e#f", "~tilde!*'()"]
    for i, k in enumerate(keys):
        body = data(1000 + i, seed=200 + i)
        s3.put_object(Bucket=bucket, Key=k, Body=body, ChecksumAlgorithm="CRC32")
        s3.copy_object(Bucket=bucket, Key=f"copy/{k}", CopySource={"Bucket": bucket, "Key": k})
        h = s3.head_object(Bucket=bucket, Key=f"copy/{k}", ChecksumMode="ENABLED")
        assert h.get("ChecksumCRC32") == crc32_b64(body), k
        assert s3.get_object(Bucket=bucket, Key=f"copy/{k}")["Body"].read() == body, k
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="bogus", CopySource={"Bucket": bucket, "Key": keys[0]}, MetadataDirective="BOGUS")
    assert (error_code(e.value), http_status(e.value)) == ("InvalidArgument", 400)
    assert_missing(s3, bucket, "bogus")


def test_tags_follow_the_version(s3, bucket):
    """An overwrite without x-amz-tagging drops the tags; a copy with
    MetadataDirective=REPLACE keeps the source's tags (tags have their own
    directive); TaggingDirective=REPLACE without x-amz-tagging leaves none."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"v1", Tagging="a=1")
    s3.put_object(Bucket=bucket, Key="k", Body=b"v2")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    s3.put_object(Bucket=bucket, Key="src", Body=b"s", Tagging="keep=yes")
    s3.copy_object(Bucket=bucket, Key="meta-replaced", CopySource={"Bucket": bucket, "Key": "src"}, MetadataDirective="REPLACE", Metadata={"m": "1"})
    assert tags_of(s3, bucket, "meta-replaced") == {"keep": "yes"}
    s3.copy_object(Bucket=bucket, Key="tags-cleared", CopySource={"Bucket": bucket, "Key": "src"}, TaggingDirective="REPLACE")
    assert tags_of(s3, bucket, "tags-cleared") == {}
    assert "x-amz-tagging-count" not in hdrs(s3.head_object(Bucket=bucket, Key="tags-cleared"))


def test_get_part_number_errors(s3, bucket):
    """partNumber together with a Range is InvalidRequest; partNumber=0 or
    not a number is InvalidArgument."""
    put_multipart(s3, bucket, "mp", [data(5 * MiB, seed=210), data(10, seed=211)])
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="mp", PartNumber=1, Range="bytes=0-9")
    assert (error_code(e.value), http_status(e.value)) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="mp", PartNumber=0)
    assert (error_code(e.value), http_status(e.value)) == ("InvalidArgument", 400)


def test_virtual_hosted_sigv2_boto3(start_node, monkeypatch):
    """SigV2 (botocore HmacV1) with virtual-hosted addressing: the canonical
    resource is /BUCKET + path; put, get, list, delete work."""
    node = vhost_node(start_node)
    real = socket.getaddrinfo

    def resolve(host, *a, **k):
        if isinstance(host, str) and (host == DOMAIN or host.endswith("." + DOMAIN)):
            host = "127.0.0.1"
        return real(host, *a, **k)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    node.client().create_bucket(Bucket="v2host")
    v = s3_client(f"http://{DOMAIN}:{node.s3_port}", signature_version="s3", s3={"addressing_style": "virtual"})
    v.put_object(Bucket="v2host", Key="k y", Body=b"v2 vhost")
    assert v.get_object(Bucket="v2host", Key="k y")["Body"].read() == b"v2 vhost"
    assert [o["Key"] for o in v.list_objects_v2(Bucket="v2host")["Contents"]] == ["k y"]
    v.delete_object(Bucket="v2host", Key="k y")
    assert v.list_objects_v2(Bucket="v2host")["KeyCount"] == 0


def test_copy_if_none_match(s3, bucket):
    """CopyObject with If-None-Match: * (a condition on the destination)
    is 412 when the destination exists, which keeps its content, and
    copies onto a new key."""
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    s3.put_object(Bucket=bucket, Key="taken", Body=b"already here")
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="taken", CopySource={"Bucket": bucket, "Key": "src"}, IfNoneMatch="*")
    assert (error_code(e.value), http_status(e.value)) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=bucket, Key="taken")["Body"].read() == b"already here"
    s3.copy_object(Bucket=bucket, Key="free", CopySource={"Bucket": bucket, "Key": "src"}, IfNoneMatch="*")
    assert s3.get_object(Bucket=bucket, Key="free")["Body"].read() == b"source"


def test_concurrent_create_if_none_match_has_one_winner(node, bucket):
    """Eight clients race to create one key with If-None-Match: *: exactly
    one succeeds, the others get 412, and the object is the winner's."""
    import threading

    bodies = [data(BLOCK + i, seed=300 + i) for i in range(8)]
    results = [None] * len(bodies)
    start = threading.Barrier(len(bodies))

    def put(i):
        c = node.client()
        start.wait()
        try:
            c.put_object(Bucket=bucket, Key="race", Body=bodies[i], IfNoneMatch="*")
            results[i] = 200
        except ClientError as e:
            results[i] = http_status(e)

    ts = [threading.Thread(target=put, args=(i,)) for i in range(len(bodies))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert sorted(results) == [200] + [412] * (len(bodies) - 1), results
    winner = results.index(200)
    assert node.client().get_object(Bucket=bucket, Key="race")["Body"].read() == bodies[winner]


def test_if_match_compare_and_swap_loses_no_update(node, bucket):
    """Four clients each add 5 to a counter object with read / If-Match
    write loops: no update is lost (the final value is 20)."""
    import threading

    node.client().put_object(Bucket=bucket, Key="counter", Body=b"0")
    errors = []

    def worker():
        c = node.client()
        for _ in range(5):
            for _attempt in range(200):
                g = c.get_object(Bucket=bucket, Key="counter")
                n = int(g["Body"].read())
                try:
                    c.put_object(Bucket=bucket, Key="counter", Body=str(n + 1).encode(), IfMatch=g["ETag"])
                    break
                except ClientError as e:
                    if http_status(e) != 412:
                        errors.append(e)
                        return
            else:
                errors.append("gave up after 200 attempts")
                return

    ts = [threading.Thread(target=worker) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert errors == []
    assert node.client().get_object(Bucket=bucket, Key="counter")["Body"].read() == b"20"


def test_tag_changes_racing_overwrites(node, bucket):
    """Tag changes racing overwrites of a block-sized object: every request
    succeeds (or is 503 SlowDown), and afterwards — also once the reclaim
    leeway has passed — the object is one of the written bodies, whole,
    its ETag matching, and its tags one whole tag set or none."""
    import threading

    bodies = [data(2 * BLOCK + i, seed=400 + i) for i in range(3)]
    node.client().put_object(Bucket=bucket, Key="hot", Body=bodies[0])
    tag_sets = [{"writer": str(i), "n": str(i * 10)} for i in range(4)]
    errors = []

    def tagger(i):
        c = node.client()
        for _ in range(5):
            try:
                c.put_object_tagging(Bucket=bucket, Key="hot", Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tag_sets[i].items()]})
            except ClientError as e:
                if http_status(e) != 503:
                    errors.append(e)

    def writer():
        c = node.client()
        for b in bodies[1:] * 2:
            c.put_object(Bucket=bucket, Key="hot", Body=b)

    ts = [threading.Thread(target=tagger, args=(i,)) for i in range(len(tag_sets))] + [threading.Thread(target=writer)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert errors == []
    for _ in range(2):
        c = node.client()
        g = c.get_object(Bucket=bucket, Key="hot")
        got = g["Body"].read()
        assert got in bodies
        assert g["ETag"] == f'"{md5_hex(got)}"'
        t = tags_of(c, bucket, "hot")
        assert t == {} or t in tag_sets, t
        time.sleep(RECLAIM_WAIT)


def test_copy_of_an_empty_object_written_with_blocks(node, s3, bucket):
    """A chunked PUT of unknown length and no bytes stores an empty object
    that names an (empty) upload rather than inline data; copying it gives
    an empty object (an edge where a copy's last byte, size - 1, does not
    exist)."""
    from dpnode import RawConn, build_request, http_chunked, sign_headers

    path = f"/{bucket}/empty-chunked"
    hs = sign_headers(node, "PUT", path, body=b"")
    hs["Transfer-Encoding"] = "chunked"
    with RawConn(node) as c:
        c.send(build_request("PUT", path, hs, http_chunked(b"")))
        r = c.read_response()
    assert r.status == 200, r.text
    s3.copy_object(Bucket=bucket, Key="empty-copy", CopySource={"Bucket": bucket, "Key": "empty-chunked"})
    got = s3.get_object(Bucket=bucket, Key="empty-copy")
    assert got["ContentLength"] == 0 and got["Body"].read() == b""
    assert node.alive()
