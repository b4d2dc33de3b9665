"""The admin API (/health, /status, /metrics) and the `dataplane status` CLI."""

import json
import re
import subprocess

from dpnode import BLOCK, RawConn, data, dataplane_bin


def metric_samples(text):
    """{(name, frozenset(labels)): value} of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$', line)
        assert m, f"bad metrics line {line!r}"
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def test_health(node):
    st, _, body = node.admin_get("/health")
    assert st == 200
    assert body.strip() == b"ok"
    st, _, body = node.admin_get("/no-such-endpoint")
    assert st == 404
    assert "error" in json.loads(body)


def test_status_json(node, s3, bucket):
    st0 = node.status()
    assert st0["node"]["cluster_name"] == "it"
    assert st0["node"]["cores"] == 2
    assert st0["node"]["ring_size"] == 16
    assert st0["node"]["s3_listen"] == f"127.0.0.1:{node.s3_port}"
    assert st0["storage"]["partitions"] == 16
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=data(BLOCK + i, seed=i))
    s3.get_object(Bucket=bucket, Key="k0")["Body"].read()
    st = node.status()
    assert st["storage"]["keys"] > st0["storage"]["keys"]
    assert st["storage"]["keys"] >= 5 * 3  # manifests and two blocks each
    assert st["storage"]["log_bytes"] >= 5 * BLOCK
    assert st["storage"]["damaged_records"] == 0
    assert st["s3"]["bytes_in"] >= 5 * BLOCK
    assert st["s3"]["bytes_out"] >= BLOCK
    reqs = {(r["op"], str(r["status"])): r["count"] for r in st["s3"]["requests"]}
    assert reqs[("PutObject", "200")] == 5
    assert reqs[("GetObject", "200")] == 1
    assert reqs[("CreateBucket", "200")] == 1


def test_metrics(node, s3, bucket):
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"m{i}", Body=b"x" * (i + 1))
    try:
        s3.get_object(Bucket=bucket, Key="missing")
    except s3.exceptions.NoSuchKey:
        pass
    text = node.metrics()
    assert 'dataplane_s3_requests_total{op="PutObject",status="200"} 3' in text
    m = metric_samples(text)
    assert m[("dataplane_s3_requests_total", frozenset({("op", "PutObject"), ("status", "200")}))] == 3
    assert m[("dataplane_s3_requests_total", frozenset({("op", "GetObject"), ("status", "404")}))] == 1
    assert "# TYPE dataplane_s3_requests_total counter" in text
    # Per-partition gauges for every partition of the ring.
    for gauge in ("dataplane_partition_keys", "dataplane_partition_log_bytes", "dataplane_partition_segments"):
        assert f"# TYPE {gauge} gauge" in text
        parts = {dict(k[1])["partition"]: v for k, v in m.items() if k[0] == gauge}
        assert sorted(parts, key=int) == [str(p) for p in range(16)], gauge
    keys = sum(v for k, v in m.items() if k[0] == "dataplane_partition_keys")
    assert keys == node.status()["storage"]["keys"]
    assert keys >= 4  # a bucket and three objects


def test_malformed_requests_are_counted(node, bucket):
    def count():
        m = metric_samples(node.metrics())
        return m[("dataplane_s3_malformed_requests_total", frozenset())]

    before = count()
    for _ in range(3):
        with RawConn(node) as c:
            c.send(b"NONSENSE\r\n\r\n")
            assert c.read_response().status == 400
    assert count() == before + 3


def test_cli_status(node, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    p = subprocess.run([dataplane_bin(), "status", "--admin", node.admin_addr], capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr.decode()
    out = p.stdout.decode()
    assert re.search(r"^cluster\s+it \(", out, re.M), out
    assert f"s3 127.0.0.1:{node.s3_port}" in out
    keys = int(re.search(r"storage\s+(\d+) keys", out).group(1))
    assert keys == node.status()["storage"]["keys"]

    p = subprocess.run([dataplane_bin(), "status", "--json", "--admin", node.admin_addr], capture_output=True, timeout=30)
    assert p.returncode == 0
    j = json.loads(p.stdout)
    assert j["node"]["cluster_name"] == "it"
    assert j["storage"]["keys"] > 0


def test_cli_status_unreachable(node):
    # A port that nothing listens on (the node's S3 port + 1000 is not ours).
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = subprocess.run([dataplane_bin(), "status", "--admin", f"127.0.0.1:{port}"], capture_output=True, timeout=30)
    assert p.returncode != 0
    assert b"admin API" in p.stderr
