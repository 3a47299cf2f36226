"""Opening zip and tar archives that came from elsewhere (a model downloaded by a user).

Python's ``tarfile`` (before 3.14) extracts members as they are: an entry named
``../../x`` or ``/etc/x``, or a symbolic link followed by a file written through it, lands
outside the target directory. :func:`check_archive` reads the member list first and refuses
the archive, naming it and the entry, when any member

* has an absolute path or a ``..`` component,
* is anything but a regular file or a directory (symbolic and hard links, device files,
  fifos),
* appears twice,

or when the members together would expand past ``max_bytes``. :func:`extract_archive`
then writes only those members, as new files of ours (no mode, owner or time is taken
from the archive), into a directory that must not exist yet, and counts the bytes again
while it writes: a zip's headers can declare sizes other than what decompresses.

The size bound is :data:`DEFAULT_MAX_BYTES` unless the caller gives one or the environment
variable :data:`MAX_BYTES_ENV` is set (``20GB``, ``500MiB`` or a number of bytes).
"""

import os
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import List, NamedTuple, Optional, Union

import humanfriendly

PathLike = Union[str, Path]

MAX_BYTES_ENV = "ESPNET_ASRSER_MAX_UNPACKED_BYTES"
# Above any ESPnet model-zoo ASR archive (the largest are a few GB unpacked); an archive
# beyond this is either not a model or meant to fill the disk.
DEFAULT_MAX_BYTES = 20 * 1024**3
_CHUNK = 1 << 20


class UnsafeArchiveError(ValueError):
    """An archive refused before anything was extracted; the message names the entry."""


class Member(NamedTuple):
    name: str  # as stored, "/"-separated, relative
    is_dir: bool
    size: int  # declared uncompressed size


def max_unpacked_bytes(max_bytes: Optional[int] = None) -> int:
    """``max_bytes`` if given, else :data:`MAX_BYTES_ENV`, else :data:`DEFAULT_MAX_BYTES`."""
    if max_bytes is not None:
        return int(max_bytes)
    value = os.environ.get(MAX_BYTES_ENV)
    if not value:
        return DEFAULT_MAX_BYTES
    try:
        return humanfriendly.parse_size(value, binary=True)
    except humanfriendly.InvalidSize as e:
        raise ValueError(f"{MAX_BYTES_ENV}={value!r}: not a size (e.g. 20GB, 500MiB): {e}")


def unsafe_name(name: str) -> Optional[str]:
    """Why a member name could write outside the target directory, or None."""
    if not name:
        return "has an empty name"
    # Backslashes and drive letters are separators on Windows: refused wherever we run.
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "has an absolute path"
    if ".." in name.replace("\\", "/").split("/"):
        return "has a '..' component"
    if "\0" in name:
        return "has a NUL byte in its name"
    return None


def _tar_members(tf: tarfile.TarFile, where: Path) -> List[Member]:
    members = []
    for info in tf.getmembers():
        if info.isreg() or info.isdir():
            members.append(Member(info.name, info.isdir(), info.size if info.isreg() else 0))
            continue
        kind = ("a symbolic link" if info.issym() else "a hard link" if info.islnk()
                else "a device file" if info.isdev() and not info.isfifo()
                else "a fifo" if info.isfifo() else f"of tar type {info.type!r}")
        target = f" to {info.linkname}" if info.issym() or info.islnk() else ""
        raise UnsafeArchiveError(
            f"{where}: entry '{info.name}' is {kind}{target}; only regular files and "
            "directories are extracted. Refused before anything was written: get the "
            "archive from its publisher again, or repack it without links"
        )
    return members


def _zip_members(zf: zipfile.ZipFile, where: Path) -> List[Member]:
    members = []
    for info in zf.infolist():
        # Unix modes travel in the high 16 bits of external_attr (0 when made elsewhere).
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            what = "a symbolic link" if kind == stat.S_IFLNK else f"of file type {oct(kind)}"
            raise UnsafeArchiveError(
                f"{where}: entry '{info.filename}' is {what}; only regular files and "
                "directories are extracted. Refused before anything was written: get the "
                "archive from its publisher again, or repack it without links"
            )
        members.append(Member(info.filename, info.is_dir(), 0 if info.is_dir() else info.file_size))
    return members


def check_archive(archive: PathLike, max_bytes: Optional[int] = None) -> List[Member]:
    """The members of ``archive`` (.zip or a tar, compressed or not), once every one has
    been checked; :class:`UnsafeArchiveError` naming the archive and the entry otherwise.
    Nothing is written."""
    path = Path(archive)
    limit = max_unpacked_bytes(max_bytes)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            members = _zip_members(zf, path)
    else:
        try:
            with tarfile.open(path) as tf:
                members = _tar_members(tf, path)
        except tarfile.TarError as e:
            raise UnsafeArchiveError(f"{path}: neither a zip nor a tar archive ({e})") from e
    seen = set()
    total = 0
    for member in members:
        problem = unsafe_name(member.name)
        if problem:
            raise UnsafeArchiveError(
                f"{path}: entry '{member.name}' {problem}, which would be written outside "
                "the directory it is unpacked to. Refused before anything was written: the "
                "archive is damaged or malicious; do not unpack it by hand"
            )
        key = str(PurePosixPath(member.name))
        if key in seen:
            raise UnsafeArchiveError(
                f"{path}: entry '{member.name}' appears twice; which copy is meant is "
                "undefined. Refused before anything was written"
            )
        seen.add(key)
        total += member.size
    if total > limit:
        raise UnsafeArchiveError(_too_big(path, f"declares {total} bytes", limit))
    return members


def _too_big(path: Path, what: str, limit: int) -> str:
    return (
        f"{path}: the archive {what} uncompressed, more than the limit of {limit} bytes "
        f"({humanfriendly.format_size(limit, binary=True)}). If you trust it and it is "
        f"that large, raise the limit: export {MAX_BYTES_ENV}=<size>, e.g. 50GB"
    )


def extract_archive(archive: PathLike, dest: PathLike, max_bytes: Optional[int] = None) -> List[Member]:
    """Check ``archive`` (:func:`check_archive`), then write its members under ``dest``,
    which is created here and must not exist. On any error ``dest`` is removed again.
    Returns the members."""
    path, dest = Path(archive), Path(dest)
    limit = max_unpacked_bytes(max_bytes)
    members = check_archive(path, limit)
    dest.mkdir(parents=True, exist_ok=False)
    written = 0
    try:
        if zipfile.is_zipfile(path):
            opener = zipfile.ZipFile(path)
            open_member = opener.open
        else:
            opener = tarfile.open(path)
            open_member = opener.extractfile
        with opener:
            for member in members:
                target = dest / member.name
                if member.is_dir:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with open_member(member.name) as src, open(target, "xb") as out:
                    while True:
                        chunk = src.read(_CHUNK)
                        if not chunk:
                            break
                        written += len(chunk)
                        if written > limit:
                            raise UnsafeArchiveError(_too_big(
                                path, f"expands past its declared sizes to more than {written} bytes", limit))
                        out.write(chunk)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return members
