"""What the sandbox really isolates, and the namespaces of its fallback when bubblewrap is absent.

``IsolationReport`` says, layer by layer, what is in force for a run, and why a missing layer is
missing. Without bubblewrap and as root, ``isolate_child`` (run in the forked child, before exec)
tries each namespace and mount on its own, checks every return value, and records the outcome:
nothing is claimed that a call did not do.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from dataclasses import dataclass
from typing import Literal

NOBODY_UID = 65534
NOBODY_GID = 65534
SANDBOX_HOSTNAME = "sandbox"
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
# The world-writable places where a program could leave files for the host (or read the host's).
PRIVATE_TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
# Files that name the host, shadowed by neutral read-only contents.
IDENTITY_FILES = {
    "/etc/hostname": f"{SANDBOX_HOSTNAME}\n",
    "/etc/hosts": f"127.0.0.1\tlocalhost {SANDBOX_HOSTNAME}\n::1\tlocalhost\n",
    "/etc/machine-id": "",
    "/var/lib/dbus/machine-id": "",
}

# Loaded here, in the parent: dlopen in a forked child could deadlock on the loader's lock.
LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
LIBC.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
LIBC.unshare.argtypes = [ctypes.c_int]

# What a program can still reach when a layer is missing, for the warning.
_GAPS = {
    "separate_user": "it runs as the calling user, so it can signal the trainer and touch everything "
                     "that user can",
    "network_namespace": "the host's network: its interfaces, routes, loopback services and the internet",
    "private_tmp": "the host's /tmp, /var/tmp, /dev/shm and /run/lock: it can read and leave files there",
    "hidden_identity": "the host's identity: its hostname, /etc/hostname, /etc/hosts, /etc/machine-id, "
                       "the names of its network interfaces in /sys",
    "ipc_namespace": "the host's System V IPC objects and POSIX message queues",
    "pid_namespace": "the host's process list in /proc, and a child that calls setsid survives the kill "
                     "until its CPU limit",
    "private_filesystem": "every world-readable file on the host, and world-writable places other than the "
                          "temp directories",
}


LAYERS = ("rlimits", "separate_user", "network_namespace", "mount_namespace", "private_tmp",
          "hidden_identity", "ipc_namespace", "pid_namespace", "private_filesystem")


@dataclass(frozen=True)
class IsolationReport:
    """The isolation actually applied to a run: each flag is True only when the calls behind it succeeded.

    ``reasons`` has one line per missing layer saying why (the failing call and its errno, or that
    the mode does not provide it).
    """

    mode: Literal["bwrap", "rlimits"]
    rlimits: bool  # CPU, address space, file size, open files, processes, no core dumps
    separate_user: bool  # runs as user nobody, not as the caller
    network_namespace: bool
    mount_namespace: bool  # mounts made for the program stay private to it
    private_tmp: bool  # fresh empty tmpfs on /tmp, /var/tmp, /dev/shm, /run/lock (bwrap: an empty /tmp only)
    hidden_identity: bool  # own hostname (UTS namespace), neutral identity files, the sandbox's own /sys
    ipc_namespace: bool
    pid_namespace: bool
    private_filesystem: bool  # only system paths visible (bwrap), not the host's whole tree
    reasons: tuple[str, ...] = ()

    def missing(self) -> list[str]:
        return [layer for layer in LAYERS if not getattr(self, layer)]

    def not_contained(self) -> list[str]:
        """What the program can reach, one sentence per missing layer."""
        return [_GAPS[layer] for layer in self.missing() if layer in _GAPS]

    def describe(self) -> str:
        gaps = self.not_contained()
        if not gaps:
            return f"{self.mode}: every layer in force"
        because = f" (because: {'; '.join(self.reasons)})" if self.reasons else ""
        return f"{self.mode}: NOT contained: " + "; ".join(gaps) + because


def bwrap_report(as_nobody: bool) -> IsolationReport:
    """bubblewrap either sets every namespace up or refuses to start the program."""
    layers = {layer: True for layer in LAYERS} | {"separate_user": as_nobody}
    reasons = () if as_nobody else ("separate_user: not started as root, so the program runs as the calling "
                                    "user (inside bubblewrap's namespaces)",)
    return IsolationReport("bwrap", **layers, reasons=reasons)


def unprivileged_fallback_report() -> IsolationReport:
    """Without bubblewrap and without root there is nothing to isolate with but the limits."""
    layers = {layer: False for layer in LAYERS} | {"rlimits": True}
    why = "not started as root: without bubblewrap no namespace can be created and no other user taken"
    return IsolationReport("rlimits", **layers, reasons=(why,))


# -- in the child, between fork and exec (root, no bubblewrap) -------------------------------

class _Attempts:
    """Runs the isolation calls, keeping for each layer whether every call behind it succeeded."""

    def __init__(self) -> None:
        self.done: dict[str, bool] = {}
        self.reasons: list[str] = []

    def run(self, layer: str, what: str, call, *args, independent: bool = False) -> bool:
        """Whether ``call(*args)`` succeeded. Once a step of a layer fails, the layer's later steps
        are skipped (they build on it) unless ``independent``; either way the layer stays failed."""
        if self.done.get(layer) is False and not independent:
            return False
        try:
            call(*args)
        except OSError as exc:
            name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            self.fail(layer, f"{what} failed: {exc.strerror or exc} ({name})", also=independent)
            return False
        self.done[layer] = self.done.get(layer, True)
        return True

    def fail(self, layer: str, why: str, *, also: bool = False) -> None:
        """Mark a layer failed; its first reason is kept, later ones only when ``also``."""
        if self.done.get(layer) is not False or also:
            self.reasons.append(f"{layer}: {why}")
        self.done[layer] = False

    def succeeded(self, layer: str) -> None:
        self.done[layer] = True

    def report(self) -> IsolationReport:
        for layer in LAYERS:
            if layer not in self.done:
                self.fail(layer, "not set up (nothing to apply it to)")
        return IsolationReport("rlimits", **{layer: self.done.get(layer, False) for layer in LAYERS},
                               reasons=tuple(self.reasons))


def _check(result: int) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _unshare(flag: int) -> None:
    _check(LIBC.unshare(flag))


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def encode(text: str | None) -> bytes | None:
        return None if text is None else text.encode()

    _check(LIBC.mount(encode(source), target.encode(), encode(fstype), flags, encode(data)))


def _sethostname(name: str) -> None:
    _check(LIBC.sethostname(name.encode(), len(name)))


def _write_file(path: str, content: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)


def _private_tmp(attempts: _Attempts, tmp_bytes: int) -> None:
    options = f"size={tmp_bytes},nr_inodes=16384,mode=1777"
    for path in PRIVATE_TMP_DIRS:
        if os.path.isdir(path) and not os.path.islink(path):
            attempts.run("private_tmp", f"mounting a tmpfs on {path}", _mount, "tmpfs", path, "tmpfs",
                         MS_NOSUID | MS_NODEV, options, independent=True)


def _recreate_workdir(workdir: str, source: bytes) -> None:
    """The program's folder sat in the host's /tmp, now covered: make it again in the private one."""
    if os.path.exists(os.path.join(workdir, "main.py")):
        return  # not under a covered directory: the (temporary) host folder is still there
    os.makedirs(workdir, mode=0o700)
    _write_file(os.path.join(workdir, "main.py"), source, 0o644)
    os.chown(workdir, NOBODY_UID, NOBODY_GID)


def _shadow_identity_files(attempts: _Attempts, staging: str) -> None:
    """Bind neutral read-only copies over the files that name the host. Each copy is unlinked at
    once (a bind mount keeps its source alive), so nothing is left in the program's folder."""
    seen: set[str] = set()
    for path, content in IDENTITY_FILES.items():
        real = os.path.realpath(path)
        if real in seen or not os.path.isfile(real):
            continue
        seen.add(real)
        copy = os.path.join(staging, f".identity-{len(seen)}")
        steps = [(f"writing a copy of {path}", _write_file, copy, content.encode(), 0o444),
                 (f"binding over {path}", _mount, copy, real, None, MS_BIND),
                 (f"making {path} read-only", _mount, None, real, None,
                  MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)]
        try:
            for what, call, *args in steps:  # each file on its own; its steps build on each other
                if not attempts.run("hidden_identity", what, call, *args, independent=True):
                    break
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(copy)


def become_nobody() -> None:
    """Drop root for user nobody, checked: the program must never run as root."""
    os.setgroups([])
    os.setgid(NOBODY_GID)
    os.setuid(NOBODY_UID)
    if os.getresuid() != (NOBODY_UID,) * 3 or os.getresgid() != (NOBODY_GID,) * 3:
        raise OSError(errno.EPERM, "the switch to user nobody did not take")


def isolate_child(workdir: str, source: bytes, tmp_bytes: int) -> IsolationReport:
    """Namespaces and mounts for the fallback, as root, then the switch to user nobody.

    Each namespace is unshared on its own so that a refused call (a container without
    CAP_SYS_ADMIN refuses them all) is reported for what it is. Mounts are made only once every
    mount is private, so that none can propagate back to the host. Raises OSError when the switch
    to nobody fails: the program must never run as root.
    """
    attempts = _Attempts()
    attempts.succeeded("rlimits")  # set by the caller, which raises when one fails
    attempts.run("network_namespace", "unshare(CLONE_NEWNET)", _unshare, CLONE_NEWNET)
    attempts.run("ipc_namespace", "unshare(CLONE_NEWIPC)", _unshare, CLONE_NEWIPC)
    if attempts.run("hidden_identity", "unshare(CLONE_NEWUTS)", _unshare, CLONE_NEWUTS):
        # Only inside a namespace of our own: in the host's, this would rename the host.
        attempts.run("hidden_identity", "sethostname", _sethostname, SANDBOX_HOSTNAME)
    if (attempts.run("mount_namespace", "unshare(CLONE_NEWNS)", _unshare, CLONE_NEWNS)
            and attempts.run("mount_namespace", "making every mount private (MS_REC|MS_PRIVATE)", _mount,
                             None, "/", None, MS_REC | MS_PRIVATE)):
        _private_tmp(attempts, tmp_bytes)
        _recreate_workdir(workdir, source)
        os.chdir(workdir)  # the inherited cwd may be the covered host folder
        _shadow_identity_files(attempts, workdir)
        if attempts.done.get("network_namespace"):  # sysfs lists the interfaces of its mounter's namespace
            attempts.run("hidden_identity", "mounting the private network namespace's sysfs on /sys", _mount,
                         "sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, independent=True)
        else:
            attempts.fail("hidden_identity", "no private network namespace, so /sys lists the host's interfaces")
    else:
        attempts.fail("private_tmp", "no private mount namespace to mount fresh temp directories in")
        attempts.fail("hidden_identity", "no private mount namespace to shadow the identity files in")
    become_nobody()
    attempts.succeeded("separate_user")
    attempts.fail("pid_namespace", "no bubblewrap: the program shares the host's PID namespace")
    attempts.fail("private_filesystem", "no bubblewrap: the host's filesystem is visible, guarded by permissions")
    return attempts.report()


def encode_report(report: IsolationReport) -> bytes:
    flags = "".join("1" if getattr(report, layer) else "0" for layer in LAYERS)
    return "\n".join([report.mode, flags, *report.reasons]).encode(errors="replace")


def decode_report(data: bytes) -> IsolationReport:
    mode, flags, *reasons = data.decode(errors="replace").split("\n")
    return IsolationReport(mode, **{layer: flag == "1" for layer, flag in zip(LAYERS, flags, strict=True)},
                           reasons=tuple(reasons))
