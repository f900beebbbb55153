"""A local sandbox for model-written Python: OS isolation, resource limits, a hard kill, capped output.

Layers, each stopping a different attack (``llm_rlvr.isolation.IsolationReport`` says, per run,
which are really in force):

* **bubblewrap** (``bwrap``, where installed): new user / PID / network / IPC / UTS namespaces,
  only the interpreter's system paths bound read-only (not the whole filesystem), an empty
  environment, and a private size-capped tmpfs as the only writable place.
* **An unprivileged user**: when the caller is root (CI is), the program runs as ``nobody``
  (uid 65534). That matters because ``RLIMIT_NPROC`` does not bind root: without the switch a fork
  bomb is not stopped.
* **The fallback's namespaces**: without bubblewrap, as root, each of a network, IPC, UTS and
  mount namespace is tried (fresh tmpfs on /tmp, /var/tmp, /dev/shm; neutral /etc/hostname,
  /etc/hosts, /etc/machine-id). Every call is checked; what failed is reported, never claimed.
  Without bubblewrap the sandbox logs a loud warning, once per process, listing what is not contained.
* **rlimits** set in the child before exec: CPU seconds, address space, file size, open files,
  process count, and no core dumps.
* **A new session**: on timeout or too much output the whole process group is SIGKILLed, and the
  sandbox waits until it is gone. With bwrap the PID namespace dies with it, so even a child that
  called setsid goes; without bwrap such a child survives until its CPU limit (a known gap).
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from llm_rlvr.isolation import (
    LAYERS,
    LIBC,
    NOBODY_GID,
    NOBODY_UID,
    SANDBOX_HOSTNAME,
    IsolationReport,
    become_nobody,
    bwrap_report,
    decode_report,
    encode_report,
    isolate_child,
    unprivileged_fallback_report,
)

log = logging.getLogger("llmt.rlvr.sandbox")

_SYSTEM_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3")
PR_SET_CHILD_SUBREAPER = 36
_warned_fallback = False
_subreaper = False
_bwrap_probe: dict[tuple[str, str], str] = {}  # (bwrap, python) -> "" when it works, else why not
_fallback_probe: dict[str, IsolationReport] = {}  # python -> what the fallback achieved on a trial run
_warned_reports: set[IsolationReport] = set()
SETUP_FAILED = "setup failed: "  # how the child's report starts when it raised


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandboxed run."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 5
    memory_mb: int = 1024  # address space; Python alone maps ~30 MB
    file_size_mb: int = 16
    open_files: int = 64
    processes: int = 32  # counted per user: shared by the sandboxes running at once
    output_bytes: int = 64_000  # stdout and stderr each
    tmp_size_mb: int = 64  # each private tmpfs (bwrap: /tmp; fallback as root: /tmp, /var/tmp, /dev/shm)


@dataclass(frozen=True)
class SandboxResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    output_truncated: bool
    seconds: float
    isolation: Literal["bwrap", "rlimits"]
    report: IsolationReport  # what was really in force for this run

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.output_truncated


def _others_can_execute(path: str) -> bool:
    """Whether an unrelated user could reach and run ``path`` (every parent dir world-searchable)."""
    path = os.path.realpath(path)
    parts = path.split(os.sep)
    for i in range(2, len(parts) + 1):
        mode = os.stat(os.sep.join(parts[:i]) or os.sep).st_mode
        if not mode & 0o001:
            return False
    return True


def _bind_args_for(paths: list[str]) -> list[str]:
    args: list[str] = []
    for path in paths:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            args += ["--ro-bind", path, path]
    return args


class Sandbox:
    """Runs Python source in isolation. ``isolation="auto"`` uses bwrap when it is on the PATH."""

    def __init__(self, limits: SandboxLimits | None = None, *, isolation: Literal["auto", "bwrap", "rlimits"] = "auto",
                 python: str | None = None):
        self.limits = limits or SandboxLimits()
        bwrap = shutil.which("bwrap")
        if isolation == "bwrap" and bwrap is None:
            raise RuntimeError("isolation='bwrap' but bubblewrap is not installed; install it "
                               "(Debian/Ubuntu: apt-get install bubblewrap) or use isolation='auto'")
        self.bwrap = bwrap if isolation in ("auto", "bwrap") else None
        self.drop_to_nobody = os.geteuid() == 0
        self.python = python or self._pick_python()
        self.report: IsolationReport | None = None  # what every run gets; None during the trial runs
        _become_subreaper()
        if self.bwrap is not None:
            problem = self._bwrap_problem()
            if problem and isolation == "bwrap":
                raise RuntimeError(f"isolation='bwrap' but bubblewrap cannot create its sandbox here: {problem}")
            if problem:
                log.warning("bubblewrap is installed but cannot create its sandbox here (%s); "
                            "falling back to resource limits", problem)
                self.bwrap = None
        self.report = self._expected_report()
        if self.bwrap is None:
            self._warn_fallback()

    def _bwrap_problem(self) -> str:
        """Why bwrap fails to run a trivial program (user namespaces disabled...), or "" when it works.
        Probed once per process and interpreter."""
        key = (self.bwrap, self.python)
        if key not in _bwrap_probe:
            result = self.run("pass")
            _bwrap_probe[key] = "" if result.ok else (result.stderr.strip() or f"exit {result.returncode}")[:300]
        return _bwrap_probe[key]

    def _expected_report(self) -> IsolationReport:
        """What each run gets: fixed for bwrap and for the unprivileged fallback; as root, what the
        fallback's namespaces achieved on a trial run (probed once per process and interpreter)."""
        if self.bwrap is not None or not self.drop_to_nobody:
            return self._static_report()
        if self.python not in _fallback_probe:
            _fallback_probe[self.python] = self.run("pass").report
        return _fallback_probe[self.python]

    @property
    def isolation(self) -> Literal["bwrap", "rlimits"]:
        return "bwrap" if self.bwrap else "rlimits"

    def _pick_python(self) -> str:
        """This interpreter if the sandbox user can run it, else a system python3 it can run."""
        candidates = [os.path.realpath(sys.executable), *_SYSTEM_PYTHONS]
        for candidate in candidates:
            if os.path.exists(candidate) and (not self.drop_to_nobody or _others_can_execute(candidate)):
                return os.path.realpath(candidate)
        raise RuntimeError(f"no Python interpreter the sandbox user can run; tried {candidates}. Pass "
                           "python=... pointing at one in a world-readable location.")

    def _warn_fallback(self) -> None:
        global _warned_fallback
        if not _warned_fallback:
            _warned_fallback = True
            in_force = [layer for layer in LAYERS if layer not in self.report.missing()]
            log.warning(
                "SANDBOX ISOLATION IS WEAKER: bubblewrap (bwrap) is not in use. In force: %s. NOT "
                "contained, model-written code can reach: %s. Why: %s. Install bubblewrap (apt-get "
                "install bubblewrap) for full namespace isolation.",
                ", ".join(in_force), "; ".join(f"({i}) {gap}" for i, gap in
                                               enumerate(self.report.not_contained(), 1)),
                "; ".join(self.report.reasons))

    # -- building the command -------------------------------------------------------------

    def _command(self, workdir: str) -> list[str]:
        run_python = [self.python, "-I", "-B"]
        if self.bwrap is None:
            return [*run_python, os.path.join(workdir, "main.py")]
        prefix = os.path.dirname(os.path.dirname(self.python))  # .../bin/python3 -> ...
        system = ["/usr", "/bin", "/lib", "/lib64", "/sbin", "/etc/alternatives"]
        binds = _bind_args_for(system) + ([] if prefix in ("/usr", "/") else _bind_args_for([prefix]))
        return [
            # No --new-session: the program must stay in our process group so killpg reaches it
            # (it has no controlling terminal anyway, which is what --new-session protects).
            self.bwrap, "--unshare-all", "--die-with-parent", "--clearenv",
            "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp", "--setenv", "LANG", "C.UTF-8",
            "--hostname", SANDBOX_HOSTNAME,
            *binds, "--proc", "/proc", "--dev", "/dev",
            "--size", str(self.limits.tmp_size_mb * 1024 * 1024), "--tmpfs", "/tmp",
            "--ro-bind", os.path.join(workdir, "main.py"), "/sandbox/main.py", "--chdir", "/tmp",
            *run_python, "/sandbox/main.py",
        ]

    def _preexec(self, workdir: str, source: bytes, report_fd: int) -> Callable[[], None]:
        """What the child does before exec: limits, then as root the fallback's namespaces (without
        bwrap) and user nobody. It writes what it achieved, or why it failed, to ``report_fd``."""

        def setup() -> None:
            try:
                self._set_limits()
                if self.drop_to_nobody and self.bwrap is None:
                    report = isolate_child(workdir, source, self.limits.tmp_size_mb * 1024 * 1024)
                else:
                    if self.drop_to_nobody:  # bwrap brings its own namespaces
                        become_nobody()
                    report = self._static_report()
                os.write(report_fd, encode_report(report))
            except BaseException as exc:
                os.write(report_fd, f"{SETUP_FAILED}{type(exc).__name__}: {exc}".encode(errors="replace"))
                raise
            finally:
                os.close(report_fd)

        return setup

    def _static_report(self) -> IsolationReport:
        return bwrap_report(self.drop_to_nobody) if self.bwrap else unprivileged_fallback_report()

    def _set_limits(self) -> None:
        lim = self.limits
        mb = 1024 * 1024
        for kind, value in ((resource.RLIMIT_CPU, lim.cpu_seconds), (resource.RLIMIT_AS, lim.memory_mb * mb),
                            (resource.RLIMIT_FSIZE, lim.file_size_mb * mb), (resource.RLIMIT_NOFILE, lim.open_files),
                            (resource.RLIMIT_NPROC, lim.processes), (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(kind, (value, value))

    # -- running ---------------------------------------------------------------------------

    def run(self, source: str, stdin: str = "") -> SandboxResult:
        workdir = tempfile.mkdtemp(prefix="llmt-sandbox-")
        try:
            with open(os.path.join(workdir, "main.py"), "w", encoding="utf-8") as handle:
                handle.write(source)
            if self.drop_to_nobody:
                os.chown(workdir, NOBODY_UID, NOBODY_GID)
                os.chmod(os.path.join(workdir, "main.py"), 0o644)
            return self._execute(self._command(workdir), workdir, source.encode("utf-8"), stdin)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _start(self, command: list[str], workdir: str, source: bytes) -> tuple[subprocess.Popen, IsolationReport]:
        """Start the program; return it with the isolation its child reported before exec."""
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir}
        report_r, report_w = os.pipe()
        try:
            try:
                proc = subprocess.Popen(
                    command, cwd=workdir, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, start_new_session=True,
                    # Plain system calls and no locks (no imports, no logging; libc loaded beforehand),
                    # which is what keeps a preexec_fn safe when the parent has threads.
                    preexec_fn=self._preexec(workdir, source, report_w))  # noqa: PLW1509
            finally:
                os.close(report_w)
            written = _read_all(report_r)
        except subprocess.SubprocessError as exc:
            why = _read_all(report_r).decode(errors="replace").removeprefix(SETUP_FAILED)
            raise RuntimeError(f"the sandbox could not set up the program's isolation: {why or exc}") from exc
        finally:
            os.close(report_r)
        report = decode_report(written)
        if self.report is not None and report != self.report and report not in _warned_reports:
            _warned_reports.add(report)
            log.warning("sandbox isolation of a run differs from what was announced: %s", report.describe())
        return proc, report

    def _execute(self, command: list[str], workdir: str, source: bytes, stdin: str) -> SandboxResult:
        start = time.monotonic()
        proc, report = self._start(command, workdir, source)
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(stdin.encode())
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        out, err, timed_out, truncated = self._collect(proc, start)
        if not (timed_out or truncated):
            try:  # the pipes may close before the program ends (it can close its own stdout)
                proc.wait(timeout=max(0.0, self.limits.wall_seconds - (time.monotonic() - start)))
            except subprocess.TimeoutExpired:
                timed_out = True
        if timed_out or truncated:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        returncode = proc.wait()  # reap the leader, so that only live leftovers keep the group
        _kill_group(proc)  # children that outlived the leader
        return SandboxResult(None if timed_out else returncode, out.decode(errors="replace"),
                             err.decode(errors="replace"), timed_out, truncated,
                             time.monotonic() - start, self.isolation, report)

    def _collect(self, proc: subprocess.Popen, start: float) -> tuple[bytes, bytes, bool, bool]:
        """Read both pipes until EOF, the wall-clock limit, or the output cap."""
        cap = self.limits.output_bytes
        buffers = {proc.stdout: bytearray(), proc.stderr: bytearray()}
        selector = selectors.DefaultSelector()
        for pipe in buffers:
            selector.register(pipe, selectors.EVENT_READ)
        timed_out = truncated = False
        open_pipes = 2
        while open_pipes:
            remaining = self.limits.wall_seconds - (time.monotonic() - start)
            if remaining <= 0:
                timed_out = True
                break
            for key, _ in selector.select(timeout=remaining):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    open_pipes -= 1
                    continue
                buf = buffers[key.fileobj]
                buf += chunk[: cap - len(buf)]
                if len(buf) >= cap:
                    truncated = True
            if truncated:
                break
        selector.close()
        for pipe in buffers:
            pipe.close()
        return bytes(buffers[proc.stdout]), bytes(buffers[proc.stderr]), timed_out, truncated


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _become_subreaper() -> None:
    """Adopt our orphaned descendants so we can reap them at once.

    bwrap's outer process exits before reaping its namespace's init, which is then re-parented to
    PID 1; a container's PID 1 may reap it only a second later, and a zombie still counts against
    the sandbox user's process limit. As a child subreaper we inherit those zombies instead, and
    ``_kill_group`` reaps exactly the ones in the sandbox's process group.
    """
    global _subreaper
    if not _subreaper:
        with contextlib.suppress(OSError, AttributeError):
            LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        _subreaper = True


def _kill_group(proc: subprocess.Popen, grace_s: float = 3.0) -> None:
    """SIGKILL the whole group, reap its zombies, and return once it is gone: dying processes
    still count against the user's process limit, so the next sandbox could not start."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-proc.pid, os.WNOHANG)[0]:
                pass
        time.sleep(0.002)
    log.warning("sandbox process group %d did not exit within %.1fs of SIGKILL", proc.pid, grace_s)


def bwrap_usable() -> bool:
    """Whether bubblewrap is installed and can create its sandbox on this machine."""
    if shutil.which("bwrap") is None:
        return False
    return Sandbox(isolation="auto").isolation == "bwrap"
