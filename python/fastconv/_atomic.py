"""Atomic file writes that leave no partial or temporary file behind, even when the process dies.

    atomic_write(path, lambda f: f.write(data))     # f is a binary file object

A reader sees the old file or the new one, never a mix. How the new file comes into being:
  1. Linux, on file systems with O_TMPFILE (ext4, xfs, btrfs, tmpfs): the data goes into an
     unnamed file in the target's folder, which is given a name only once complete (linkat of
     /proc/self/fd/N to a temporary name, then rename over the target). A process killed while
     writing (SIGKILL included) leaves nothing: the kernel frees an unnamed file on close.
  2. Elsewhere, or if step 1 fails: a named temporary file ".NAME.HOST.PID.RANDOM.fastconv-tmp" beside
     the target, renamed over it when complete.
On an exception or KeyboardInterrupt the temporary file is removed. A temporary name can outlive
only a SIGKILL (or power loss) in the microseconds between naming and renaming (step 1) or during
the whole write (step 2); the next atomic_write into the same folder removes such leftovers,
those of its own host whose process is gone (a live writer's file is never touched).
No fsync: the guarantee is against killed processes, not against power loss.
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
from pathlib import Path

__all__ = ["atomic_write"]

_SUFFIX = ".fastconv-tmp"


def _host():
    return socket.gethostname().replace(".", "_") or "host"


def _temp_name(path):
    token = secrets.token_hex(4)  # two threads of one process may write the same target
    return path.parent / f".{path.name}.{_host()}.{os.getpid()}.{token}{_SUFFIX}"


def _remove_stale(folder):
    """Remove temporary files of dead writers on this host (see the module doc)."""
    host = _host()
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not (name.startswith(".") and name.endswith(_SUFFIX)):
            continue
        parts = name[: -len(_SUFFIX)].rsplit(".", 3)
        if len(parts) != 4 or parts[1] != host or not parts[2].isdigit():
            continue
        pid = int(parts[2])
        if pid == os.getpid() or _alive(pid):
            continue
        try:
            os.unlink(os.path.join(folder, name))
        except OSError:
            pass


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def _write_unnamed(path, write):
    """Step 1 of the module doc; False when the platform or file system cannot do it."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not os.path.isdir("/proc/self/fd"):
        return False
    try:
        fd = os.open(path.parent, flag | os.O_WRONLY | os.O_CLOEXEC, 0o666)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            return False  # no O_TMPFILE here (ENOENT: old kernels that read it as O_DIRECTORY)
        raise OSError(e.errno, f"cannot create a file in {path.parent}: {e.strerror}") from None
    tmp = _temp_name(path)
    try:
        with os.fdopen(fd, "wb", closefd=False) as f:
            write(f)
        try:
            _link_fd(fd, tmp)
        except OSError:
            return False  # e.g. no linkat through /proc: the named route rewrites it
        try:
            os.replace(tmp, path)
        except BaseException:
            _unlink(tmp)
            raise
        return True
    finally:
        os.close(fd)


def _link_fd(fd, name):
    """Give the unnamed file open as fd a name: linkat(/proc/self/fd/N, AT_SYMLINK_FOLLOW).
    os.link calls plain link() (which does not follow the /proc link) unless a dir_fd is given."""
    proc = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.link(str(fd), name, src_dir_fd=proc, follow_symlinks=True)
    finally:
        os.close(proc)


def _unlink(p):
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass


def atomic_write(path, write):
    """Create or replace the file at path with what write(f) writes into a binary file object f.
    OSError (naming the path) when the folder is missing or not writable or path is a folder."""
    path = Path(os.path.abspath(os.fspath(path)))
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, expected a file path", str(path))
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such folder", str(path.parent))
    _remove_stale(path.parent)
    if _write_unnamed(path, write):
        return
    tmp = _temp_name(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise
