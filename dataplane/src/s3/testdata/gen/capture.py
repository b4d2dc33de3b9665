#!/usr/bin/env python3
"""Captures the raw requests boto3 / the AWS CLI put on the wire.

Usage: python3 capture.py OUT_DIR     (needs boto3, awscli, openssl)

A local socket server (plain HTTP, and HTTPS with a throw-away self-signed
certificate) records every request byte for byte, answering 100-continue and
200. The clock that botocore signs with is pinned to 2024-01-02T03:04:05Z so
the captures verify at a fixed `now`. Credentials: AKIDEXAMPLE /
wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY. Host ports (and so signatures and
amz-sdk-invocation-id) differ from run to run.
"""
import datetime, os, socket, ssl, subprocess, sys, tempfile, threading, time
from unittest import mock

import boto3
import botocore.auth
import urllib3
from botocore.config import Config

urllib3.disable_warnings()
OUT = sys.argv[1]
AK, SK = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
FIXED = datetime.datetime(2024, 1, 2, 3, 4, 5)


class FixedDT(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return FIXED

    @classmethod
    def now(cls, tz=None):
        return FIXED.replace(tzinfo=tz) if tz else FIXED


def read_request(c):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = c.recv(65536)
        if not d:
            return buf
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    hdrs = {}
    for line in head.split(b"\r\n")[1:]:
        k, v = line.split(b":", 1)
        hdrs[k.strip().lower()] = v.strip()
    if b"expect" in hdrs:
        c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    if hdrs.get(b"transfer-encoding", b"").lower() == b"chunked":
        while not rest.endswith(b"0\r\n\r\n"):
            d = c.recv(65536)
            if not d:
                break
            rest += d
    elif b"content-length" in hdrs:
        n = int(hdrs[b"content-length"])
        while len(rest) < n:
            d = c.recv(65536)
            if not d:
                break
            rest += d
    return head + b"\r\n\r\n" + rest


class Recorder:
    def __init__(self, tls_ctx=None):
        self.ctx = tls_ctx
        self.captured = []
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.port = self.srv.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            raw, _ = self.srv.accept()
            threading.Thread(target=self.handle, args=(raw,), daemon=True).start()

    def handle(self, raw):
        try:
            c = self.ctx.wrap_socket(raw, server_side=True) if self.ctx else raw
            while True:
                req = read_request(c)
                if not req:
                    break
                self.captured.append(req)
                c.sendall(b'HTTP/1.1 200 OK\r\nETag: "abc"\r\nContent-Length: 0\r\n\r\n')
        except Exception:
            pass
        finally:
            raw.close()

    def capture(self, name, fn):
        n = len(self.captured)
        fn()
        time.sleep(0.1)
        assert len(self.captured) == n + 1, name
        data = self.captured[-1]
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        print(f"== {name} ({len(data)} bytes)")
        print(data.split(b"\r\n\r\n", 1)[0].decode())


def client(endpoint, **s3cfg):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", verify=False,
                        aws_access_key_id=AK, aws_secret_access_key=SK,
                        config=Config(s3=dict(addressing_style="path", **s3cfg), retries={"max_attempts": 1}))


def main():
    tmp = tempfile.mkdtemp()
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    plain, tls = Recorder(), Recorder(ctx)
    http_ep, https_ep = f"http://127.0.0.1:{plain.port}", f"https://127.0.0.1:{tls.port}"
    cli_src = os.path.join(tmp, "cli_src.txt")
    with open(cli_src, "wb") as f:
        f.write(b"".join(b"aws cli line %04d\n" % i for i in range(500)))
    os.environ.update(AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SK, AWS_DEFAULT_REGION="us-east-1")
    from awscli.clidriver import create_clidriver

    with mock.patch.object(botocore.auth.datetime, "datetime", FixedDT):
        h = client(http_ep)
        plain.capture("boto3_http_put_signed_payload.http",
                      lambda: h.put_object(Bucket="test-bucket", Key="dir/my file+ü.txt", Body=b"hello aws-chunked world\n" * 3000))
        plain.capture("boto3_http_put_small.http", lambda: h.put_object(Bucket="test-bucket", Key="small.txt", Body=b"hi"))
        plain.capture("boto3_http_put_empty.http", lambda: h.put_object(Bucket="test-bucket", Key="empty.txt", Body=b""))

        s = client(https_ep)
        lines = b"".join(b"line %05d of the boto3 aws-chunked fixture\n" % i for i in range(2000))
        tls.capture("boto3_put_crc32_trailer.http", lambda: s.put_object(Bucket="test-bucket", Key="dir/my file+ü.txt", Body=lines))
        tls.capture("boto3_put_sha256_trailer.http", lambda: s.put_object(Bucket="test-bucket", Key="k2", Body=b"abc" * 10, ChecksumAlgorithm="SHA256"))
        tls.capture("boto3_put_sha1_trailer.http", lambda: s.put_object(Bucket="test-bucket", Key="k3", Body=b"xyz" * 7, ChecksumAlgorithm="SHA1"))
        tls.capture("boto3_put_empty_trailer.http", lambda: s.put_object(Bucket="test-bucket", Key="empty", Body=b""))
        tls.capture("boto3_upload_part_crc32_trailer.http",
                    lambda: s.upload_part(Bucket="test-bucket", Key="big", UploadId="UPID", PartNumber=3, Body=b"P" * 100000))
        ss = client(https_ep, payload_signing_enabled=True)
        tls.capture("boto3_put_signed_payload_https.http", lambda: ss.put_object(Bucket="test-bucket", Key="signed", Body=b"signed body"))
        tls.capture("awscli_s3_cp.http", lambda: create_clidriver().main(
            ["s3", "cp", cli_src, "s3://test-bucket/cli/a b.txt", "--endpoint-url", https_ep, "--no-verify-ssl"]))
        tls.capture("awscli_s3api_put_object.http", lambda: create_clidriver().main(
            ["s3api", "put-object", "--bucket", "test-bucket", "--key", "cli/obj", "--body", cli_src,
             "--endpoint-url", https_ep, "--no-verify-ssl"]))


if __name__ == "__main__":
    main()
