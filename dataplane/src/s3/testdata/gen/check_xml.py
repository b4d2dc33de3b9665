#!/usr/bin/env python3
# Feeds the Rust renderers' XML to real boto3 (full parse + handlers) via a
# before-send hook, and prints what boto3 makes of it.
import sys, os, boto3, json
from botocore.awsrequest import AWSResponse
D = sys.argv[1]
s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
current = {}
class Raw:
    def __init__(self, b): self.b = b
    def stream(self, **kw): yield self.b
def hook(request, **kw):
    body = open(os.path.join(D, current["file"]), "rb").read()
    return AWSResponse(request.url, current.get("status", 200), {"x-amz-request-id": "r"}, Raw(body))
s3.meta.events.register("before-send.s3.*", hook)
def call(file, fn, **kw):
    current["file"] = file
    r = fn(**kw); r.pop("ResponseMetadata", None)
    print(f"== {file}: {r!r}")
    return r
r = call("ListObjectsV2.xml", s3.list_objects_v2, Bucket="b")
assert r["Contents"][0]["Key"] == "a&b <c> ü+x y" and r["Contents"][0]["ETag"] == '"abc"' and r["KeyCount"] == 3 and r["IsTruncated"] is True
assert r["Contents"][0]["LastModified"].isoformat() == "2024-01-01T00:00:00.123000+00:00"
r = call("ListObjectsV2url.xml", s3.list_objects_v2, Bucket="b")  # botocore adds encoding-type=url itself and decodes
assert r["Contents"][0]["Key"] == "a&b <c> ü+x y", r["Contents"][0]["Key"]
assert r["Prefix"] == "p ü/" and r["CommonPrefixes"][0]["Prefix"] == "p ü/q+r/"
r = call("ListObjects.xml", s3.list_objects, Bucket="b")
assert r["NextMarker"] == "n" and r["Contents"][1]["Owner"]["ID"] == "oid"
r = call("ListBuckets.xml", s3.list_buckets)
assert r["Buckets"][0]["Name"] == "b1"
r = call("CreateMultipartUpload.xml", s3.create_multipart_upload, Bucket="b", Key="k")
assert r["UploadId"] == "up1"
r = call("CompleteMultipartUpload.xml", s3.complete_multipart_upload, Bucket="b", Key="k", UploadId="u", MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": "x"}]})
assert r["ETag"] == '"e-2"' and r["ChecksumCRC32"] == "AAAAAA==-2"
r = call("ListParts.xml", s3.list_parts, Bucket="b", Key="k", UploadId="u")
assert r["Parts"][0]["PartNumber"] == 1 and r["NextPartNumberMarker"] == 1 and r["Parts"][0]["ChecksumCRC32"] == "AAAAAA=="
r = call("ListMultipartUploads.xml", s3.list_multipart_uploads, Bucket="b")
assert r["Uploads"][0]["UploadId"] == "u"
r = call("DeleteObjects.xml", s3.delete_objects, Bucket="b", Delete={"Objects": [{"Key": "d1"}]})
assert r["Deleted"][0] == {"Key": "d1", "VersionId": "v"} and r["Errors"][0]["Code"] == "AccessDenied"
r = call("CopyObject.xml", s3.copy_object, Bucket="b", Key="k", CopySource="b/x")
assert r["CopyObjectResult"]["ETag"] == '"abc"'
r = call("UploadPartCopy.xml", s3.upload_part_copy, Bucket="b", Key="k", CopySource="b/x", UploadId="u", PartNumber=1)
assert r["CopyPartResult"]["ETag"] == '"abc"'
r = call("GetBucketLocation.xml", s3.get_bucket_location, Bucket="b")
assert r["LocationConstraint"] == "eu-west-3"
r = call("GetBucketLocationUsEast1.xml", s3.get_bucket_location, Bucket="b")
assert r["LocationConstraint"] is None
current["status"] = 404
try:
    call("Error.xml", s3.get_object, Bucket="b", Key="k")
    raise SystemExit("no error")
except s3.exceptions.NoSuchKey as e:
    print("== Error.xml:", e.response["Error"])
    assert e.response["Error"]["Code"] == "NoSuchKey" and e.response["Error"]["Key"] == "k"
print("ALL OK")
