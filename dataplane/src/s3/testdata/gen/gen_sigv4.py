#!/usr/bin/env python3
# Generates SigV4 test vectors with the real botocore signers at a fixed time.
# Output: one record per line: name|now_unix|payload|base64(raw request head + body)
import base64, datetime, hashlib, sys
from unittest import mock
from urllib.parse import quote, urlsplit
import botocore.auth
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

AK, SK = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
creds = Credentials(AK, SK)
fixed = datetime.datetime(2024, 1, 2, 3, 4, 5)
NOW = int(fixed.replace(tzinfo=datetime.timezone.utc).timestamp())

class FixedDT(datetime.datetime):
    @classmethod
    def utcnow(cls): return fixed
    @classmethod
    def now(cls, tz=None): return fixed.replace(tzinfo=tz) if tz else fixed

def qenc(s): return quote(s, safe="-_.~")
def key_path(bucket, key): return "/" + bucket + "/" + quote(key, safe="/~")
def query(pairs):
    return "&".join(qenc(k) if v is None else f"{qenc(k)}={qenc(v)}" for k, v in pairs)

out = []
def raw_of(req, body):
    parts = urlsplit(req.url)
    target = parts.path or "/"
    if parts.query: target += "?" + parts.query
    lines = [f"{req.method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
    for k, v in req.headers.items():
        lines.append(f"{k}: {v}")
    if body: lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

def header_vec(name, method, url, headers=(), body=b"", region="us-east-1", sign_payload=True):
    req = AWSRequest(method=method, url=url, data=body)
    import types
    req.context["client_config"] = types.SimpleNamespace(s3={"payload_signing_enabled": sign_payload})
    for k, v in headers: req.headers[k] = v   # note: appends (duplicates kept)
    with mock.patch.object(botocore.auth.datetime, "datetime", FixedDT):
        S3SigV4Auth(creds, "s3", region).add_auth(req)
    payload = req.headers["X-Amz-Content-SHA256"]
    out.append((name, NOW, payload, raw_of(req, body)))

def presign_vec(name, method, url, expires=3600, headers=(), region="us-east-1"):
    req = AWSRequest(method=method, url=url)
    for k, v in headers: req.headers[k] = v
    with mock.patch.object(botocore.auth.datetime, "datetime", FixedDT):
        S3SigV4QueryAuth(creds, "s3", region, expires=expires).add_auth(req)
    out.append((name, NOW + 60, "UNSIGNED-PAYLOAD", raw_of(req, b"")))

H = "http://127.0.0.1:9000"
S = "https://s3.example.com"
uk = "dir/my file+ü 日本語.txt"
header_vec("get_unicode_key_range", "GET", H + key_path("test-bucket", uk), [("Range", "bytes=0-9")])
header_vec("put_key_specials", "PUT", H + key_path("test-bucket", "a b/c+d=e&f~g*h'i(j)k!l$m,n;o:p@q%r#s?t"),
           [("Content-Type", "text/plain"), ("X-Amz-Meta-Spaces", "  a   b \t c  "), ("x-amz-meta-dup", "one"), ("x-amz-meta-dup", "two  three"),
            ("Content-MD5", base64.b64encode(hashlib.md5(b"payload!").digest()).decode())], b"payload!")
header_vec("list_v2_many_params", "GET", H + "/test-bucket?" + query([("list-type", "2"), ("prefix", "photos/2024 ü+"), ("delimiter", "/"),
           ("max-keys", "50"), ("continuation-token", "abc/def+==="), ("encoding-type", "url"), ("start-after", "photos/a~b")]))
header_vec("initiate_mpu_bare_param", "POST", H + key_path("test-bucket", "big object.bin") + "?uploads", [("Content-Type", "application/octet-stream")])
header_vec("delete_objects_post", "POST", H + "/test-bucket?delete", [("Content-MD5", base64.b64encode(hashlib.md5(b"<Delete/>").digest()).decode())], b"<Delete/>")
header_vec("list_buckets", "GET", H + "/")
header_vec("head_bucket_other_region", "HEAD", H + "/test-bucket", region="eu-west-3")
header_vec("repeated_query_keys", "GET", H + "/test-bucket?" + query([("z", "1"), ("a", "2"), ("a", "1"), ("A", "0"), ("empty", "")]))
header_vec("put_unsigned_payload_https", "PUT", S + key_path("test-bucket", "unsigned.txt"), body=b"hello", sign_payload=False)
header_vec("double_slash_dot_segments", "GET", H + "/test-bucket//a/./b/../c")
header_vec("upload_part_query", "PUT", H + key_path("test-bucket", "mp key") + "?" + query([("partNumber", "7"), ("uploadId", "VXBsb2FkIElE+/=")]), body=b"x" * 100)
presign_vec("presign_get_unicode", "GET", S + key_path("test-bucket", uk))
presign_vec("presign_put_part_week", "PUT", S + key_path("test-bucket", "mp key") + "?" + query([("partNumber", "3"), ("uploadId", "abc+/=")]), expires=604800)
presign_vec("presign_get_with_params_and_header", "GET", H + key_path("test-bucket", "a+b c") + "?" + query([("response-content-disposition", 'attachment; filename="x y.txt"'), ("versionId", "null")]),
            headers=[("X-Amz-Meta-Color", "blue")])
for name, now, payload, raw in out:
    print(f"{name}|{now}|{payload}|{base64.b64encode(raw).decode()}")
