"""The isolation report says what is really in force: every flag is checked against what a program sees.

A probe program looks at its namespaces (``/proc/self/ns/*`` against the test's own), the network
(interfaces, default route, a server on the host's loopback), the host's temp directories (a
world-readable host file, marker files it leaves), the host's identity, the test process and a
System V segment of the host. Each scenario compares that with the report: bubblewrap, the
fallback as it is here, and the fallback with namespace or mount calls refused (as in a container
without CAP_SYS_ADMIN), which must then say, in the report and in the warning, what is not private.
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import socket
import uuid

import pytest

import llm_rlvr.isolation as isolation_module
import llm_rlvr.sandbox as sandbox_module
from llm_rlvr.isolation import CLONE_NEWNET, LAYERS, PRIVATE_TMP_DIRS, IsolationReport
from llm_rlvr.sandbox import Sandbox, SandboxLimits, bwrap_usable

LIMITS = SandboxLimits(wall_seconds=5, cpu_seconds=3, memory_mb=256)
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="the fallback's namespaces are tried only as root")
needs_bwrap = pytest.mark.skipif(not bwrap_usable(), reason="bubblewrap not installed or unable to create "
                                 "namespaces here")

PROBE = r'''
import json, os, socket
P = json.loads({params!r})
def read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None
def namespace(kind):
    try:
        return os.readlink("/proc/self/ns/" + kind)
    except OSError:
        return None
def connects():
    try:
        socket.create_connection(("127.0.0.1", P["port"]), timeout=1).close()
        return True
    except OSError:
        return False
route = (read("/proc/net/route") or "").splitlines()[1:]
written = []
for path in P["markers"]:
    try:
        with open(path, "w") as handle:
            handle.write("left by a sandboxed program")
        written.append(path)
    except OSError:
        pass
print(json.dumps({{
    "namespaces": {{kind: namespace(kind) for kind in ("net", "mnt", "uts", "ipc", "pid")}},
    "uid": os.getuid(),
    "interfaces": sorted(name for _, name in socket.if_nameindex()),
    "sys_interfaces": sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else [],
    "default_route": any(line.split()[1] == "00000000" for line in route if line.split()),
    "connects": connects(),
    "hostname": socket.gethostname(),
    "identity": {{path: read(path) for path in P["identity"]}},
    "host_tmp_file": read(P["host_tmp_file"]),
    "written": written,
    "sees_test_process": os.path.exists("/proc/%d" % P["test_pid"]),
    "sees_host_segment": str(P["shm_id"]) in " ".join(line.split()[1] for line in
                                                     (read("/proc/sysvipc/shm") or "").splitlines()[1:]),
    "sees_etc_passwd": os.path.exists("/etc/passwd"),
}}))
'''


class _RefusingLibc:
    """libc whose ``unshare`` (for the given flags) or ``mount`` (on the given targets) fails with EPERM."""

    def __init__(self, real, refused_flags: int = 0, refused_targets: tuple[bytes, ...] = ()):
        self._real, self._flags, self._targets = real, refused_flags, refused_targets

    def unshare(self, flags):
        if flags & self._flags:
            ctypes.set_errno(errno.EPERM)
            return -1
        return self._real.unshare(flags)

    def mount(self, source, target, fstype, flags, data):
        if target in self._targets:
            ctypes.set_errno(errno.EPERM)
            return -1
        return self._real.mount(source, target, fstype, flags, data)

    def __getattr__(self, name):
        return getattr(self._real, name)


@pytest.fixture
def host(tmp_path):
    """The host side: a loopback server, a world-readable file in /tmp, a SysV segment, marker paths."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    tag = uuid.uuid4().hex
    tmp_file = f"/tmp/llmt-host-file-{tag}"
    with open(tmp_file, "w") as handle:
        handle.write("HOST-TMP-CONTENT")
    os.chmod(tmp_file, 0o644)
    libc = ctypes.CDLL(None, use_errno=True)
    shm_id = libc.shmget(0, 4096, 0o1000 | 0o644)  # IPC_PRIVATE, IPC_CREAT
    markers = [os.path.join(d, f"llmt-marker-{tag}") for d in PRIVATE_TMP_DIRS if os.path.isdir(d)]
    params = {"port": server.getsockname()[1], "markers": markers, "host_tmp_file": tmp_file,
              "identity": list(isolation_module.IDENTITY_FILES), "test_pid": os.getpid(), "shm_id": shm_id}
    yield params
    server.close()
    libc.shmctl(shm_id, 0, None)  # IPC_RMID
    for path in [tmp_file, *markers]:
        if os.path.exists(path):
            os.unlink(path)


def _observe(sandbox: Sandbox, host: dict) -> tuple[IsolationReport, dict]:
    result = sandbox.run(PROBE.format(params=json.dumps(host)))
    assert result.ok, result.stderr
    return result.report, json.loads(result.stdout)


def _own_namespace(kind: str) -> str:
    return os.readlink(f"/proc/self/ns/{kind}")


def _reality(seen: dict, host: dict) -> dict[str, bool]:
    """Which layers the program's observations show to be in force."""
    ns = seen["namespaces"]

    def private(kind: str) -> bool:
        return ns[kind] is not None and ns[kind] != _own_namespace(kind)

    identity_files = {path: _read(path) for path in host["identity"]}
    host_identity = [(seen["identity"][p], text) for p, text in identity_files.items() if text]
    return {
        "rlimits": True,  # exercised by the hostile-program suite
        "separate_user": seen["uid"] == 65534,
        "network_namespace": private("net") and set(seen["interfaces"]) <= {"lo"}
        and not seen["default_route"] and not seen["connects"],
        "mount_namespace": private("mnt"),
        "private_tmp": seen["host_tmp_file"] is None and not any(os.path.exists(p) for p in host["markers"]),
        "hidden_identity": private("uts") and seen["hostname"] != socket.gethostname()
        and all(theirs != ours for theirs, ours in host_identity) and set(seen["sys_interfaces"]) <= {"lo"},
        "ipc_namespace": private("ipc") and not seen["sees_host_segment"],
        "pid_namespace": private("pid") and not seen["sees_test_process"],
        "private_filesystem": not seen["sees_etc_passwd"],
    }


def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def _assert_report_is_true(report: IsolationReport, seen: dict, host: dict) -> None:
    reality = _reality(seen, host)
    claimed = {layer: getattr(report, layer) for layer in LAYERS}
    assert claimed == reality, (claimed, reality, seen)
    # Every missing layer says why, and no reason is given for a layer in force.
    assert {reason.split(":")[0] for reason in report.reasons} == set(report.missing())


@pytest.fixture
def fresh_fallback(monkeypatch):
    """Forget the fallback's trial run and the once-per-process warning."""
    monkeypatch.setattr(sandbox_module, "_fallback_probe", {})
    monkeypatch.setattr(sandbox_module, "_warned_fallback", False)


@needs_bwrap
def test_bwrap_report_matches_reality(host):
    report, seen = _observe(Sandbox(LIMITS, isolation="bwrap"), host)
    _assert_report_is_true(report, seen, host)
    assert report.mode == "bwrap" and report.missing() == ([] if IS_ROOT else ["separate_user"])


@needs_root
def test_fallback_report_matches_reality(host, fresh_fallback, caplog):
    with caplog.at_level(logging.WARNING, logger="llmt.rlvr.sandbox"):
        sandbox = Sandbox(LIMITS, isolation="rlimits")  # even though bwrap may be installed
    report, seen = _observe(sandbox, host)
    _assert_report_is_true(report, seen, host)
    assert report == sandbox.report
    # This machine lets root create namespaces: all but the PID namespace and the filesystem view.
    assert report.missing() == ["pid_namespace", "private_filesystem"], report.reasons
    assert "host's process list" in caplog.text and "world-readable file" in caplog.text
    assert "host's network" not in caplog.text


@needs_root
def test_refused_namespaces_are_reported_not_claimed(host, fresh_fallback, monkeypatch, caplog):
    """A default Docker container: root without CAP_SYS_ADMIN, every unshare refused."""
    refuse_all = 0x7FFFFFFF
    hostname = socket.gethostname()
    monkeypatch.setattr(isolation_module, "LIBC", _RefusingLibc(isolation_module.LIBC, refused_flags=refuse_all))
    with caplog.at_level(logging.WARNING, logger="llmt.rlvr.sandbox"):
        sandbox = Sandbox(LIMITS, isolation="rlimits")
    report, seen = _observe(sandbox, host)
    _assert_report_is_true(report, seen, host)
    assert report.missing() == ["network_namespace", "mount_namespace", "private_tmp", "hidden_identity",
                                "ipc_namespace", "pid_namespace", "private_filesystem"]
    assert seen["connects"] and seen["written"]  # what the report admits really happened
    assert "network_namespace: unshare(CLONE_NEWNET) failed: Operation not permitted (EPERM)" in report.reasons
    warning = caplog.text
    assert "host's network" in warning and "host's /tmp" in warning and "unshare(CLONE_NEWNET) failed" in warning
    assert "network_namespace" not in warning.split("In force:")[1].split(".")[0]
    assert socket.gethostname() == hostname  # sethostname is never called outside a UTS namespace of its own


@needs_root
def test_refused_network_namespace_alone(host, fresh_fallback, monkeypatch, caplog):
    monkeypatch.setattr(isolation_module, "LIBC", _RefusingLibc(isolation_module.LIBC, refused_flags=CLONE_NEWNET))
    with caplog.at_level(logging.WARNING, logger="llmt.rlvr.sandbox"):
        sandbox = Sandbox(LIMITS, isolation="rlimits")
    report, seen = _observe(sandbox, host)
    _assert_report_is_true(report, seen, host)
    assert not report.network_namespace and not report.hidden_identity and report.private_tmp
    assert seen["connects"] and seen["default_route"] == _has_default_route()
    assert "the host's network" in caplog.text and "EPERM" in caplog.text


@needs_root
def test_a_refused_mount_leaves_that_directory_shared_and_says_so(host, fresh_fallback, monkeypatch):
    monkeypatch.setattr(isolation_module, "LIBC", _RefusingLibc(isolation_module.LIBC, refused_targets=(b"/var/tmp",)))
    report, seen = _observe(Sandbox(LIMITS, isolation="rlimits"), host)
    _assert_report_is_true(report, seen, host)
    assert not report.private_tmp and report.network_namespace
    assert any("/var/tmp" in reason for reason in report.reasons)
    assert [p for p in seen["written"] if os.path.exists(p)] == [p for p in host["markers"] if p.startswith("/var/tmp")]


@needs_root
def test_a_failed_switch_to_nobody_stops_the_run(fresh_fallback, monkeypatch):
    def refuse():
        raise OSError(errno.EPERM, "setuid refused")

    monkeypatch.setattr(isolation_module, "become_nobody", refuse)
    with pytest.raises(RuntimeError, match="could not set up the program's isolation: .*setuid refused"):
        Sandbox(LIMITS, isolation="rlimits")


def test_the_unprivileged_fallback_claims_nothing_but_limits(fresh_fallback, monkeypatch, caplog):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # as a normal user: no namespaces are tried
    with caplog.at_level(logging.WARNING, logger="llmt.rlvr.sandbox"):
        sandbox = Sandbox(LIMITS, isolation="rlimits")
        result = sandbox.run("pass")
    assert result.report == sandbox.report and result.report.missing() == [x for x in LAYERS if x != "rlimits"]
    assert "runs as the calling user" in caplog.text and "host's network" in caplog.text


def test_report_round_trips_through_the_child_pipe():
    report = IsolationReport("rlimits", **{layer: i % 2 == 0 for i, layer in enumerate(LAYERS)},
                             reasons=("a: b failed: c (EPERM)", "d: e"))
    assert isolation_module.decode_report(isolation_module.encode_report(report)) == report


def _has_default_route() -> bool:
    lines = (_read("/proc/net/route") or "").splitlines()[1:]
    return any(line.split()[1] == "00000000" for line in lines if line.split())
