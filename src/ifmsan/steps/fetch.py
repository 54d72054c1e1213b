"""Download a file once, verified by checksum, resumable and atomic, so weights and images are reproducible inputs."""

from __future__ import annotations

import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ifmsan._shared.hashing import CHUNK, checked_sums, file_checksum

log = logging.getLogger(__name__)

URL_SCHEMES = ("http", "https", "file")
"""The URL schemes ifmsan downloads from (image sources, weights and mean file)."""


class FetchError(RuntimeError):
    """A download that failed for good; the message says where to place the file by hand."""


class _RetryableError(Exception):
    """A transient failure (network error, truncated transfer, server error): try again."""


class _RestartError(Exception):
    """The partial file cannot be resumed (stale or complete but wrong): delete it and start over."""


class _FatalError(Exception):
    """A failure that retrying cannot fix (HTTP 4xx, unreadable local file)."""


def _mismatches(path: Path, expected: dict[str, str]) -> list[str]:
    """Descriptions of the checksums `path` fails; empty when it matches them all."""
    found = {algorithm: file_checksum(path, algorithm=algorithm) for algorithm in expected}
    return [f"{a} {found[a]} (expected {expected[a]})" for a in expected if found[a] != expected[a]]


_STALE_SUFFIX = ".verified"
"""The checksum cache files older versions wrote beside a file: no longer trusted, removed when found."""


def _remove_stale_record(path: Path) -> None:
    """Delete an older version's `<file>.verified` cache beside `path`; it is never read."""
    stale = path.with_name(path.name + _STALE_SUFFIX)
    try:
        if stale.is_file():
            stale.unlink()
            log.info("removed %s: checksum caches on disk are no longer trusted", stale)
    except OSError as exc:
        log.info("could not remove the stale checksum cache %s (%s); it is ignored", stale, exc)


def verify_file(path: str | os.PathLike[str], *, sha256: str | None = None, sha1: str | None = None) -> Path:
    """Check a file on disk against its expected checksum, hashing it once per process and content.

    The digests are memoized in this process only (hashing.file_checksum: keyed on the file's device, inode, size,
    mtime and ctime), never on disk; any change to the file makes it hashed again. A mismatch raises a ValueError
    naming the file, the expected and the actual sum, and how to fix it.
    """
    expected = checked_sums(sha256, sha1)
    if not expected:
        raise ValueError(f"verifying {path}: give sha256= or sha1=")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cannot verify {path}: no such file")
    _remove_stale_record(path)
    found = {a: file_checksum(path, algorithm=a) for a in expected}
    wrong = [a for a in expected if found[a] != expected[a]]
    if wrong:
        sums = "; ".join(f"{a} is {found[a]}, expected {expected[a]}" for a in wrong)
        raise ValueError(
            f"{path} is not the expected file: its {sums}. To fix: delete {path} (a configured download is then "
            "fetched again) or put the right file there."
        )
    return path


def _describe(expected: dict[str, str]) -> str:
    """'sha256 abc...' / 'sha1 ...' / 'none (unverified)' for messages."""
    return " and ".join(f"{a} {v}" for a, v in expected.items()) or "none (unverified download)"


def _failure(url: str, dest: Path, expected: dict[str, str], reason: str) -> FetchError:
    """The error a user sees: URL, expected checksum, and how to place the file by hand."""
    by_hand = f"download it by other means and place it by hand at {dest}"
    if expected:
        by_hand += " (its " + " and ".join(f"{a} must be {v}" for a, v in expected.items()) + ")"
    return FetchError(f"could not fetch {url}: {reason}. Expected checksum: {_describe(expected)}. To fix: {by_hand}.")


def _download_once(url: str, part: Path, *, timeout: float, progress: bool | None, label: str) -> bool:
    """One attempt: append the rest of the file to `part` (HTTP Range) or write it anew; True if it appended."""
    from tqdm import tqdm

    from ifmsan import __version__

    scheme = urllib.parse.urlsplit(url).scheme.lower()
    offset = part.stat().st_size if part.exists() and scheme != "file" else 0
    request = urllib.request.Request(url, headers={"User-Agent": f"ifmsan/{__version__}"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # scheme checked by fetch()
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing after `offset`: the partial file may already be complete
            exc.close()
            raise _RestartError("server says the partial file is complete or too long") from exc
        exc.close()
        if exc.code >= 500 or exc.code in (408, 429):
            raise _RetryableError(f"HTTP {exc.code} {exc.reason}") from exc
        raise _FatalError(f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        if scheme == "file":
            raise _FatalError(f"cannot read the local file: {exc.reason}") from exc
        raise _RetryableError(f"network error: {exc.reason}") from exc
    except (http.client.HTTPException, OSError) as exc:
        raise _RetryableError(f"network error: {exc!r}") from exc
    with response:
        status = getattr(response, "status", None) or 200
        length = response.headers.get("Content-Length")
        total = int(length) if length is not None and length.isdigit() else None
        if offset and status == 206:
            content_range = response.headers.get("Content-Range", "")
            match = re.match(r"bytes (\d+)-", content_range)
            if match is None or int(match.group(1)) != offset:
                raise _RestartError(f"server answered Range bytes={offset}- with Content-Range {content_range!r}")
            mode = "ab"
        else:
            if offset:
                log.info("server ignored the Range request for %s; downloading it from the start", url)
            offset, mode = 0, "wb"
        received = 0
        with (
            part.open(mode) as handle,
            tqdm(
                total=None if total is None else offset + total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=label,
                disable=None if progress is None else not progress,
                leave=False,
            ) as bar,
        ):
            while True:
                try:
                    block = response.read(CHUNK)
                except (http.client.IncompleteRead, OSError) as exc:
                    raise _RetryableError(f"transfer broken after {offset + received} bytes: {exc}") from exc
                if not block:
                    break
                handle.write(block)
                received += len(block)
                bar.update(len(block))
    if total is not None and received != total:
        raise _RetryableError(f"truncated transfer: received {received} of {total} bytes")
    return mode == "ab"


def fetch(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    sha1: str | None = None,
    retries: int = 3,
    progress: bool | None = None,
    timeout: float = 60.0,
    backoff: float = 1.0,
    allow_unverified: bool = False,
) -> Path:
    """Download `url` to `dest` unless it is already there with the right checksum; verified, resumable, atomic.

    The data goes to `dest.part` (resumed with an HTTP Range request on the next try) and is renamed onto
    `dest` only after its checksum matches. Network errors, truncated transfers and 5xx answers are retried
    `retries` times with exponential backoff (`backoff`, 2*backoff, ... seconds); a 4xx answer or a wrong
    checksum fails at once. `progress`: None shows a bar only on a terminal.
    """
    split = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    if (
        split is None
        or split.scheme.lower() not in URL_SCHEMES
        or (split.scheme.lower() != "file" and not split.netloc)
    ):
        raise ValueError(f"url must be an http://, https:// or file:// URL, got {url!r}")
    expected = checked_sums(sha256, sha1)
    if not expected and not allow_unverified:
        raise ValueError(f"fetching {url}: give sha256= or sha1= (or allow_unverified=True to skip verification)")
    if not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    if not timeout > 0 or backoff < 0:
        raise ValueError(f"timeout must be > 0 and backoff >= 0, got timeout={timeout!r}, backoff={backoff!r}")
    dest = Path(dest)
    if dest.is_dir():
        raise ValueError(f"fetching {url}: destination {dest} is a directory; give a file path")
    if dest.is_file():
        if not expected:
            return dest
        try:
            return verify_file(dest, **expected)
        except ValueError as exc:
            log.warning("%s; downloading it again", exc)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last = "no attempt made"
    restarted = False
    attempt = 0
    while attempt <= retries:
        try:
            resumed = False
            try:
                resumed = _download_once(url, part, timeout=timeout, progress=progress, label=dest.name)
            except _RestartError as exc:
                if not (part.exists() and expected and not _mismatches(part, expected)):
                    raise
                log.info("%s: %s", url, exc)
            problems = _mismatches(part, expected) if expected else []
            if problems:
                if resumed and not restarted:
                    raise _RestartError(f"resumed file has {'; '.join(problems)}")
                part.unlink(missing_ok=True)
                raise _failure(url, dest, expected, f"checksum mismatch: got {'; '.join(problems)}")
            os.replace(part, dest)
            return dest
        except _RestartError as exc:
            log.warning("%s: %s; starting again from byte 0", url, exc)
            part.unlink(missing_ok=True)
            restarted = True
            last = str(exc)
            continue  # a restart is not a network failure: it does not use up a retry
        except _RetryableError as exc:
            last = str(exc)
            attempt += 1
            if attempt <= retries:
                delay = backoff * 2 ** (attempt - 1)
                log.warning("fetching %s failed (%s); retry %d of %d in %.1f s", url, last, attempt, retries, delay)
                time.sleep(delay)
        except _FatalError as exc:
            raise _failure(url, dest, expected, str(exc)) from exc
    raise _failure(url, dest, expected, f"gave up after {retries + 1} attempts; last error: {last}")
