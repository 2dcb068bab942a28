"""File modes of a node's secrets and state: the data directory is 0700, store and
governance files 0600, and a secret file that group or others may read is refused.

``serve`` also sets the process umask to 077, so that whatever else the node creates
(SQLite's -wal and -shm files, lock and marker files, checkpoints) is private too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gateway.tomlfile import ConfigError

PRIVATE_UMASK = 0o077
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def private_dir(path: str | Path) -> Path:
    """Create ``path`` (mode 0700) or tighten it to 0700; ConfigError when that is impossible."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = _mode(path)
    if mode & 0o077:
        try:
            os.chmod(path, 0o700)
        except OSError as exc:
            raise ConfigError(path, "", f"the data directory is open to group or others (mode "
                                        f"{mode:04o}) and cannot be made private ({exc.strerror}); "
                                        f"run `chmod 700 {path}`") from None
    return path


def private_file(path: str | Path) -> Path:
    """Create ``path`` empty with mode 0600 when missing, else tighten it (and SQLite's side
    files next to it) to 0600. SQLite gives new -wal and -shm files the database's mode."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        os.close(fd)
    for p in (path, *(path.with_name(path.name + s) for s in _SQLITE_SIDE_FILES)):
        try:
            if _mode(p) & 0o077:
                os.chmod(p, 0o600)
        except FileNotFoundError:
            continue
    return path


def check_private(path: str | Path, what: str) -> Path:
    """Refuse a secret file that group or others may access (a missing file passes: its
    loader reports that). The message names the file and the fix."""
    path = Path(path)
    try:
        mode = _mode(path)
    except FileNotFoundError:
        return path
    if mode & 0o077:
        raise ConfigError(path, "", f"permissions {mode:04o} are too open for {what} (group or others "
                                    f"may read it, and it holds secrets); run `chmod 600 {path}`")
    return path
