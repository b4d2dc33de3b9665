"""Checksums: flexible checksums as headers (boto3), Content-MD5, and
aws-chunked uploads with trailing checksums (hand-built, signed by botocore,
sent over a raw socket, as boto3 and the aws CLI send them over HTTPS)."""

import base64
import hashlib

import pytest
from botocore.exceptions import ClientError

from dpnode import (
    BLOCK,
    RawConn,
    aws_chunked,
    build_request,
    crc32_b64,
    data,
    error_code,
    http_chunked,
    http_status,
    md5_hex,
    sha256_b64,
    sign_headers,
    simple_request,
    wait_until,
)


@pytest.mark.parametrize("alg", ["CRC32", "SHA256", "SHA1"])  # CRC32C needs botocore[crt]
@pytest.mark.parametrize("size", [0, 100, BLOCK + 1])
def test_put_with_checksum_algorithm(s3, bucket, alg, size):
    body = data(size, seed=size)
    r = s3.put_object(Bucket=bucket, Key="c", Body=body, ChecksumAlgorithm=alg)
    assert r["ETag"] == f'"{md5_hex(body)}"'
    want = {"CRC32": crc32_b64, "SHA256": sha256_b64, "SHA1": lambda b: base64.b64encode(hashlib.sha1(b).digest()).decode()}[alg]
    assert r[f"Checksum{alg}"] == want(body)
    g = s3.get_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert g["Body"].read() == body  # botocore also validates the returned checksum
    assert g[f"Checksum{alg}"] == r[f"Checksum{alg}"]


def test_wrong_crc32_header_is_refused_and_not_stored(node, s3, bucket):
    before = node.storage_keys()
    for key, body in [("small", b"hello"), ("big", data(2 * BLOCK + 9, seed=1))]:
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=bucket, Key=key, Body=body, ChecksumCRC32=crc32_b64(b"something else"))
        assert http_status(e.value) == 400
        assert error_code(e.value) == "BadDigest"
        with pytest.raises(ClientError) as e:
            s3.head_object(Bucket=bucket, Key=key)
        assert http_status(e.value) == 404
    assert wait_until(lambda: node.storage_keys() <= before, timeout=10), (node.storage_keys(), before)


def test_wrong_sha256_header_is_refused(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"abc", ChecksumSHA256=sha256_b64(b"abd"))
    assert error_code(e.value) == "BadDigest"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")


def test_malformed_checksum_header(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"abc", ChecksumCRC32="not base64!")
    assert http_status(e.value) == 400
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")


def test_correct_content_md5(s3, bucket):
    body = data(BLOCK + 5, seed=3)
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    s3.put_object(Bucket=bucket, Key="k", Body=body, ContentMD5=md5)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == body


@pytest.mark.parametrize("size", [5, 3 * BLOCK + 1])
def test_wrong_content_md5(node, s3, bucket, size):
    before = node.storage_keys()
    body = data(size, seed=4)
    wrong = base64.b64encode(hashlib.md5(body + b"!").digest()).decode()
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=body, ContentMD5=wrong)
    assert http_status(e.value) == 400
    assert error_code(e.value) == "BadDigest"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=body, ContentMD5="definitely-not-an-md5")
    assert http_status(e.value) == 400
    assert error_code(e.value) in ("InvalidDigest", "BadDigest")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")
    assert wait_until(lambda: node.storage_keys() <= before, timeout=10)


def test_upload_part_with_wrong_checksum(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", ChecksumAlgorithm="CRC32")["UploadId"]
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=b"part body", ChecksumCRC32=crc32_b64(b"other"))
    assert error_code(e.value) == "BadDigest"
    assert s3.list_parts(Bucket=bucket, Key="mp", UploadId=up).get("Parts", []) == []
    r = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=b"part body", ChecksumAlgorithm="CRC32")
    assert r["ChecksumCRC32"] == crc32_b64(b"part body")


# ------------------------------------------------------- aws-chunked trailers


def chunked_put(node, bucket, key, payload, trailer_name, trailer_value, *, transfer_chunked, query="", extra_headers=None):
    """A PUT with Content-Encoding: aws-chunked and a trailing checksum,
    framed by Content-Length or (like boto3 over HTTPS) Transfer-Encoding:
    chunked."""
    body = aws_chunked(payload, trailer_name, trailer_value)
    headers = {
        "Content-Encoding": "aws-chunked",
        "X-Amz-Trailer": trailer_name,
        "X-Amz-Decoded-Content-Length": str(len(payload)),
        "x-amz-sdk-checksum-algorithm": trailer_name.rsplit("-", 1)[-1].upper(),
    }
    headers.update(extra_headers or {})
    if not transfer_chunked:
        headers["Content-Length"] = str(len(body))
    path = f"/{bucket}/{key}"
    signed = sign_headers(node, "PUT", path, query, headers, trailer=trailer_name)
    assert signed["X-Amz-Content-SHA256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert "x-amz-trailer" in signed["Authorization"]
    if transfer_chunked:
        signed["Transfer-Encoding"] = "chunked"
        wire_body = http_chunked(body, chunk=100_003)
    else:
        wire_body = body
    target = path + (f"?{query}" if query else "")
    with RawConn(node, timeout=30) as c:
        c.send(build_request("PUT", target, signed, wire_body))
        return c.read_response()


FRAMINGS = [False, True]
FRAMING_IDS = ["content-length", "transfer-chunked"]


@pytest.mark.parametrize("transfer_chunked", FRAMINGS, ids=FRAMING_IDS)
@pytest.mark.parametrize("size", [0, 1, 88000, 2 * BLOCK + 12345])
def test_aws_chunked_crc32_trailer_ok(s3, node, bucket, transfer_chunked, size):
    payload = data(size, seed=size + 1)
    r = chunked_put(node, bucket, "chunked", payload, "x-amz-checksum-crc32", crc32_b64(payload), transfer_chunked=transfer_chunked)
    assert r.status == 200, r.text
    assert r.header("etag") == f'"{md5_hex(payload)}"'
    g = s3.get_object(Bucket=bucket, Key="chunked", ChecksumMode="ENABLED")
    assert g["Body"].read() == payload
    assert g["ContentLength"] == size
    assert g["ChecksumCRC32"] == crc32_b64(payload)


@pytest.mark.parametrize("transfer_chunked", FRAMINGS, ids=FRAMING_IDS)
def test_aws_chunked_sha256_trailer_ok(s3, node, bucket, transfer_chunked):
    payload = data(300_000, seed=8)
    r = chunked_put(node, bucket, "sha", payload, "x-amz-checksum-sha256", sha256_b64(payload), transfer_chunked=transfer_chunked)
    assert r.status == 200, r.text
    g = s3.get_object(Bucket=bucket, Key="sha", ChecksumMode="ENABLED")
    assert g["Body"].read() == payload
    assert g["ChecksumSHA256"] == sha256_b64(payload)


@pytest.mark.parametrize("transfer_chunked", FRAMINGS, ids=FRAMING_IDS)
@pytest.mark.parametrize("size", [10, 2 * BLOCK + 12345])
def test_aws_chunked_wrong_trailer_is_refused(s3, node, bucket, transfer_chunked, size):
    before = node.storage_keys()
    payload = data(size, seed=size + 2)
    r = chunked_put(node, bucket, "bad", payload, "x-amz-checksum-crc32", crc32_b64(payload + b"x"), transfer_chunked=transfer_chunked)
    assert r.status == 400, r.text
    assert r.error_code() == "BadDigest"
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="bad")
    assert http_status(e.value) == 404
    # Blocks written before the trailer arrived are reclaimed.
    assert wait_until(lambda: node.storage_keys() <= before, timeout=10), (node.storage_keys(), before)


def test_aws_chunked_wrong_trailer_does_not_replace_existing(s3, node, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"original")
    payload = data(BLOCK + 1, seed=1)
    r = chunked_put(node, bucket, "k", payload, "x-amz-checksum-crc32", crc32_b64(b"nope"), transfer_chunked=True)
    assert r.status == 400
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"original"


@pytest.mark.parametrize("size,declared", [(1000, 999), (1000, 1001), (2 * BLOCK + 10, 2 * BLOCK), (2 * BLOCK, 2 * BLOCK + 10), (BLOCK, 100)])
@pytest.mark.parametrize("transfer_chunked", FRAMINGS, ids=FRAMING_IDS)
def test_aws_chunked_decoded_length_mismatch(s3, node, bucket, size, declared, transfer_chunked):
    before = node.storage_keys()
    payload = data(size, seed=1)
    r = chunked_put(
        node, bucket, "len", payload, "x-amz-checksum-crc32", crc32_b64(payload), transfer_chunked=transfer_chunked, extra_headers={"X-Amz-Decoded-Content-Length": str(declared)}
    )
    assert r.status == 400, r.text
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="len")
    assert wait_until(lambda: node.storage_keys() <= before, timeout=10), (node.storage_keys(), before)


def test_aws_chunked_upload_part_with_trailer(s3, node, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    p1 = data(5 * BLOCK + 3, seed=1)
    p2 = data(1234, seed=2)
    etags = []
    for n, p in ((1, p1), (2, p2)):
        r = chunked_put(node, bucket, "mp", p, "x-amz-checksum-crc32", crc32_b64(p), transfer_chunked=True, query=f"partNumber={n}&uploadId={up}")
        assert r.status == 200, r.text
        assert r.header("etag") == f'"{md5_hex(p)}"'
        etags.append(r.header("etag"))
    r = chunked_put(node, bucket, "mp", p2, "x-amz-checksum-crc32", crc32_b64(p1), transfer_chunked=True, query=f"partNumber=3&uploadId={up}")
    assert r.status == 400 and r.error_code() == "BadDigest"
    parts = s3.list_parts(Bucket=bucket, Key="mp", UploadId=up)["Parts"]
    assert [p["PartNumber"] for p in parts] == [1, 2]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etags[0]}, {"PartNumber": 2, "ETag": etags[1]}]})
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == p1 + p2


def test_plain_transfer_chunked_put(s3, node, bucket):
    """Transfer-Encoding: chunked without aws-chunked (x-amz-decoded-content-length
    gives the size), signed payload hash."""
    payload = data(BLOCK + 500, seed=3)
    path = f"/{bucket}/te"
    hs = sign_headers(node, "PUT", path, headers={"X-Amz-Decoded-Content-Length": str(len(payload))}, body=payload)
    hs["Transfer-Encoding"] = "chunked"
    with RawConn(node) as c:
        c.send(build_request("PUT", path, hs, http_chunked(payload, chunk=65536)))
        r = c.read_response()
    assert r.status == 200, r.text
    assert s3.get_object(Bucket=bucket, Key="te")["Body"].read() == payload


def test_checksum_survives_in_head(s3, node, bucket):
    payload = b"checksummed"
    r = simple_request(node, "PUT", f"/{bucket}/h", payload, headers={"x-amz-checksum-crc32": crc32_b64(payload)})
    assert r.status == 200
    assert r.header("x-amz-checksum-crc32") == crc32_b64(payload)
    h = s3.head_object(Bucket=bucket, Key="h", ChecksumMode="ENABLED")
    assert h["ChecksumCRC32"] == crc32_b64(payload)


# ---------------------------------------------- aws-chunked, signed chunks


@pytest.mark.parametrize("size", [0, 1000, 2 * BLOCK + 777])
def test_streaming_signed_chunks_ok(s3, node, bucket, size):
    from dpnode import streaming_signed_put

    payload = data(size, seed=size + 3)
    with RawConn(node, timeout=30) as c:
        c.send(streaming_signed_put(node, f"/{bucket}/signed", payload))
        r = c.read_response()
    assert r.status == 200, r.text
    assert r.header("etag") == f'"{md5_hex(payload)}"'
    assert s3.get_object(Bucket=bucket, Key="signed")["Body"].read() == payload


@pytest.mark.parametrize("tamper", [0, 20, 40])
def test_streaming_signed_chunk_tampered(s3, node, bucket, tamper):
    """A chunk whose data does not match its signature: refused with 403,
    nothing stored, blocks written before the bad chunk reclaimed."""
    from dpnode import streaming_signed_put

    before = node.storage_keys()
    payload = data(40 * 64 * 1024 + 5, seed=9)  # 41 chunks, 3 blocks
    with RawConn(node, timeout=30) as c:
        c.send(streaming_signed_put(node, f"/{bucket}/tampered", payload, tamper_chunk=tamper))
        r = c.read_response()
    assert r.status == 403, r.text
    assert r.error_code() == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="tampered")
    assert http_status(e.value) == 404
    assert wait_until(lambda: node.storage_keys() <= before, timeout=10), (node.storage_keys(), before)
