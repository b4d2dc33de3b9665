"""Multipart uploads with boto3 (create / upload_part / list_parts /
complete / abort and their errors) and with `aws s3 cp`."""

import hashlib
import os

import pytest
from botocore.exceptions import ClientError

from dpnode import BLOCK, MiB, aws_cli, data, error_code, http_status, md5_hex, wait_until


def multipart_etag(parts):
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


def upload_parts(s3, bucket, key, parts, **create_kw):
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, **create_kw)["UploadId"]
    done = []
    for i, p in enumerate(parts, start=1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=i, Body=p)
        assert r["ETag"] == f'"{md5_hex(p)}"'
        done.append({"PartNumber": i, "ETag": r["ETag"]})
    return up, done


def test_multipart_roundtrip_listparts_metadata(s3, bucket):
    # Part sizes deliberately not multiples of the block size.
    parts = [data(5 * MiB + 123, seed=1), data(5 * MiB + 1, seed=2), data(777_777, seed=3)]
    up, done = upload_parts(s3, bucket, "mp/obj", parts, Metadata={"origin": "multipart"}, ContentType="video/mp4")

    lp = s3.list_parts(Bucket=bucket, Key="mp/obj", UploadId=up)
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in lp["Parts"]] == [(d["PartNumber"], len(parts[i]), d["ETag"]) for i, d in enumerate(done)]
    assert lp["IsTruncated"] is False
    page = s3.list_parts(Bucket=bucket, Key="mp/obj", UploadId=up, MaxParts=2)
    assert [p["PartNumber"] for p in page["Parts"]] == [1, 2]
    assert page["IsTruncated"] is True
    rest = s3.list_parts(Bucket=bucket, Key="mp/obj", UploadId=up, PartNumberMarker=page["NextPartNumberMarker"])
    assert [p["PartNumber"] for p in rest["Parts"]] == [3]

    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("mp/obj", up)]

    # Not visible before completion.
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="mp/obj")
    assert http_status(e.value) == 404

    r = s3.complete_multipart_upload(Bucket=bucket, Key="mp/obj", UploadId=up, MultipartUpload={"Parts": done})
    want_etag = multipart_etag(parts)
    assert r["ETag"] == want_etag
    assert r["ETag"].endswith('-3"')

    whole = b"".join(parts)
    g = s3.get_object(Bucket=bucket, Key="mp/obj")
    assert g["ContentLength"] == len(whole)
    assert g["ETag"] == want_etag
    assert g["Metadata"] == {"origin": "multipart"}
    assert g["ContentType"] == "video/mp4"
    got = g["Body"].read()
    assert got == whole

    # The upload is gone.
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket=bucket, Key="mp/obj", UploadId=up)
    assert error_code(e.value) == "NoSuchUpload"
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"], o["ETag"]) for o in listed] == [("mp/obj", len(whole), want_etag)]


def test_single_part_upload_and_reupload_of_a_part(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="one")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="one", UploadId=up, PartNumber=1, Body=b"first version")
    final = data(BLOCK + 3, seed=5)
    e2 = s3.upload_part(Bucket=bucket, Key="one", UploadId=up, PartNumber=1, Body=final)["ETag"]
    parts = s3.list_parts(Bucket=bucket, Key="one", UploadId=up)["Parts"]
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in parts] == [(1, len(final), e2)]
    r = s3.complete_multipart_upload(Bucket=bucket, Key="one", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e2}]})
    assert r["ETag"] == multipart_etag([final])
    assert s3.get_object(Bucket=bucket, Key="one")["Body"].read() == final


def test_abort(node, s3, bucket):
    before = node.storage_keys()
    up, done = upload_parts(s3, bucket, "aborted", [data(5 * MiB, seed=1), data(BLOCK + 5, seed=2)])
    assert node.storage_keys() > before
    s3.abort_multipart_upload(Bucket=bucket, Key="aborted", UploadId=up)
    # The object never appears and the upload is gone.
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="aborted")
    assert error_code(e.value) == "NoSuchKey"
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket=bucket, Key="aborted", UploadId=up)
    assert error_code(e.value) == "NoSuchUpload"
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="aborted", UploadId=up, MultipartUpload={"Parts": done})
    assert error_code(e.value) == "NoSuchUpload"
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="aborted", UploadId=up, PartNumber=3, Body=b"late")
    assert error_code(e.value) == "NoSuchUpload"
    # The parts' blocks are reclaimed.
    assert wait_until(lambda: node.storage_keys() <= before, timeout=10), (node.storage_keys(), before)


def test_complete_with_wrong_etag_is_invalid_part(s3, bucket):
    up, done = upload_parts(s3, bucket, "k", [data(5 * MiB, seed=1), b"tail"])
    bad = [done[0], {"PartNumber": 2, "ETag": '"' + "0" * 32 + '"'}]
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=up, MultipartUpload={"Parts": bad})
    assert error_code(e.value) == "InvalidPart"
    assert http_status(e.value) == 400
    # A part that was never uploaded.
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=up, MultipartUpload={"Parts": [done[0], {"PartNumber": 9, "ETag": done[1]["ETag"]}]})
    assert error_code(e.value) == "InvalidPart"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")
    # The upload is still usable after the failed attempts.
    r = s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=up, MultipartUpload={"Parts": done})
    assert r["ETag"] == multipart_etag([data(5 * MiB, seed=1), b"tail"])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data(5 * MiB, seed=1) + b"tail"


def test_complete_out_of_order_is_invalid_part_order(s3, bucket):
    up, done = upload_parts(s3, bucket, "k", [data(5 * MiB, seed=1), data(5 * MiB, seed=2), b"z"])
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=up, MultipartUpload={"Parts": [done[1], done[0], done[2]]})
    assert error_code(e.value) == "InvalidPartOrder"
    assert http_status(e.value) == 400
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k")
    assert error_code(e.value) == "NoSuchKey"


def test_complete_with_too_small_part_is_entity_too_small(s3, bucket):
    up, done = upload_parts(s3, bucket, "k", [data(5 * MiB - 1, seed=1), b"last part may be small"])
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=up, MultipartUpload={"Parts": done})
    assert error_code(e.value) == "EntityTooSmall"
    assert http_status(e.value) == 400
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k")
    assert error_code(e.value) == "NoSuchKey"
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=up)


def test_complete_with_subset_of_parts(node, s3, bucket):
    parts = [data(5 * MiB, seed=1), data(5 * MiB, seed=2), data(1000, seed=3)]
    up, done = upload_parts(s3, bucket, "k", parts)
    r = s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=up, MultipartUpload={"Parts": [done[0], done[2]]})
    assert r["ETag"] == multipart_etag([parts[0], parts[2]])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == parts[0] + parts[2]


def test_unknown_upload_id(s3, bucket):
    for bad in ("00" * 16, "not-hex"):
        with pytest.raises(ClientError) as e:
            s3.upload_part(Bucket=bucket, Key="k", UploadId=bad, PartNumber=1, Body=b"x")
        assert error_code(e.value) == "NoSuchUpload"
        with pytest.raises(ClientError) as e:
            s3.list_parts(Bucket=bucket, Key="k", UploadId=bad)
        assert error_code(e.value) == "NoSuchUpload"


def test_part_number_out_of_range(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    for n in (0, 10001):
        with pytest.raises(ClientError) as e:
            s3.upload_part(Bucket=bucket, Key="k", UploadId=up, PartNumber=n, Body=b"x")
        assert error_code(e.value) == "InvalidArgument"


def test_range_across_part_boundaries(s3, bucket):
    parts = [data(5 * MiB + 7, seed=1), data(5 * MiB + 11, seed=2), data(12345, seed=3)]
    up, done = upload_parts(s3, bucket, "k", parts)
    s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=up, MultipartUpload={"Parts": done})
    whole = b"".join(parts)
    b1 = len(parts[0])
    b2 = b1 + len(parts[1])
    for a, b in [(b1 - 1, b1), (b1 - 100, b1 + 100), (b1, b1), (b2 - 1, b2 + 1), (b1 - 5, b2 + 5), (0, len(whole) - 1), (BLOCK * 5 - 1, BLOCK * 5 + 1)]:
        g = s3.get_object(Bucket=bucket, Key="k", Range=f"bytes={a}-{b}")
        assert g["ContentRange"] == f"bytes {a}-{b}/{len(whole)}"
        assert g["Body"].read() == whole[a : b + 1], (a, b)
    g = s3.get_object(Bucket=bucket, Key="k", Range="bytes=-20000")
    assert g["Body"].read() == whole[-20000:]
    g = s3.get_object(Bucket=bucket, Key="k", Range=f"bytes={b1 - 3}-")
    assert g["Body"].read() == whole[b1 - 3 :]


def write_file(path, size, seed):
    with open(path, "wb") as f:
        f.write(data(size, seed=seed))


def test_aws_cli_cp_multipart_roundtrip(node, s3, bucket, tmp_path):
    src = tmp_path / "upload.bin"
    size = 20 * MiB + 12345  # > 8 MiB: aws s3 cp switches to multipart (8 MiB chunks -> 3 parts)
    write_file(src, size, seed=77)
    aws_cli(node, "s3", "cp", str(src), f"s3://{bucket}/cli/upload.bin", "--no-progress", "--only-show-errors")
    h = s3.head_object(Bucket=bucket, Key="cli/upload.bin")
    assert h["ContentLength"] == size
    assert h["ETag"].endswith('-3"'), h["ETag"]
    content = src.read_bytes()
    chunks = [content[i : i + 8 * MiB] for i in range(0, size, 8 * MiB)]
    assert h["ETag"] == multipart_etag(chunks)

    dst = tmp_path / "download.bin"
    aws_cli(node, "s3", "cp", f"s3://{bucket}/cli/upload.bin", str(dst), "--no-progress", "--only-show-errors")
    assert os.path.getsize(dst) == size
    assert dst.read_bytes() == content

    ls = aws_cli(node, "s3", "ls", f"s3://{bucket}/cli/").stdout.decode()
    assert "upload.bin" in ls and str(size) in ls


def test_aws_cli_small_cp_and_s3api(node, s3, bucket, tmp_path):
    src = tmp_path / "small.txt"
    src.write_bytes(b"hello from the aws cli\n")
    aws_cli(node, "s3", "cp", str(src), f"s3://{bucket}/small.txt", "--no-progress", "--only-show-errors")
    assert s3.get_object(Bucket=bucket, Key="small.txt")["Body"].read() == b"hello from the aws cli\n"
    out = aws_cli(node, "s3api", "head-object", "--bucket", bucket, "--key", "small.txt").stdout.decode()
    assert md5_hex(b"hello from the aws cli\n") in out
    aws_cli(node, "s3", "rm", f"s3://{bucket}/small.txt", "--only-show-errors")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="small.txt")


def test_multipart_with_crc32_checksums(s3, bucket):
    """boto3 flexible checksums on parts: each part's CRC32 is checked and
    listed, and CompleteMultipartUpload accepts the per-part checksums."""
    from dpnode import crc32_b64

    up = s3.create_multipart_upload(Bucket=bucket, Key="ck", ChecksumAlgorithm="CRC32")["UploadId"]
    parts = [data(5 * MiB, seed=1), data(4321, seed=2)]
    done = []
    for n, p in enumerate(parts, 1):
        r = s3.upload_part(Bucket=bucket, Key="ck", UploadId=up, PartNumber=n, Body=p, ChecksumAlgorithm="CRC32")
        assert r["ChecksumCRC32"] == crc32_b64(p)
        done.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    listed = s3.list_parts(Bucket=bucket, Key="ck", UploadId=up)["Parts"]
    assert [(p["PartNumber"], p["ChecksumCRC32"]) for p in listed] == [(d["PartNumber"], d["ChecksumCRC32"]) for d in done]
    r = s3.complete_multipart_upload(Bucket=bucket, Key="ck", UploadId=up, MultipartUpload={"Parts": done})
    assert r["ETag"] == multipart_etag(parts)
    assert s3.get_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")["Body"].read() == b"".join(parts)


def test_boto3_transfer_manager(s3, bucket, tmp_path):
    """s3transfer: threaded multipart upload_file and ranged, threaded download_file."""
    from boto3.s3.transfer import TransferConfig

    src = tmp_path / "src.bin"
    size = 23 * MiB + 321
    write_file(src, size, seed=23)
    cfg = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4)
    s3.upload_file(str(src), bucket, "tm/obj", Config=cfg)
    h = s3.head_object(Bucket=bucket, Key="tm/obj")
    assert h["ContentLength"] == size
    assert h["ETag"].endswith('-5"'), h["ETag"]
    dst = tmp_path / "dst.bin"
    s3.download_file(bucket, "tm/obj", str(dst), Config=cfg)
    assert dst.read_bytes() == src.read_bytes()


def test_list_multipart_uploads_with_prefix(s3, bucket):
    ids = {}
    for k in ("a/one", "a/two", "b/three"):
        ids[k] = s3.create_multipart_upload(Bucket=bucket, Key=k)["UploadId"]
    r = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/")
    assert sorted((u["Key"], u["UploadId"]) for u in r["Uploads"]) == sorted((k, ids[k]) for k in ("a/one", "a/two"))
    for k, up in ids.items():
        s3.abort_multipart_upload(Bucket=bucket, Key=k, UploadId=up)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
