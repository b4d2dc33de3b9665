"""Request routing by S3 sub-resource: no request can reach an operation it
does not name.

The bug this guards against: a request such as `PUT /b/k?retention` or
`DELETE /b?cors`, for an S3 operation the node does not implement, fell
through to the plain object or bucket operation (PutObject, DeleteObject,
DeleteBucket) and overwrote or deleted data. Here every S3 sub-resource is
sent with every method to a bucket (a populated one and an empty one) and to
an object, SigV4-signed over a raw socket (PUT and POST carry the body
`<x/>`, so a fall-through to PutObject would overwrite the object with it).
After each request the test checks that nothing changed: both objects keep
their bytes, ETag and metadata, no key appeared, both buckets still exist,
no multipart upload was left behind.

Only the combinations the node serves may answer 2xx (GET ?location,
?versioning, ?uploads on a bucket; GET/PUT/DELETE ?tagging, GET ?attributes,
POST ?uploads on an object); every other one answers 501 NotImplemented (or
405 MethodNotAllowed) with a message naming what was refused.
"""

import datetime
import hashlib
import base64
import re
import uuid

import pytest
from botocore.exceptions import ClientError

from dpnode import BLOCK, data, error_code, http_status, md5_hex, simple_request

# The sub-resources of the S3 API (and one that does not exist).
SUBRESOURCES = [
    "acl",
    "attributes",
    "cors",
    "legal-hold",
    "lifecycle",
    "policy",
    "policyStatus",
    "restore",
    "retention",
    "select",
    "tagging",
    "torrent",
    "versioning",
    "versions",
    "website",
    "object-lock",
    "replication",
    "encryption",
    "notification",
    "ownershipControls",
    "publicAccessBlock",
    "intelligent-tiering",
    "analytics",
    "metrics",
    "inventory",
    "logging",
    "accelerate",
    "requestPayment",
    "metadataTable",
    "renameObject",
    "frobnicate",
]
# Sub-resources of the operations the node serves, walked too: used on the
# wrong resource or with the wrong method they must not fall through either.
SERVED_SUBRESOURCES = ["location", "uploads", "delete"]

METHODS = ["GET", "HEAD", "PUT", "POST", "DELETE"]

# (method, level, sub-resource) combinations the node serves.
SERVED = {
    ("GET", "bucket", "location"),
    ("GET", "bucket", "versioning"),
    ("GET", "bucket", "uploads"),
    ("POST", "bucket", "delete"),
    ("GET", "object", "tagging"),
    ("PUT", "object", "tagging"),
    ("DELETE", "object", "tagging"),
    ("GET", "object", "attributes"),
    ("POST", "object", "uploads"),
}

# The S3 API name(s) of each operation a (method, level, sub-resource)
# selects in S3 (any of them may be named; a GET of a configuration kind
# without an id is the List… operation in S3).
S3_OPERATIONS = {
    ("GET", "bucket", "acl"): ["GetBucketAcl"],
    ("PUT", "bucket", "acl"): ["PutBucketAcl"],
    ("GET", "bucket", "cors"): ["GetBucketCors"],
    ("PUT", "bucket", "cors"): ["PutBucketCors"],
    ("DELETE", "bucket", "cors"): ["DeleteBucketCors"],
    ("GET", "bucket", "lifecycle"): ["GetBucketLifecycleConfiguration", "GetBucketLifecycle"],
    ("PUT", "bucket", "lifecycle"): ["PutBucketLifecycleConfiguration", "PutBucketLifecycle"],
    ("DELETE", "bucket", "lifecycle"): ["DeleteBucketLifecycle"],
    ("GET", "bucket", "policy"): ["GetBucketPolicy"],
    ("PUT", "bucket", "policy"): ["PutBucketPolicy"],
    ("DELETE", "bucket", "policy"): ["DeleteBucketPolicy"],
    ("GET", "bucket", "policyStatus"): ["GetBucketPolicyStatus"],
    ("GET", "bucket", "tagging"): ["GetBucketTagging"],
    ("PUT", "bucket", "tagging"): ["PutBucketTagging"],
    ("DELETE", "bucket", "tagging"): ["DeleteBucketTagging"],
    ("PUT", "bucket", "versioning"): ["PutBucketVersioning"],
    ("GET", "bucket", "versions"): ["ListObjectVersions"],
    ("GET", "bucket", "website"): ["GetBucketWebsite"],
    ("PUT", "bucket", "website"): ["PutBucketWebsite"],
    ("DELETE", "bucket", "website"): ["DeleteBucketWebsite"],
    ("GET", "bucket", "object-lock"): ["GetObjectLockConfiguration"],
    ("PUT", "bucket", "object-lock"): ["PutObjectLockConfiguration"],
    ("GET", "bucket", "replication"): ["GetBucketReplication"],
    ("PUT", "bucket", "replication"): ["PutBucketReplication"],
    ("DELETE", "bucket", "replication"): ["DeleteBucketReplication"],
    ("GET", "bucket", "encryption"): ["GetBucketEncryption"],
    ("PUT", "bucket", "encryption"): ["PutBucketEncryption"],
    ("DELETE", "bucket", "encryption"): ["DeleteBucketEncryption"],
    ("GET", "bucket", "notification"): ["GetBucketNotificationConfiguration", "GetBucketNotification"],
    ("PUT", "bucket", "notification"): ["PutBucketNotificationConfiguration", "PutBucketNotification"],
    ("GET", "bucket", "ownershipControls"): ["GetBucketOwnershipControls"],
    ("PUT", "bucket", "ownershipControls"): ["PutBucketOwnershipControls"],
    ("DELETE", "bucket", "ownershipControls"): ["DeleteBucketOwnershipControls"],
    ("GET", "bucket", "publicAccessBlock"): ["GetPublicAccessBlock"],
    ("PUT", "bucket", "publicAccessBlock"): ["PutPublicAccessBlock"],
    ("DELETE", "bucket", "publicAccessBlock"): ["DeletePublicAccessBlock"],
    ("GET", "bucket", "intelligent-tiering"): ["ListBucketIntelligentTieringConfigurations", "GetBucketIntelligentTieringConfiguration"],
    ("PUT", "bucket", "intelligent-tiering"): ["PutBucketIntelligentTieringConfiguration"],
    ("DELETE", "bucket", "intelligent-tiering"): ["DeleteBucketIntelligentTieringConfiguration"],
    ("GET", "bucket", "logging"): ["GetBucketLogging"],
    ("PUT", "bucket", "logging"): ["PutBucketLogging"],
    ("GET", "bucket", "accelerate"): ["GetBucketAccelerateConfiguration"],
    ("PUT", "bucket", "accelerate"): ["PutBucketAccelerateConfiguration"],
    ("GET", "bucket", "requestPayment"): ["GetBucketRequestPayment"],
    ("PUT", "bucket", "requestPayment"): ["PutBucketRequestPayment"],
    ("GET", "bucket", "metadataTable"): ["GetBucketMetadataTableConfiguration"],
    ("POST", "bucket", "metadataTable"): ["CreateBucketMetadataTableConfiguration"],
    ("DELETE", "bucket", "metadataTable"): ["DeleteBucketMetadataTableConfiguration"],
    ("GET", "object", "acl"): ["GetObjectAcl"],
    ("PUT", "object", "acl"): ["PutObjectAcl"],
    ("GET", "object", "legal-hold"): ["GetObjectLegalHold"],
    ("PUT", "object", "legal-hold"): ["PutObjectLegalHold"],
    ("GET", "object", "retention"): ["GetObjectRetention"],
    ("PUT", "object", "retention"): ["PutObjectRetention"],
    ("POST", "object", "restore"): ["RestoreObject"],
    ("POST", "object", "select"): ["SelectObjectContent"],
    ("GET", "object", "torrent"): ["GetObjectTorrent"],
    ("PUT", "object", "renameObject"): ["RenameObject"],
}
for _kind in ("Analytics", "Metrics", "Inventory"):
    _sub = _kind.lower()
    S3_OPERATIONS[("GET", "bucket", _sub)] = [f"ListBucket{_kind}Configurations", f"GetBucket{_kind}Configuration"]
    S3_OPERATIONS[("PUT", "bucket", _sub)] = [f"PutBucket{_kind}Configuration"]
    S3_OPERATIONS[("DELETE", "bucket", _sub)] = [f"DeleteBucket{_kind}Configuration"]

TAGGING_XML = b'<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet><Tag><Key>walk</Key><Value>1</Value></Tag></TagSet></Tagging>'


def message_of(body: bytes) -> str:
    m = re.search(rb"<Message>(.*?)</Message>", body, re.S)
    return m.group(1).decode("utf-8", "replace") if m else ""


class Fixture:
    """A populated bucket (objects `k` and `other`, with metadata) and an
    empty bucket, and what they must still look like after any refused
    request."""

    def __init__(self, s3):
        self.s3 = s3
        tag = uuid.uuid4().hex[:12]
        self.b = f"walk-{tag}"
        self.empty = f"walk-empty-{tag}"
        s3.create_bucket(Bucket=self.b)
        s3.create_bucket(Bucket=self.empty)
        self.k_body = data(3000, seed=11)
        self.other_body = data(BLOCK + 3, seed=12)
        s3.put_object(Bucket=self.b, Key="k", Body=self.k_body, Metadata={"m": "k"}, ContentType="text/x-k")
        s3.put_object(Bucket=self.b, Key="other", Body=self.other_body, Metadata={"m": "other"}, ContentType="text/x-other")

    def problems(self, expect_tags=None) -> list:
        """What changed (empty list: nothing)."""
        s3, out = self.s3, []
        for key, body, meta, ct in [("k", self.k_body, {"m": "k"}, "text/x-k"), ("other", self.other_body, {"m": "other"}, "text/x-other")]:
            try:
                g = s3.get_object(Bucket=self.b, Key=key)
                got = g["Body"].read()
            except ClientError as e:
                out.append(f"object {key} is gone: {error_code(e)}")
                continue
            if got != body:
                out.append(f"object {key} has other bytes now ({len(got)} bytes, {got[:20]!r}…)")
            if g["ETag"] != f'"{md5_hex(body)}"':
                out.append(f"object {key} has ETag {g['ETag']}")
            if g["Metadata"] != meta or g["ContentType"] != ct:
                out.append(f"object {key} has metadata {g['Metadata']} / {g['ContentType']}")
        for b in (self.b, self.empty):
            try:
                s3.head_bucket(Bucket=b)
            except ClientError as e:
                out.append(f"bucket {b} is gone: {http_status(e)}")
        try:
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket=self.b).get("Contents", [])]
            if keys != ["k", "other"]:
                out.append(f"bucket {self.b} now lists {keys}")
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket=self.empty).get("Contents", [])]
            if keys:
                out.append(f"bucket {self.empty} now lists {keys}")
            ups = s3.list_multipart_uploads(Bucket=self.b).get("Uploads", [])
            if ups:
                out.append(f"multipart uploads appeared: {[(u['Key'], u['UploadId']) for u in ups]}")
        except ClientError as e:
            out.append(f"listing failed: {error_code(e)}")
        if expect_tags is not None:
            try:
                tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=self.b, Key="k")["TagSet"]}
                if tags != expect_tags:
                    out.append(f"object k has tags {tags}, expected {expect_tags}")
            except ClientError as e:
                out.append(f"get_object_tagging failed: {error_code(e)}")
        return out


def send(node, method, path, sub, body=None, headers=None):
    hs = dict(headers or {})
    if sub == "attributes":
        hs["x-amz-object-attributes"] = "ETag"
    if body is None:
        body = b"<x/>" if method in ("PUT", "POST") else b""
    return simple_request(node, method, path, body=body, query=sub, headers=hs)


def walk_targets(fx, level):
    if level == "object":
        return [f"/{fx.b}/k"]
    return [f"/{fx.b}", f"/{fx.empty}"]


@pytest.mark.parametrize("level", ["bucket", "object"])
@pytest.mark.parametrize("sub", SUBRESOURCES + SERVED_SUBRESOURCES)
def test_subresource_walk_changes_nothing(shared, sub, level):
    """Every method with `?SUB` on a bucket (populated and empty) or on an
    object: nothing changes (bytes, ETag, metadata, keys, buckets, uploads);
    only the served combinations answer 2xx, every other one answers 501
    NotImplemented or 405 MethodNotAllowed."""
    node = shared
    s3 = node.client()
    fx = Fixture(s3)
    failures = []
    tags = {}
    for path in walk_targets(fx, level):
        for method in METHODS:
            what = f"{method} {path}?{sub}"
            served = (method, level, sub) in SERVED
            body, headers = None, {}
            if served and (method, sub) != ("POST", "delete"):
                body = b""
            if served and (method, sub) == ("PUT", "tagging"):
                body = TAGGING_XML
                headers = {"Content-MD5": base64.b64encode(hashlib.md5(TAGGING_XML).digest()).decode()}
            r = send(node, method, path, sub, body, headers)
            if served:
                if (method, sub) == ("POST", "delete"):
                    # DeleteObjects with a body that is not a <Delete>
                    # document: refused, and nothing is deleted.
                    if not 400 <= r.status < 500:
                        failures.append(f"{what} (<x/>): {r.status} {r.error_code()}, expected a 4xx")
                elif not 200 <= r.status < 300:
                    failures.append(f"{what}: {r.status} {r.error_code()} {message_of(r.body)!r}, expected 2xx (served)")
                else:
                    if (method, sub) == ("PUT", "tagging"):
                        tags = {"walk": "1"}
                    elif (method, sub) == ("DELETE", "tagging"):
                        tags = {}
                    elif (method, sub) == ("GET", "attributes") and f"<ETag>{md5_hex(fx.k_body)}</ETag>".encode() not in r.body:
                        failures.append(f"{what}: no <ETag>{md5_hex(fx.k_body)}</ETag> in {r.text[:300]!r}")
                    elif (method, level, sub) == ("POST", "object", "uploads"):
                        m = re.search(rb"<UploadId>(.*?)</UploadId>", r.body)
                        assert m, r.text
                        s3.abort_multipart_upload(Bucket=fx.b, Key="k", UploadId=m.group(1).decode())
            else:
                if 200 <= r.status < 300:
                    failures.append(f"{what}: answered {r.status} (not a served operation)")
                elif r.status not in (501, 405):
                    failures.append(f"{what}: answered {r.status} {r.error_code()}, expected 501 or 405")
                elif method != "HEAD":
                    want = {501: "NotImplemented", 405: "MethodNotAllowed"}[r.status]
                    if r.error_code() != want:
                        failures.append(f"{what}: {r.status} with code {r.error_code()!r}, expected {want}")
            changed = fx.problems(expect_tags=tags if level == "object" else None)
            if changed:
                failures.append(f"after {what} ({r.status}): " + "; ".join(changed))
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("level", ["bucket", "object"])
@pytest.mark.parametrize("sub", SUBRESOURCES + SERVED_SUBRESOURCES)
def test_not_implemented_names_the_operation(shared, sub, level):
    """The 501 of a refused request says what was refused: the S3 API name
    of the operation (PutObjectRetention, DeleteBucketCors, …) when S3 has
    one for that method and sub-resource, else at least the sub-resource."""
    node = shared
    fx = Fixture(node.client())
    failures = []
    path = walk_targets(fx, level)[-1]
    for method in ["GET", "PUT", "POST", "DELETE"]:
        if (method, level, sub) in SERVED:
            continue
        r = send(node, method, path, sub)
        msg = message_of(r.body)
        what = f"{method} {path}?{sub}"
        if r.status == 405:
            continue
        if r.status != 501 or r.error_code() != "NotImplemented":
            failures.append(f"{what}: {r.status} {r.error_code()} {msg!r}, expected 501 NotImplemented")
            continue
        names = S3_OPERATIONS.get((method, level, sub))
        if names:
            if not any(n in msg for n in names):
                failures.append(f"{what}: message {msg!r} names none of {names}")
        elif sub not in msg:
            failures.append(f"{what}: message {msg!r} does not mention {sub!r}")
    assert not failures, "\n".join(failures)


def test_examples_from_the_routing_spec(node):
    """The two examples of the spec, exactly: PUT ?retention on an object
    names PutObjectRetention, DELETE ?cors on a bucket names
    DeleteBucketCors; both 501 NotImplemented."""
    s3 = node.client()
    s3.create_bucket(Bucket="spec")
    s3.put_object(Bucket="spec", Key="k", Body=b"keep me")
    r = send(node, "PUT", "/spec/k", "retention")
    assert (r.status, r.error_code()) == (501, "NotImplemented"), r.text
    assert "PutObjectRetention" in message_of(r.body)
    r = send(node, "DELETE", "/spec", "cors")
    assert (r.status, r.error_code()) == (501, "NotImplemented"), r.text
    assert "DeleteBucketCors" in message_of(r.body)
    assert s3.get_object(Bucket="spec", Key="k")["Body"].read() == b"keep me"


def test_boto3_calls_from_the_bug_report(node):
    """The boto3 calls that used to destroy data: DeleteObjectTagging leaves
    the object; PutObjectRetention and PutObjectLegalHold fail with
    NotImplemented and leave the bytes; DeleteBucketCors / Lifecycle /
    Policy / Tagging on an EMPTY bucket fail and leave the bucket."""
    s3 = node.client()
    s3.create_bucket(Bucket="report")
    body = data(2 * BLOCK + 9, seed=3)
    etag = s3.put_object(Bucket="report", Key="k", Body=body)["ETag"]

    r = s3.delete_object_tagging(Bucket="report", Key="k")
    assert r["ResponseMetadata"]["HTTPStatusCode"] in (200, 204)
    g = s3.get_object(Bucket="report", Key="k")
    assert g["Body"].read() == body and g["ETag"] == etag

    with pytest.raises(ClientError) as e:
        s3.put_object_retention(
            Bucket="report",
            Key="k",
            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)},
        )
    assert (error_code(e.value), http_status(e.value)) == ("NotImplemented", 501)
    with pytest.raises(ClientError) as e:
        s3.put_object_legal_hold(Bucket="report", Key="k", LegalHold={"Status": "ON"})
    assert (error_code(e.value), http_status(e.value)) == ("NotImplemented", 501)
    g = s3.get_object(Bucket="report", Key="k")
    assert g["Body"].read() == body and g["ETag"] == etag

    s3.create_bucket(Bucket="report-empty")
    for call in (s3.delete_bucket_cors, s3.delete_bucket_lifecycle, s3.delete_bucket_policy, s3.delete_bucket_tagging):
        with pytest.raises(ClientError) as e:
            call(Bucket="report-empty")
        assert (error_code(e.value), http_status(e.value)) == ("NotImplemented", 501), call.__name__
        s3.head_bucket(Bucket="report-empty")
    assert "report-empty" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    # The same calls on the populated bucket leave its object.
    for call in (s3.delete_bucket_cors, s3.delete_bucket_lifecycle, s3.delete_bucket_policy, s3.delete_bucket_tagging):
        with pytest.raises(ClientError):
            call(Bucket="report")
    assert s3.get_object(Bucket="report", Key="k")["Body"].read() == body


def test_served_bucket_subresources_answer(node):
    """GET ?versioning (never enabled: no Status), ?location and ?uploads
    are served through boto3."""
    s3 = node.client()
    s3.create_bucket(Bucket="served")
    v = s3.get_bucket_versioning(Bucket="served")
    assert "Status" not in v
    s3.get_bucket_location(Bucket="served")
    assert s3.list_multipart_uploads(Bucket="served").get("Uploads", []) == []
    with pytest.raises(ClientError) as e:
        s3.put_bucket_versioning(Bucket="served", VersioningConfiguration={"Status": "Enabled"})
    assert error_code(e.value) == "NotImplemented"
    with pytest.raises(ClientError) as e:
        s3.get_bucket_versioning(Bucket="no-such-bucket-here")
    assert error_code(e.value) == "NoSuchBucket"


def test_two_subresources_and_copy_source_on_tagging_are_refused(node):
    """A request naming two sub-resources (`?tagging&acl`) and a PUT
    ?tagging with x-amz-copy-source are refused without touching the
    object."""
    s3 = node.client()
    s3.create_bucket(Bucket="mixed")
    s3.put_object(Bucket="mixed", Key="k", Body=b"original")
    s3.put_object(Bucket="mixed", Key="src", Body=b"source")
    r = simple_request(node, "PUT", "/mixed/k", body=b"<x/>", query="acl&tagging")
    assert r.status == 501 and r.error_code() == "NotImplemented", r.text
    r = simple_request(node, "PUT", "/mixed/k", body=TAGGING_XML, query="tagging", headers={"x-amz-copy-source": "/mixed/src"})
    assert r.status == 501 and r.error_code() == "NotImplemented", r.text
    r = simple_request(node, "DELETE", "/mixed/k", query="frobnicate=1")
    assert r.status == 501, r.text
    g = s3.get_object(Bucket="mixed", Key="k")
    assert g["Body"].read() == b"original"
    assert s3.get_object_tagging(Bucket="mixed", Key="k")["TagSet"] == []


@pytest.mark.parametrize(
    "method,query",
    [
        ("PUT", "TAGGING"),
        ("PUT", "Retention"),
        ("PUT", "retention="),
        ("PUT", "retention=1"),
        ("PUT", "x-id=PutObjectRetention&retention"),
        ("PUT", "versionId=abc"),
        ("PUT", "acl&uploadId=abc"),
        ("DELETE", "versionId=abc"),
        ("DELETE", "versionId=null"),
        ("DELETE", "Tagging"),
        ("DELETE", "legal-hold="),
        ("DELETE", "tagging&uploadId=abc"),
        ("POST", ""),
        ("POST", "restore&select"),
        ("PATCH", ""),
    ],
)
def test_query_variants_do_not_fall_through(node, method, query):
    """Spellings a naive router might miss (other letter case, `name=` and
    `name=value`, an SDK's x-id next to the
    sub-resource, a versionId this node cannot honour, a sub-resource with
    an uploadId, two sub-resources, POST and PATCH without one) never reach
    PutObject or DeleteObject: the object keeps its bytes and ETag."""
    s3 = node.client()
    s3.create_bucket(Bucket="variants")
    body = data(BLOCK + 7, seed=4)
    etag = s3.put_object(Bucket="variants", Key="k", Body=body)["ETag"]
    r = simple_request(node, method, "/variants/k", body=b"<x/>" if method in ("PUT", "POST", "PATCH") else b"", query=query)
    assert not 200 <= r.status < 300, (r.status, r.text)
    assert r.status in (400, 405, 501), (r.status, r.text)
    g = s3.get_object(Bucket="variants", Key="k")
    assert g["Body"].read() == body
    assert g["ETag"] == etag
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="variants")["Contents"]] == ["k"]
    # The same on an empty bucket: it is still there.
    s3.create_bucket(Bucket="variants-empty")
    r = simple_request(node, method, "/variants-empty", body=b"<x/>" if method in ("PUT", "POST", "PATCH") else b"", query=query)
    assert not 200 <= r.status < 300, (r.status, r.text)
    s3.head_bucket(Bucket="variants-empty")


def test_served_object_subresources_refuse_bad_input(node):
    """PUT ?tagging with a body that is not a Tagging document is
    MalformedXML; GET ?attributes without x-amz-object-attributes, or with
    an unknown attribute, is InvalidArgument; neither changes the object."""
    s3 = node.client()
    s3.create_bucket(Bucket="bad-input")
    etag = s3.put_object(Bucket="bad-input", Key="k", Body=b"content", Tagging="keep=1")["ETag"]
    for bad in (b"<x/>", b"not xml at all", b"<Tagging><TagSet><Tag><Value>v</Value></Tag></TagSet></Tagging>"):
        r = simple_request(node, "PUT", "/bad-input/k", body=bad, query="tagging")
        assert (r.status, r.error_code()) == (400, "MalformedXML"), (bad, r.status, r.text)
    r = simple_request(node, "GET", "/bad-input/k", query="attributes")
    assert (r.status, r.error_code()) == (400, "InvalidArgument"), r.text
    r = simple_request(node, "GET", "/bad-input/k", query="attributes", headers={"x-amz-object-attributes": "ETag,Colour"})
    assert (r.status, r.error_code()) == (400, "InvalidArgument"), r.text
    g = s3.get_object(Bucket="bad-input", Key="k")
    assert g["Body"].read() == b"content" and g["ETag"] == etag
    assert s3.get_object_tagging(Bucket="bad-input", Key="k")["TagSet"] == [{"Key": "keep", "Value": "1"}]
