"""rclone against a node: server-side `copyto` and `move` use CopyObject, so
the bytes never pass through rclone (the node's copied-bytes counter grows by
the object's size and its bytes-out counter does not)."""

import os
import re
import shutil
import subprocess

import pytest

import dpnode
from dpnode import data

pytestmark = pytest.mark.skipif(shutil.which("rclone") is None, reason="rclone is installed by scripts/peers.sh --test")


def rclone(node, *args):
    env = dict(os.environ)
    # (a CA bundle in the environment makes rclone 1.60 refuse plain HTTP)
    env.pop("AWS_CA_BUNDLE", None)
    env.update(
        RCLONE_CONFIG=os.devnull,
        RCLONE_CONFIG_DP_TYPE="s3",
        RCLONE_CONFIG_DP_PROVIDER="Other",
        RCLONE_CONFIG_DP_ENDPOINT=node.endpoint,
        RCLONE_CONFIG_DP_ACCESS_KEY_ID=dpnode.ACCESS_KEY,
        RCLONE_CONFIG_DP_SECRET_ACCESS_KEY=dpnode.SECRET_KEY,
        RCLONE_CONFIG_DP_REGION=dpnode.REGION,
        RCLONE_CONFIG_DP_FORCE_PATH_STYLE="true",
    )
    p = subprocess.run(["rclone", "--retries", "1", "--low-level-retries", "1", *args], env=env, capture_output=True, timeout=120)
    assert p.returncode == 0, f"rclone {' '.join(args)} exited {p.returncode}: {p.stderr.decode()}"
    return p.stdout


def counter(node, name):
    m = re.search(rf"^{name} (\S+)$", node.metrics(), re.M)
    return float(m.group(1)) if m else 0.0


def test_rclone_server_side_copyto_and_move(node, s3, bucket):
    body = data(3 * dpnode.BLOCK + 123, seed=11)
    s3.put_object(Bucket=bucket, Key="src/a.bin", Body=body, Metadata={"who": "rclone"})
    s3.create_bucket(Bucket=bucket + "-2")
    copied0, out0 = counter(node, "dataplane_s3_bytes_copied_total"), counter(node, "dataplane_s3_bytes_out_total")
    rclone(node, "copyto", f"dp:{bucket}/src/a.bin", f"dp:{bucket}-2/copy/a.bin")
    rclone(node, "move", f"dp:{bucket}/src", f"dp:{bucket}/moved")
    copied = counter(node, "dataplane_s3_bytes_copied_total") - copied0
    sent = counter(node, "dataplane_s3_bytes_out_total") - out0
    assert copied >= 2 * len(body), f"server-side copies moved {copied} bytes"
    assert sent < len(body), f"{sent} bytes went out to rclone: the copy was not server-side"
    assert s3.get_object(Bucket=bucket + "-2", Key="copy/a.bin")["Body"].read() == body
    assert s3.get_object(Bucket=bucket, Key="moved/a.bin")["Body"].read() == body
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert listed == ["moved/a.bin"], "move leaves no source behind"
    assert s3.head_object(Bucket=bucket, Key="moved/a.bin")["Metadata"] == {"who": "rclone"}
