"""Fixtures for the real-process S3 integration tests.

Each test gets its own `dataplane serve` process (fresh temp data dir, free
loopback ports chosen at runtime, a generated TOML config); the binary comes
from $DATAPLANE_BIN (default /work/main/target/release/dataplane). When a
test fails, the report shows the log of every node it used.
"""

import os
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import dpnode  # noqa: E402
from dpnode import Node  # noqa: E402

# Keep boto3/aws-cli away from any configuration of the machine.
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
for _v in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
    os.environ.pop(_v, None)
os.environ["NO_PROXY"] = "127.0.0.1,localhost"


def pytest_configure(config):
    b = dpnode.dataplane_bin()
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        raise pytest.UsageError(f"dataplane binary {b!r} not found or not executable; build it (cargo build --release -p dataplane) or set DATAPLANE_BIN")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for n in getattr(item, "_dp_nodes", []):
            since = n.log_mark if n in getattr(item, "_dp_shared", ()) else 0
            text = n.log_tail(since)
            if text.strip():
                rep.sections.append((f"dataplane node {n.name} ({n.root}) log", text))


def _track(request, n: Node, shared: bool = False):
    item = request.node
    if not hasattr(item, "_dp_nodes"):
        item._dp_nodes = []
        item._dp_shared = []
    if n not in item._dp_nodes:
        item._dp_nodes.append(n)
    if shared:
        item._dp_shared.append(n)


def _finish(n: Node):
    """Stops a node. A node that died by itself during the test, or that does
    not shut down cleanly on SIGTERM, fails the test."""
    was_running = n.alive()
    died = not was_running and n.proc is not None and not n.expect_dead
    problem = None
    if was_running:
        try:
            code = n.stop()
            if code != 0:
                problem = f"node {n.name} exited with {code} on SIGTERM"
        except RuntimeError as e:
            problem = str(e).split("; log:")[0]
    if died:
        problem = f"node {n.name} died during the test (exit code {n.proc.returncode})"
    log = n.log_tail()
    n.cleanup()
    if problem:
        pytest.fail(f"{problem}; log:\n{log}", pytrace=False)


class NodeFactory:
    def __init__(self, request):
        self.request = request
        self.nodes = []

    def __call__(self, name: str = "it", **kw) -> Node:
        n = Node(name=name, **kw)
        _track(self.request, n)
        self.nodes.append(n)
        n.start()
        return n


@pytest.fixture
def start_node(request):
    """Starts extra nodes inside a test: `n = start_node("name")`."""
    f = NodeFactory(request)
    yield f
    for n in f.nodes:
        _finish(n)


@pytest.fixture
def node(start_node) -> Node:
    """A fresh node for this test."""
    return start_node("it")


@pytest.fixture
def s3(node):
    """A boto3 S3 client for `node`."""
    return node.client()


@pytest.fixture
def bucket(s3) -> str:
    """A new, empty bucket on `node`."""
    name = "b-" + uuid.uuid4().hex[:16]
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def shared_node(request):
    """One node for a whole module (read-mostly tests over a big data set)."""
    n = Node(name="shared")
    try:
        n.start()
    except Exception:
        n.cleanup()
        raise
    yield n
    _finish(n)


@pytest.fixture
def shared(shared_node, request):
    _track(request, shared_node, shared=True)
    shared_node.log_mark = shared_node.log_size()
    assert shared_node.alive(), f"shared node is not running; log:\n{shared_node.log_tail()}"
    yield shared_node
    assert shared_node.alive(), f"shared node died; log:\n{shared_node.log_tail()}"
