"""Files that survive interruption.

* :func:`atomic_write_text` writes to a temporary name in the same folder and renames it,
  so a reader never sees half a file.
* :class:`RecordLog` is the append-only ``records.jsonl``: a cell's rows are appended in one
  ``write`` followed by a ``{"_cell_done": id}`` sentinel row. Reading keeps only rows of
  cells whose sentinel is present, and drops a torn last line, so a run killed at any moment
  loses at most the cell in flight and never duplicates a row on resume.
* :class:`RunLock` is an advisory ``flock`` on the run directory: a second process on the same
  directory is refused with a clear message instead of interleaving writes.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from .errors import SpringbackError

SENTINEL = "_cell_done"


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _clean(obj: Any) -> Any:
    """Replace non-finite floats by None so the files stay strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    return json.dumps(_clean(obj), default=_json_default, allow_nan=False, **kwargs)


def _file_mode() -> int:
    """The mode a plainly created file gets (0666 minus the umask, usually 0644): mkstemp makes 0600
    files, which other users of a shared run directory could not read."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write(path: str | Path, data: str | bytes, mode: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, _file_mode())
    try:
        with os.fdopen(fd, mode) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never a mix."""
    _atomic_write(path, text, "w")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Binary :func:`atomic_write_text`."""
    _atomic_write(path, data, "wb")


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, dumps(obj, indent=2) + "\n")


class RecordLog:
    """``records.jsonl``: append-only rows grouped into cells, crash-safe on read."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _read_lines(self) -> tuple[list[dict], bool]:
        """All parseable rows, and whether a torn (unparseable or unterminated) tail was seen."""
        if not self.path.exists():
            return [], False
        raw = self.path.read_bytes()
        rows: list[dict] = []
        torn = False
        lines = raw.split(b"\n")
        # A complete file ends with a newline, so the last element is empty.
        if lines and lines[-1] != b"":
            torn = True
        for line in lines[:-1] if not torn else lines:
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                torn = True
        return rows, torn

    def done_cells(self) -> set[str]:
        rows, _ = self._read_lines()
        return {r[SENTINEL] for r in rows if SENTINEL in r}

    def rows(self) -> list[dict]:
        """Rows of completed cells only, in file order (sentinels removed)."""
        rows, _ = self._read_lines()
        done = {r[SENTINEL] for r in rows if SENTINEL in r}
        return [r for r in rows if SENTINEL not in r and r.get("cell") in done]

    def repair(self) -> int:
        """Rewrite the file without rows of unfinished cells or a torn tail; returns rows dropped."""
        rows, torn = self._read_lines()
        done = {r[SENTINEL] for r in rows if SENTINEL in r}
        keep = [r for r in rows if (SENTINEL in r) or r.get("cell") in done]
        dropped = len(rows) - len(keep)
        if dropped or torn:
            atomic_write_text(self.path, "".join(dumps(r) + "\n" for r in keep))
        return dropped + int(torn)

    def append_cell(self, cell_id: str, rows: Iterable[dict]) -> None:
        """Append a cell's rows and its sentinel in a single write, then fsync."""
        lines = [dumps({**r, "cell": cell_id}) for r in rows]
        lines.append(dumps({SENTINEL: cell_id}))
        blob = ("\n".join(lines) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())


class RunLock:
    """Exclusive advisory lock on a directory (``.lock``); refuses a second holder."""

    def __init__(self, directory: str | Path, wait: bool = False):
        self.path = Path(directory) / ".lock"
        self.wait = wait
        self._fh = None

    def __enter__(self) -> "RunLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a+")
        flags = fcntl.LOCK_EX if self.wait else fcntl.LOCK_EX | fcntl.LOCK_NB
        try:
            fcntl.flock(self._fh.fileno(), flags)
        except BlockingIOError:
            self._fh.close()
            self._fh = None
            raise SpringbackError(
                f"another springback process is using {self.path.parent} "
                "(wait for it to finish, or use a different --out)"
            ) from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(str(os.getpid()))
        self._fh.flush()
        return self

    def __exit__(self, *exc: Any) -> None:
        import fcntl

        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def check_writable(directory: str | Path, min_free_mb: float = 50.0) -> None:
    """Fail early, with a clear message, if ``directory`` cannot be written or the disk is full."""
    d = Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = d / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise SpringbackError(f"output directory {d} is not writable: {exc.strerror or exc}") from None
    stat = os.statvfs(d)
    free_mb = stat.f_bavail * stat.f_frsize / 2**20
    if free_mb < min_free_mb:
        raise SpringbackError(f"not enough free disk space in {d}: {free_mb:.0f} MiB free, need {min_free_mb:.0f}")


# ----------------------------------------------------------------------------- content fingerprints

_FINGERPRINTS: dict[tuple[str, int, int], str] = {}


def _memo_file() -> Path:
    """Where file hashes are remembered across processes ($SPRINGBACK_HASH_CACHE, else ~/.cache)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "springback" / "file-hashes.json"
    return Path(os.environ.get("SPRINGBACK_HASH_CACHE", default))


def _file_hash(path: Path) -> str:
    """sha256 of a file's bytes, computed once per (path, size, mtime) and remembered on disk."""
    import hashlib

    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _FINGERPRINTS:
        return _FINGERPRINTS[key]
    memo_path = _memo_file()
    disk: dict = {}
    try:
        disk = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        pass
    entry = "|".join(map(str, key))
    if entry not in disk:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
        disk[entry] = h.hexdigest()
        try:
            atomic_write_text(memo_path, json.dumps(disk))
        except OSError:  # a read-only home is no reason to fail a run
            pass
    _FINGERPRINTS[key] = disk[entry]
    return disk[entry]


def fingerprint(path: str | Path) -> str:
    """A content hash of a file, or of every file in a directory (names and bytes; hidden files
    and springback's own cache markers excluded): what a cache key needs to notice that a model
    or data file changed under the same path."""
    import hashlib

    p = Path(path).expanduser()
    if p.is_file():
        return _file_hash(p)
    if not p.is_dir():
        raise SpringbackError(f"cannot fingerprint {path}: no such file or directory")
    h = hashlib.sha256()
    for f in sorted(q for q in p.rglob("*") if q.is_file() and not any(part.startswith(".") for part in q.relative_to(p).parts)):
        if f.name == "key.json":
            continue
        h.update(str(f.relative_to(p)).encode() + b"\0" + _file_hash(f).encode() + b"\n")
    return h.hexdigest()
