"""The new write operations replicate like any other write: CopyObject,
an UploadPartCopy-assembled multipart object, a tag change and the stored
standard headers written on dc1 arrive on dc2 (realtime replication through
dc1's admin API), byte-exact, with their tags and headers; a copy on dc2
stays whole after its source is deleted on dc1."""

import json
import time
import urllib.error
import urllib.request

from botocore.exceptions import ClientError

from dpnode import MiB, data, md5_hex, wait_until

REPL_TIMEOUT = 60.0


def admin_post(node, path, body):
    req = urllib.request.Request(
        f"http://{node.admin_addr}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def replicate(src, sink):
    """Makes `sink` a sink of `src` and starts realtime replication to it
    (what demo.rs `replicate_to` does)."""
    for path, body in [
        ("/repl/connect", {"addr": f"127.0.0.1:{sink.repl_port}"}),
        ("/repl/realtime/enable", {"sink": sink.name}),
        ("/repl/realtime/start", {"sink": sink.name}),
    ]:
        st, answer = admin_post(src, path, body)
        assert st == 200, (path, st, answer)


def read_or_none(s3, bucket, key, **kw):
    try:
        r = s3.get_object(Bucket=bucket, Key=key, **kw)
        return r, r["Body"].read()
    except ClientError:
        return None, None


def arrives(s3, bucket, key, body, timeout=REPL_TIMEOUT):
    """Waits until `key` reads as exactly `body` on `s3`; returns the GET."""
    found = {}

    def check():
        r, got = read_or_none(s3, bucket, key)
        if got == body:
            found["r"] = r
            return True
        return False

    assert wait_until(check, timeout=timeout, interval=0.25), f"{bucket}/{key} did not arrive byte-exact within {timeout}s (last: {read_or_none(s3, bucket, key)[1] and 'other bytes'})"
    return found["r"]


def tags(s3, bucket, key):
    try:
        return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}
    except ClientError:
        return None


def test_copies_tags_and_headers_replicate(start_node):
    """On dc1: a CopyObject of a 3 MiB object, a multipart object assembled
    with UploadPartCopy, a PutObjectTagging, a put with Cache-Control (and
    other stored headers). dc2 gets the copy byte-exact with dc1's ETag,
    the multipart object byte-exact, the tags, and the headers; the copy on
    dc2 does not depend on its source (deleted on dc1, the deletion
    replicated, the reclaim leeway waited out)."""
    dc1 = start_node("dc1")
    dc2 = start_node("dc2")
    replicate(dc1, dc2)
    s1, s2 = dc1.client(), dc2.client()

    s1.create_bucket(Bucket="repl")

    def bucket_on_dc2():
        try:
            s2.head_bucket(Bucket="repl")
            return True
        except ClientError:
            return False

    assert wait_until(bucket_on_dc2, timeout=REPL_TIMEOUT, interval=0.25), "the bucket did not replicate to dc2"

    # CopyObject of a 3 MiB object.
    src = data(3 * MiB, seed=1)
    s1.put_object(Bucket="repl", Key="src", Body=src, Metadata={"origin": "dc1"}, ContentType="text/x-src")
    copy_etag = s1.copy_object(Bucket="repl", Key="copy", CopySource={"Bucket": "repl", "Key": "src"})["CopyObjectResult"]["ETag"]
    assert copy_etag == f'"{md5_hex(src)}"'

    # A multipart object whose parts are copied from a 6 MiB object.
    six = data(6 * MiB, seed=2)
    s1.put_object(Bucket="repl", Key="six", Body=six)
    up = s1.create_multipart_upload(Bucket="repl", Key="assembled")["UploadId"]
    done = []
    for n, rng in ((1, "bytes=0-5242879"), (2, f"bytes=5242880-{len(six) - 1}")):
        r = s1.upload_part_copy(Bucket="repl", Key="assembled", UploadId=up, PartNumber=n, CopySource={"Bucket": "repl", "Key": "six"}, CopySourceRange=rng)
        done.append({"PartNumber": n, "ETag": r["CopyPartResult"]["ETag"]})
    mp_etag = s1.complete_multipart_upload(Bucket="repl", Key="assembled", UploadId=up, MultipartUpload={"Parts": done})["ETag"]

    # A tag change (a new version of the manifest, same blocks).
    tagged = data(2 * MiB + 5, seed=3)
    s1.put_object(Bucket="repl", Key="tagged", Body=tagged)
    s1.put_object_tagging(Bucket="repl", Key="tagged", Tagging={"TagSet": [{"Key": "team", "Value": "storage"}, {"Key": "tier", "Value": "gold"}]})

    # Stored standard headers.
    s1.put_object(Bucket="repl", Key="cached", Body=b"cache me", CacheControl="max-age=86400", ContentDisposition="inline", ContentLanguage="sv", Tagging="h=1")

    g = arrives(s2, "repl", "copy", src)
    assert g["ETag"] == copy_etag
    assert g["Metadata"] == {"origin": "dc1"}
    assert g["ContentType"] == "text/x-src"

    g = arrives(s2, "repl", "assembled", six)
    assert g["ETag"] == mp_etag

    arrives(s2, "repl", "tagged", tagged)
    want = {"team": "storage", "tier": "gold"}
    assert wait_until(lambda: tags(s2, "repl", "tagged") == want, timeout=REPL_TIMEOUT, interval=0.25), tags(s2, "repl", "tagged")
    assert s2.head_object(Bucket="repl", Key="tagged")["ResponseMetadata"]["HTTPHeaders"].get("x-amz-tagging-count") == "2"

    g = arrives(s2, "repl", "cached", b"cache me")
    assert g.get("CacheControl") == "max-age=86400"
    assert g.get("ContentDisposition") == "inline"
    assert g.get("ContentLanguage") == "sv"
    assert tags(s2, "repl", "cached") == {"h": "1"}

    # The copies do not depend on their sources, on either site.
    s1.delete_object(Bucket="repl", Key="src")
    s1.delete_object(Bucket="repl", Key="six")

    def gone_on_dc2():
        return read_or_none(s2, "repl", "src")[0] is None and read_or_none(s2, "repl", "six")[0] is None

    assert wait_until(gone_on_dc2, timeout=REPL_TIMEOUT, interval=0.25), "the deletions did not replicate"
    time.sleep(3.0)  # longer than the reclaim leeway (1.5 s)
    for s in (s1, s2):
        assert s.get_object(Bucket="repl", Key="copy")["Body"].read() == src
        assert s.get_object(Bucket="repl", Key="assembled")["Body"].read() == six
        assert s.get_object(Bucket="repl", Key="tagged")["Body"].read() == tagged

    # A later tag removal replicates too and keeps the object.
    s1.delete_object_tagging(Bucket="repl", Key="tagged")
    assert wait_until(lambda: tags(s2, "repl", "tagged") == {}, timeout=REPL_TIMEOUT, interval=0.25), tags(s2, "repl", "tagged")
    time.sleep(3.0)
    assert s2.get_object(Bucket="repl", Key="tagged")["Body"].read() == tagged
