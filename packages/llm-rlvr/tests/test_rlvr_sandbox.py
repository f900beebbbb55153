"""Hostile programs: each must be contained, score 0, and leave the calling process running.

Every case runs under both isolation levels: bubblewrap (skipped where it is not installed; CI
installs it) and the fallback (forced with isolation="rlimits" even where bwrap is installed),
which must also warn loudly that it is weaker. The cases that depend on the fallback's namespaces
(temp files, host identity, network) hold where the kernel lets root create them, as the report
says (``test_rlvr_sandbox_report.py`` checks the report against what a program sees).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
import uuid

import pytest

from llm_rlvr.isolation import PRIVATE_TMP_DIRS
from llm_rlvr.sandbox import Sandbox, SandboxLimits, bwrap_usable
from llm_rlvr.verifiers.code import CodeConfig, CodeVerifier

LIMITS = SandboxLimits(wall_seconds=4, cpu_seconds=2, memory_mb=256, output_bytes=10_000, processes=16)
IS_ROOT = os.geteuid() == 0

ISOLATIONS = [
    pytest.param("bwrap", marks=pytest.mark.skipif(not bwrap_usable(), reason="bubblewrap not installed (apt-get "
                                                   "install bubblewrap) or unable to create namespaces here")),
    "rlimits",
]


@pytest.fixture(params=ISOLATIONS)
def isolation(request):
    return request.param


def _verifier(isolation: str) -> CodeVerifier:
    return CodeVerifier(CodeConfig(isolation=isolation, wall_seconds=LIMITS.wall_seconds,
                                   cpu_seconds=LIMITS.cpu_seconds, memory_mb=LIMITS.memory_mb,
                                   processes=LIMITS.processes, output_bytes=LIMITS.output_bytes))


def _assert_contained(isolation: str, program: str, max_seconds: float = 8.0):
    start = time.monotonic()
    verdict = _verifier(isolation).verify("", program, "")
    assert verdict.score == 0.0 and not verdict.passed, verdict
    assert time.monotonic() - start < max_seconds
    # The trainer (this process) is alive and the sandbox still works afterwards.
    assert _verifier(isolation).verify("", "print('still fine')", "assert True").passed
    return verdict


def _namespaces_are_private(isolation: str) -> None:
    """Skip a fallback case where the kernel refused the fallback's namespaces (the report says so)."""
    report = Sandbox(LIMITS, isolation=isolation).report
    if report.missing() != [layer for layer in report.missing() if layer in ("pid_namespace", "private_filesystem")]:
        pytest.skip(f"the fallback's namespaces are not available here: {report.describe()}")


def _processes_left(uid: int, timeout: float = 3.0) -> list[str]:
    """The command lines of ``uid``'s processes still alive after ``timeout`` (empty once all are gone)."""
    deadline = time.monotonic() + timeout
    while True:
        owned = [p for p in os.listdir("/proc") if p.isdigit() and _uid_of(p) == uid]
        if not owned or time.monotonic() > deadline:
            return [f"{p} {_cmdline(p)}" for p in owned]
        time.sleep(0.1)


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "?"


def _uid_of(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except FileNotFoundError:
        return None


def test_well_behaved_program_passes(isolation):
    sandbox = Sandbox(LIMITS, isolation=isolation)
    result = sandbox.run("import sys; print(sum(range(10))); print('err', file=sys.stderr)")
    assert result.ok and result.stdout == "45\n" and result.stderr == "err\n"
    assert result.isolation == isolation


def test_infinite_loop(isolation):
    verdict = _assert_contained(isolation, "while True:\n    pass\n")
    assert "timed out" in verdict.reason or "exit" in verdict.reason  # wall clock or SIGXCPU


def test_sleeping_forever_hits_the_wall_clock(isolation):
    verdict = _assert_contained(isolation, "import time\ntime.sleep(1000)\n")
    assert verdict.reason == "timed out"


@pytest.mark.skipif(not IS_ROOT, reason="the unprivileged-user switch is what stops fork bombs under root")
def test_fork_bomb(isolation):
    program = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    _assert_contained(isolation, program, max_seconds=10)
    survivors = _processes_left(65534)
    assert not survivors, f"fork bomb processes survived the sandbox: {survivors}"


def test_memory_bomb(isolation):
    verdict = _assert_contained(isolation, "x = []\nwhile True:\n    x.append(bytearray(10**7))\n")
    assert "MemoryError" in verdict.reason or "exit" in verdict.reason


def test_huge_output(isolation):
    verdict = _assert_contained(isolation, "while True:\n    print('x' * 10000)\n")
    assert verdict.reason == "output limit exceeded"
    result = Sandbox(LIMITS, isolation=isolation).run("print('y' * 10**6)")
    assert len(result.stdout) <= LIMITS.output_bytes and result.output_truncated


def test_writing_outside_its_temp_dir(isolation, tmp_path):
    target = tmp_path / "owned.txt"
    os.chmod(tmp_path, 0o755)
    _assert_contained(isolation, f"open({str(target)!r}, 'w').write('pwned')\n")
    assert not target.exists()


def test_reading_a_file_outside_its_temp_dir(isolation, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    os.chmod(secret, 0o600)
    os.chmod(tmp_path, 0o755)
    verdict = _assert_contained(isolation, f"print(open({str(secret)!r}).read())\n")
    assert "TOP-SECRET" not in verdict.reason
    result = Sandbox(LIMITS, isolation=isolation).run(f"print(open({str(secret)!r}).read())")
    assert "TOP-SECRET" not in result.stdout


def test_leaving_files_in_the_host_temp_dirs(isolation):
    _namespaces_are_private(isolation)
    markers = [os.path.join(d, f"llmt-hostile-{uuid.uuid4().hex}") for d in PRIVATE_TMP_DIRS if os.path.isdir(d)]
    program = (f"for path in {markers!r}:\n    try:\n        open(path, 'w').write('pwned')\n"
               "    except OSError:\n        pass\nimport os\nos.makedirs('/tmp/deep/er', exist_ok=True)\n")
    try:
        result = Sandbox(LIMITS, isolation=isolation).run(program)
        assert result.ok, result.stderr
        assert [m for m in markers if os.path.exists(m)] == []
    finally:
        for marker in markers:
            if os.path.exists(marker):
                os.unlink(marker)


def test_reading_the_host_temp_dirs(isolation):
    _namespaces_are_private(isolation)
    path = f"/tmp/llmt-host-{uuid.uuid4().hex}"
    with open(path, "w") as handle:
        handle.write("HOST-TMP-SECRET")
    os.chmod(path, 0o644)  # world-readable: only the private /tmp keeps it from a program
    try:
        program = (f"import os\nprint(os.listdir('/tmp'))\ntry:\n    print(open({path!r}).read())\n"
                   "except OSError:\n    pass\n")
        result = Sandbox(LIMITS, isolation=isolation).run(program)
        assert result.ok and "HOST-TMP-SECRET" not in result.stdout
        assert os.path.basename(path) not in result.stdout
    finally:
        os.unlink(path)


def test_reading_the_host_identity(isolation):
    _namespaces_are_private(isolation)
    program = ("import socket\nprint(socket.gethostname())\nfor p in ('/etc/hostname', '/etc/machine-id'):\n"
               "    try:\n        print(open(p).read().strip())\n    except OSError:\n        pass\n")
    result = Sandbox(LIMITS, isolation=isolation).run(program)
    assert result.ok, result.stderr
    seen = set(result.stdout.split())
    for secret in (socket.gethostname(), *(_contents(p) for p in ("/etc/hostname", "/etc/machine-id"))):
        assert not secret or secret not in seen


def test_listing_network_interfaces_and_routes(isolation):
    _namespaces_are_private(isolation)
    program = ("import os, socket\nprint([n for _, n in socket.if_nameindex()])\n"
               "print(os.listdir('/sys/class/net') if os.path.isdir('/sys/class/net') else [])\n"
               "print([l.split()[1] for l in open('/proc/net/route').read().splitlines()[1:]])\n")
    result = Sandbox(LIMITS, isolation=isolation).run(program)
    assert result.ok, result.stderr
    interfaces, sys_interfaces, destinations = result.stdout.splitlines()
    assert interfaces == "['lo']" and sys_interfaces in ("['lo']", "[]") and destinations == "[]"


def _contents(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return ""


def test_environment_is_empty(isolation, monkeypatch):
    monkeypatch.setenv("LLMT_TEST_API_KEY", "sk-should-not-leak")
    result = Sandbox(LIMITS, isolation=isolation).run("import os; print(dict(os.environ))")
    assert result.ok and "sk-should-not-leak" not in result.stdout


@pytest.mark.skipif(not IS_ROOT and shutil.which("bwrap") is None,
                    reason="without root or bwrap there is no network namespace to drop into")
def test_network_connection(isolation):
    if isolation == "rlimits" and not IS_ROOT:
        pytest.skip("the fallback gets a network namespace only when started as root")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    program = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.send(b'hi')\n"
    _assert_contained(isolation, program)
    server.setblocking(False)  # a connection that got through would be waiting in the backlog
    with pytest.raises(BlockingIOError):
        server.accept()
    server.close()


@pytest.mark.skipif(not IS_ROOT and shutil.which("bwrap") is None,
                    reason="same-user fallback cannot stop a signal to the parent")
def test_signalling_its_parent(isolation):
    if isolation == "rlimits" and not IS_ROOT:
        pytest.skip("the same-user fallback cannot stop a signal to the parent")
    me = os.getpid()
    program = (f"import os, signal\nfor pid in (os.getppid(), {me}):\n    try:\n"
               "        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\n"
               "os.kill(-1, signal.SIGKILL)\nraise SystemExit(1)\n")
    _assert_contained(isolation, program)
    assert os.getpid() == me  # we are still here


def test_fallback_warns_loudly(caplog, monkeypatch):
    import llm_rlvr.sandbox as sandbox_module

    monkeypatch.setattr(sandbox_module, "_warned_fallback", False)
    with caplog.at_level(logging.WARNING, logger="llmt.rlvr.sandbox"):
        Sandbox(LIMITS, isolation="rlimits")
    assert "SANDBOX ISOLATION IS WEAKER" in caplog.text


def test_bwrap_required_but_missing(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install bubblewrap"):
        Sandbox(LIMITS, isolation="bwrap")


def test_unusable_bwrap_falls_back_loudly(monkeypatch, caplog):
    import llm_rlvr.sandbox as sandbox_module

    monkeypatch.setattr(sandbox_module, "_bwrap_probe", {})
    real_run = sandbox_module.Sandbox.run

    def run(self, source, stdin=""):  # bwrap fails; the fallback really runs
        if self.bwrap is None:
            return real_run(self, source, stdin)
        return sandbox_module.SandboxResult(1, "", "bwrap: No permissions to create new namespace", False, False,
                                            0.0, "bwrap", sandbox_module.bwrap_report(IS_ROOT))

    monkeypatch.setattr(sandbox_module.Sandbox, "run", run)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/bwrap")
    with caplog.at_level(logging.WARNING, logger="llmt.rlvr.sandbox"):
        assert Sandbox(LIMITS, isolation="auto").isolation == "rlimits"
    assert "cannot create its sandbox" in caplog.text
    monkeypatch.setattr(sandbox_module, "_bwrap_probe", {})
    with pytest.raises(RuntimeError, match="No permissions"):
        Sandbox(LIMITS, isolation="bwrap")
