"""Download catalogue files into a models folder through ``huggingface_hub``, verified, with progress.

Each file is streamed by huggingface_hub's ``http_get`` (its retries, Range requests and error mapping) into a partial
file ``<models>/.downloads/<id>/<name>.part`` (a hidden folder the registry never lists), checked, then moved to its
target (``checkpoints/...``), so a half-done download never looks like a model. ``$HF_ENDPOINT`` is read at each call
(tests point it at a local stand-in), ``$HF_TOKEN`` / a stored login is used for gated repos as huggingface_hub does.

Verification: catalogue files are pinned to a commit (``revision``) and the sha256 of their content, found in public
sources; a file whose hub sha256 (the etag of a large LFS file) differs from its pin is refused before it is
downloaded, and a downloaded file whose content differs is refused after. For the few files without a published pin
(the catalogue says why), the hub's etag is checked (the sha256 of a large file, the git blob sha1 of a small one)
and the sha256 of the first download is recorded (``pins``): later downloads must match it. Sizes are checked too
(the catalogue's, else the hub's). A file that fails is deleted, and the error names both checksums.

Resuming: a connection cut mid-file is resumed by ``http_get`` with an HTTP Range request (up to 5 tries without
progress). A download that stops (a ``cancelled`` check that says yes, Ctrl-C, a network failure, power) keeps its
partial file, and the next pull of that file continues from it with a Range request, as long as the hub still serves
the same version of the file (same etag and size; otherwise it starts again).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, List, Optional

from . import pins
from .catalogue import CatalogueFile

ProgressCallback = Callable[[CatalogueFile, int, Optional[int]], None]
CancelCheck = Callable[[], bool]
DOWNLOADS_DIR = ".downloads"
DEFAULT_ENDPOINT = "https://huggingface.co"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")


class PullError(Exception):
    """A download that did not complete; the message says what to do."""


class OfflineError(PullError):
    """The hub cannot be reached; ``manual`` lists (url, destination) for a by-hand install."""

    def __init__(self, message: str, manual: List[tuple], why: str = "") -> None:
        super().__init__(message)
        self.manual = manual
        self.why = why


class PullCancelled(PullError):
    """The download was cancelled; the partial file is kept for a later resume."""


class ChecksumError(PullError):
    """A downloaded file did not match its checksum or size (and was deleted)."""


@dataclass
class PullResult:
    file: CatalogueFile
    path: Path
    downloaded: bool  # False: it was already there
    checked_with: str  # "sha256 (catalogue)", "sha256 (recorded at its first download, ...)", "sha256 (hub etag)",
    # "git sha1 (hub etag)", "size", "present"
    note: str = ""  # for a file without a catalogue pin: why, and that its first download's sha256 is recorded


def endpoint() -> str:
    """The hub address: ``$HF_ENDPOINT`` or huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def file_url(item: CatalogueFile) -> str:
    from huggingface_hub import hf_hub_url

    return hf_hub_url(item.repo, item.file, revision=item.revision, endpoint=endpoint())


def manual_steps(items: Iterable[CatalogueFile], root: Path) -> List[tuple]:
    """(url, destination) for each file not installed yet under ``root``."""
    return [(file_url(f), f.path_in(root)) for f in items if not f.path_in(root).exists()]


def offline_message(items: Iterable[CatalogueFile], root: Path, why: str) -> str:
    steps = manual_steps(items, root)
    lines = [
        f"cannot reach {endpoint()} ({why}): "
        + (
            "offline mode is on (unset HF_HUB_OFFLINE to download). "
            if "HF_HUB_OFFLINE" in why
            else "the computer seems to be offline. "
        )
        + "Nothing more was downloaded."
    ]
    if steps:
        lines.append("To install by hand, download each file and save it under the name shown:")
        lines += [f"  {url}\n    -> {dest}" for url, dest in steps]
        lines.append("or run this command again when the network is back (finished files are kept).")
    return "\n".join(lines)


def _progress_class(item: CatalogueFile, callback: Optional[ProgressCallback], cancelled: Optional[CancelCheck]):
    """A tqdm class for huggingface_hub that reports bytes to ``callback``, draws nothing itself, and stops the
    download (PullCancelled) when ``cancelled()`` says so."""
    from tqdm.auto import tqdm

    class Progress(tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs) -> None:
            kwargs.pop("name", None)
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self.done = int(kwargs.get("initial") or 0)
            self.size = kwargs.get("total")

        def update(self, n=1):  # tqdm's signature
            self.done += int(n or 0)
            if callback is not None:
                callback(item, self.done, self.size)
            if cancelled is not None and cancelled():
                raise PullCancelled(
                    f"the download of {item.target} was cancelled; its partial file is kept, pull it again to continue"
                )
            return super().update(n)

    return Progress


def file_digest(path: Path, algorithm: str) -> str:
    """Hex sha256 of a file, or its git blob sha1 (``algorithm="git-sha1"``)."""
    digest = hashlib.sha256() if algorithm == "sha256" else hashlib.sha1()
    if algorithm == "git-sha1":
        digest.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(
    path: Path, item: CatalogueFile, hub_etag: Optional[str], hub_size: Optional[int], root: Optional[Path] = None
) -> str:
    """Check ``path`` against the catalogue's pin (sha256, size), else the digest recorded at the first download into
    ``root`` (see ``pins``), else the hub (etag, size); returns how it was checked. A file without a catalogue pin
    has its sha256 recorded at its first download into ``root``. Raises ChecksumError (after deleting the file),
    naming both digests, on a mismatch."""
    size = path.stat().st_size
    want_size = item.size or hub_size
    if want_size is not None and size != want_size:
        _refuse(path, item, f"its size is {size} bytes, expected {want_size}")
    etag = (hub_etag or "").strip('"').lower()
    first = pins.recorded(root, item) if root is not None and not item.sha256 else None
    if item.sha256:
        algorithm, want, how = "sha256", item.sha256.lower(), "sha256 (catalogue)"
    elif first is not None:
        how = f"sha256 (recorded at its first download, {first['recorded']})"
        algorithm, want = "sha256", first["sha256"]
    elif _SHA256.match(etag):
        algorithm, want, how = "sha256", etag, "sha256 (hub etag)"
    elif _SHA1.match(etag):
        algorithm, want, how = "git-sha1", etag, "git sha1 (hub etag)"
    else:
        algorithm, want, how = "", "", "size" if want_size is not None else "unchecked (no checksum known)"
    got = file_digest(path, algorithm) if algorithm else ""
    if got != want:
        if first is not None:
            _refuse(
                path,
                item,
                f"its sha256 is {got}, but the copy first downloaded here ({first['recorded']}) had "
                f"{want}: the file on the hub has changed since",
            )
        _refuse(path, item, f"its {algorithm} is {got}, expected {want}")
    if root is not None and not item.sha256 and first is None:
        pins.record(root, item, got if algorithm == "sha256" else file_digest(path, "sha256"), size)
    return how


def _refuse_before_download(item: CatalogueFile, root: Path, etag: Optional[str]) -> None:
    """Refuse a file whose hub sha256 (the etag of a large file) already differs from its pin: nothing is fetched."""
    etag = (etag or "").strip('"').lower()
    if not _SHA256.match(etag):
        return
    first = None if item.sha256 else pins.recorded(root, item)
    want = item.sha256.lower() if item.sha256 else first["sha256"] if first else None
    if want is not None and etag != want:
        pin = (
            f"the catalogue pins {want} (revision {item.revision})"
            if item.sha256
            else f"the copy first downloaded here ({first['recorded']}) had {want}"
        )
        raise ChecksumError(
            f"refused {item.repo}/{item.file}: the hub serves a file whose sha256 is {etag}, but "
            f"{pin}. Nothing was downloaded: the file on the hub has changed (update Paintbridge, or check "
            f"{endpoint()}/{item.repo})"
        )


def unpinned_note(item: CatalogueFile) -> str:
    """What a download of a file without a catalogue pin says (empty for pinned files)."""
    if item.sha256:
        return ""
    return (
        f"{item.target} has no published sha256 in the catalogue ({item.unpinned or 'none was found'}); the "
        "sha256 of its first download is recorded, and later downloads must match it"
    )


def _refuse(path: Path, item: CatalogueFile, problem: str) -> None:
    path.unlink(missing_ok=True)
    raise ChecksumError(
        f"refused {item.repo}/{item.file}: {problem}. The file was deleted; run the command again to "
        "download it anew (if it fails again, the catalogue or the hub's copy has changed)."
    )


def _check_space(item: CatalogueFile, root: Path, size: Optional[int]) -> None:
    need = size or item.expected_bytes
    probe = root
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need and free < need * 1.05:
        raise PullError(
            f"not enough disk space for {item.target}: it needs {need / 1e9:.2f} GB, {root} has "
            f"{free / 1e9:.2f} GB free. Free some space, or pass --models with another folder."
        )


def pull_file(
    item: CatalogueFile,
    root: Path,
    progress: Optional[ProgressCallback] = None,
    force: bool = False,
    cancelled: Optional[CancelCheck] = None,
) -> PullResult:
    """Download one catalogue file to ``root/item.target`` (kept when present unless ``force``), continuing a partial
    download of the same file. ``cancelled()`` is asked while bytes arrive: True stops it (PullCancelled)."""
    from huggingface_hub import get_hf_file_metadata

    root = Path(root)
    dest = item.path_in(root)
    if dest.exists() and not force:
        return PullResult(item, dest, False, "present")
    if cancelled is not None and cancelled():
        raise PullCancelled(f"the download of {item.target} was cancelled before it began")
    try:
        meta = get_hf_file_metadata(file_url(item))
    except Exception as err:  # mapped to messages the painter can act on
        raise _hub_error(item, root, err) from err
    _refuse_before_download(item, root, meta.etag)
    staging = root / DOWNLOADS_DIR / item.id
    try:
        part = _partial_file(item, staging, meta.etag, meta.size)
        done = part.stat().st_size if part.exists() else 0
        _check_space(item, root, (meta.size - done) if meta.size is not None else None)
        if progress is not None:
            progress(item, done, meta.size)
        _stream(item, part, done, meta.size, progress, cancelled)
        how = verify(part, item, meta.etag, meta.size, root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, dest)
    except (ChecksumError, PullCancelled):
        raise
    except Exception as err:
        raise _hub_error(item, root, err) from err
    finally:
        if not any(staging.glob("*.part")):  # nothing to resume (done, refused, or never begun)
            shutil.rmtree(staging, ignore_errors=True)
            _remove_if_empty(root / DOWNLOADS_DIR)
    return PullResult(item, dest, True, how, unpinned_note(item))


def _partial_file(item: CatalogueFile, staging: Path, etag: Optional[str], size: Optional[int]) -> Path:
    """The partial file for ``item``: kept when it belongs to the same version of the file on the hub (a stamp
    beside it records etag and size), else removed so the download starts again."""
    part = staging / (Path(item.file).name + ".part")
    stamp = staging / "source.json"
    source = {"repo": item.repo, "file": item.file, "revision": item.revision, "etag": etag, "size": size}
    try:
        same = json.loads(stamp.read_text(encoding="utf-8")) == source
    except (OSError, ValueError):
        same = False
    if part.exists() and (not same or (size is not None and part.stat().st_size > size)):
        part.unlink()
    staging.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(source), encoding="utf-8")
    return part


def _stream(
    item: CatalogueFile,
    part: Path,
    done: int,
    size: Optional[int],
    progress: Optional[ProgressCallback],
    cancelled: Optional[CancelCheck],
) -> None:
    """Append the rest of the file to ``part`` (a Range request from ``done``) with huggingface_hub's ``http_get``."""
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    with open(part, "r+b" if part.exists() else "wb") as fh:
        fh.seek(0, os.SEEK_END)
        http_get(
            file_url(item),
            fh,
            resume_size=done,
            headers=build_hf_headers(),
            expected_size=size,
            displayed_filename=item.target,
            tqdm_class=_progress_class(item, progress, cancelled),
        )


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _hub_error(item: CatalogueFile, root: Path, err: Exception) -> PullError:
    """A PullError that says what went wrong in the painter's terms."""
    from huggingface_hub import errors

    if isinstance(err, PullError):
        return err
    if isinstance(err, OSError) and "Consistency check failed" in str(err):
        return PullError(
            f"the download of {item.target} from {endpoint()} broke off and could not be resumed "
            f"({err}); its partial file is kept: pull it again to continue"
        )
    if isinstance(err, errors.GatedRepoError):
        return PullError(
            f"{item.repo} is gated: accept its terms on {endpoint()}/{item.repo} and log in "
            "('hf auth login', or set HF_TOKEN), then run this again."
        )
    if isinstance(err, errors.RepositoryNotFoundError):
        return PullError(
            f"the repository {item.repo} was not found on {endpoint()} (the catalogue entry '{item.id}' is out of date)"
        )
    if isinstance(err, errors.RevisionNotFoundError):
        return PullError(f"{item.repo} has no revision '{item.revision}' (catalogue entry '{item.id}')")
    if isinstance(err, errors.RemoteEntryNotFoundError):
        return PullError(f"{item.repo} has no file {item.file} (the catalogue entry '{item.id}' is out of date)")
    if isinstance(err, (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled)) or _is_connection_error(err):
        offline_mode = isinstance(err, errors.OfflineModeIsEnabled) or isinstance(
            err.__context__, errors.OfflineModeIsEnabled
        )
        why = "HF_HUB_OFFLINE is set" if offline_mode else type(err).__name__
        return OfflineError(offline_message([item], root, why), manual_steps([item], root), why)
    if isinstance(err, errors.HfHubHTTPError):
        return PullError(f"{endpoint()} answered an error for {item.repo}/{item.file}: {err}")
    return PullError(f"downloading {item.repo}/{item.file} failed: {type(err).__name__}: {err}")


def _is_connection_error(err: BaseException) -> bool:
    names = {cls.__name__ for cls in type(err).__mro__}
    return bool(
        names
        & {
            "ConnectError",
            "ConnectTimeout",
            "TimeoutException",
            "RemoteProtocolError",
            "ReadError",
            "NetworkError",
            "ConnectionError",
        }
    )


def pull(
    items: Iterable[CatalogueFile],
    root: Path,
    progress: Optional[ProgressCallback] = None,
    force: bool = False,
    report: Optional[Callable[[PullResult], None]] = None,
    cancelled: Optional[CancelCheck] = None,
) -> List[PullResult]:
    """Download each of ``items`` in order; stops at the first failure (what finished stays)."""
    items = list(items)
    results = []
    for item in items:
        try:
            result = pull_file(item, root, progress, force, cancelled)
        except OfflineError as err:
            raise OfflineError(
                offline_message(items, Path(root), err.why), manual_steps(items, Path(root)), err.why
            ) from err
        results.append(result)
        if report:
            report(result)
    return results
