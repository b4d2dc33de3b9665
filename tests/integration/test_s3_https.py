"""HTTPS on the S3 port: a node with `s3.tls_listen` serves the same API
over TLS (rustls) beside its plain listener; boto3 and the aws CLI verify
it against a CA generated here; SIGHUP loads a new certificate for new
connections; a client that does not speak TLS gets nothing and the node
counts it."""

import os
import signal
import socket
import ssl
import subprocess
import time

import pytest

import dpnode
from dpnode import data, md5_hex


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca_and_cert(d: str, tag: str):
    """A CA and a server certificate for localhost/127.0.0.1 signed by it."""
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-subj", f"/CN=test CA {tag}", "-keyout", f"ca-{tag}.key", "-out", f"ca-{tag}.pem", cwd=d)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
             "-keyout", f"srv-{tag}.key", "-out", f"srv-{tag}.csr", cwd=d)
    with open(os.path.join(d, f"ext-{tag}.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", f"srv-{tag}.csr", "-CA", f"ca-{tag}.pem", "-CAkey", f"ca-{tag}.key", "-CAcreateserial",
             "-days", "2", "-extfile", f"ext-{tag}.cnf", "-out", f"srv-{tag}.pem", cwd=d)
    os.chmod(os.path.join(d, f"srv-{tag}.key"), 0o600)
    return os.path.join(d, f"ca-{tag}.pem"), os.path.join(d, f"srv-{tag}.pem"), os.path.join(d, f"srv-{tag}.key")


@pytest.fixture
def tls_node(start_node, tmp_path):
    d = str(tmp_path)
    ca, cert, key = make_ca_and_cert(d, "one")
    # The node reads the same paths again on SIGHUP.
    live_cert, live_key = os.path.join(d, "live.pem"), os.path.join(d, "live.key")
    os.link(cert, live_cert)
    os.link(key, live_key)
    port = dpnode.free_ports(1)
    n = start_node("tls", sets=(f's3.tls_listen="127.0.0.1:{port}"', f's3.tls_cert="{live_cert}"', f's3.tls_key="{live_key}"'))
    n.tls_port, n.tls_dir, n.ca = port, d, ca
    dpnode.wait_until(lambda: _can_connect(port), timeout=10)
    return n


def _can_connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def https_client(n, ca):
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=f"https://localhost:{n.tls_port}",
        aws_access_key_id=dpnode.ACCESS_KEY,
        aws_secret_access_key=dpnode.SECRET_KEY,
        verify=ca,
        config=Config(region_name=dpnode.REGION, signature_version="s3v4", s3={"addressing_style": "path"}, retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def test_boto3_over_https_and_plain_side_by_side(tls_node):
    s3 = https_client(tls_node, tls_node.ca)
    s3.create_bucket(Bucket="secure")
    body = data(3 * dpnode.BLOCK + 5, seed=7)
    r = s3.put_object(Bucket="secure", Key="k", Body=body)
    assert r["ETag"] == f'"{md5_hex(body)}"'
    assert s3.get_object(Bucket="secure", Key="k")["Body"].read() == body
    # The plain listener serves the same data at the same time.
    plain = tls_node.client()
    assert plain.get_object(Bucket="secure", Key="k")["Body"].read() == body
    # Multipart and a listing over TLS too.
    up = s3.create_multipart_upload(Bucket="secure", Key="mp")
    p1 = s3.upload_part(Bucket="secure", Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=body[: 5 * dpnode.MiB] if len(body) > 5 * dpnode.MiB else body)
    s3.complete_multipart_upload(Bucket="secure", Key="mp", UploadId=up["UploadId"], MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}]})
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="secure")["Contents"]]
    assert keys == ["k", "mp"]


def test_aws_cli_with_ca_bundle(tls_node, tmp_path):
    src = tmp_path / "f.bin"
    body = data(200_000, seed=3)
    src.write_bytes(body)
    https = f"https://localhost:{tls_node.tls_port}"
    env_args = ("--endpoint-url", https, "--ca-bundle", tls_node.ca)
    dpnode.aws_cli(tls_node, "s3", "mb", "s3://clib", "--endpoint-url", https, "--ca-bundle", tls_node.ca)
    dpnode.aws_cli(tls_node, "s3", "cp", str(src), "s3://clib/f.bin", *env_args)
    out = tmp_path / "back.bin"
    dpnode.aws_cli(tls_node, "s3", "cp", "s3://clib/f.bin", str(out), *env_args)
    assert out.read_bytes() == body
    # Without the CA the CLI refuses the server's certificate.
    p = dpnode.aws_cli(tls_node, "s3", "ls", "s3://clib", "--endpoint-url", https, check=False)
    assert p.returncode != 0
    assert b"CERTIFICATE_VERIFY_FAILED" in p.stderr or b"SSL" in p.stderr


def test_sighup_loads_a_new_certificate(tls_node):
    s3 = https_client(tls_node, tls_node.ca)
    s3.create_bucket(Bucket="rot")
    ca2, cert2, key2 = make_ca_and_cert(tls_node.tls_dir, "two")
    live_cert = os.path.join(tls_node.tls_dir, "live.pem")
    live_key = os.path.join(tls_node.tls_dir, "live.key")
    for src, dst in ((cert2, live_cert), (key2, live_key)):
        os.unlink(dst)
        os.link(src, dst)
    tls_node.proc.send_signal(signal.SIGHUP)
    dpnode.wait_until(lambda: "reloaded the S3 HTTPS certificate" in tls_node.log_text(), timeout=10)
    # New connections present the new certificate: CA two verifies it, CA one does not.
    assert https_client(tls_node, ca2).head_bucket(Bucket="rot")["ResponseMetadata"]["HTTPStatusCode"] == 200
    ctx = ssl.create_default_context(cafile=tls_node.ca)
    with pytest.raises(ssl.SSLCertVerificationError):
        with socket.create_connection(("127.0.0.1", tls_node.tls_port), timeout=5) as s:
            ctx.wrap_socket(s, server_hostname="localhost")
    # A broken pair is refused and the node keeps serving with the last good one.
    with open(live_key, "w") as f:
        f.write("not a key\n")
    tls_node.proc.send_signal(signal.SIGHUP)
    dpnode.wait_until(lambda: "was not reloaded" in tls_node.log_text(), timeout=10)
    assert https_client(tls_node, ca2).head_bucket(Bucket="rot")["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert tls_node.alive()


def test_plain_http_to_the_tls_port_is_refused_and_counted(tls_node):
    with socket.create_connection(("127.0.0.1", tls_node.tls_port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        try:
            got = s.recv(4096)
        except (ConnectionResetError, socket.timeout):
            got = b""
        # Whatever comes back is a TLS alert, never an HTTP response.
        assert not got.startswith(b"HTTP/")
    dpnode.wait_until(lambda: "dataplane_s3_tls_handshake_failures_total 1" in tls_node.metrics(), timeout=10)
    # The node still serves TLS clients.
    assert https_client(tls_node, tls_node.ca).list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_tls_listen_without_a_certificate_is_a_clear_start_error(tmp_path):
    n = dpnode.Node(name="tlsbad", sets=('s3.tls_listen="127.0.0.1:1"',))
    try:
        with pytest.raises(RuntimeError) as e:
            n.start(timeout=10)
        assert "s3.tls_cert or s3.tls_key is not" in str(e.value)
    finally:
        n.cleanup()
