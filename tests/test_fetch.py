"""ifmsan.steps.fetch and `ifmsan fetch` against file:// URLs and small HTTP servers on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ifmsan.cli import main
from ifmsan.steps.fetch import FetchError, fetch, file_checksum, verify_file

PAYLOAD = bytes(range(256)) * 40 + b"tail"  # 10,244 bytes
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
SHA1 = hashlib.sha1(PAYLOAD).hexdigest()
OTHER = hashlib.sha256(b"something else").hexdigest()


@dataclass
class Server:
    """What the test server does per request (a script, then 'ok' forever) and what it saw."""

    script: list[str]
    honor_range: bool = True
    requests: list[dict[str, str]] = field(default_factory=list)
    bytes_sent: int = 0
    url: str = ""


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(script=[])

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep the test output quiet
            pass

        def do_GET(self) -> None:
            state.requests.append(dict(self.headers.items()))
            action = state.script.pop(0) if state.script else "ok"
            if action in ("500", "404"):
                self.send_error(int(action))
                return
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if match and state.honor_range:
                start = int(match.group(1))
                if start >= len(PAYLOAD):
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
            else:
                self.send_response(200)
            body = PAYLOAD[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if action == "truncate":  # promise the whole body, send half, hang up
                body = body[: len(body) // 2]
                self.close_connection = True
            state.bytes_sent += len(body)  # counted before the write: the client may finish before this thread resumes
            self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/files/model.bin"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def quick(url: str, dest: Path, **kwargs: object) -> Path:
    return fetch(url, dest, backoff=0.0, timeout=5.0, progress=False, **kwargs)  # type: ignore[arg-type]


def test_file_checksum_known_vectors(tmp_path: Path) -> None:
    (tmp_path / "abc").write_bytes(b"abc")  # FIPS 180 test vectors for "abc"
    assert file_checksum(tmp_path / "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert file_checksum(tmp_path / "abc", algorithm="sha1") == "a9993e364706816aba3e25717850c26c9cd0d89d"
    with pytest.raises(ValueError, match="algorithm"):
        file_checksum(tmp_path / "abc", algorithm="crc32")


def test_file_url_success_then_no_op(tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(PAYLOAD)
    dest = tmp_path / "data" / "sub" / "model.bin"
    assert quick(source.as_uri(), dest, sha256=SHA256) == dest
    assert dest.read_bytes() == PAYLOAD and not dest.with_name("model.bin.part").exists()
    source.unlink()  # a second call must not read the URL at all
    assert quick(source.as_uri(), dest, sha1=SHA1) == dest


def test_file_url_wrong_checksum_leaves_nothing(tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(PAYLOAD)
    dest = tmp_path / "model.bin"
    with pytest.raises(FetchError) as info:
        quick(source.as_uri(), dest, sha256=OTHER)
    message = str(info.value)
    assert source.as_uri() in message and OTHER in message and SHA256 in message
    assert f"place it by hand at {dest}" in message and f"sha256 must be {OTHER}" in message
    assert list(tmp_path.iterdir()) == [source]


def test_missing_local_source_fails_at_once(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="cannot read the local file"):
        quick((tmp_path / "absent.bin").as_uri(), tmp_path / "model.bin", sha256=SHA256, retries=100)


def test_http_success_and_checksum_skip(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "model.bin"
    assert quick(server.url, dest, sha256=SHA256).read_bytes() == PAYLOAD
    assert quick(server.url, dest, sha256=SHA256) == dest
    assert len(server.requests) == 1
    assert server.requests[0]["User-Agent"].startswith("ifmsan/")


def test_existing_dest_with_wrong_content_is_replaced(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "model.bin"
    dest.write_bytes(b"stale")
    assert quick(server.url, dest, sha256=SHA256).read_bytes() == PAYLOAD


def test_http_wrong_checksum(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "model.bin"
    with pytest.raises(FetchError, match=rf"checksum mismatch.*{SHA1}.*place it by hand at .*model\.bin"):
        quick(server.url, dest, sha1=hashlib.sha1(b"x").hexdigest())
    assert list(tmp_path.iterdir()) == []
    assert len(server.requests) == 1  # a wrong checksum is not retried


def test_truncated_transfer_is_resumed_on_retry(server: Server, tmp_path: Path) -> None:
    server.script = ["truncate"]
    dest = tmp_path / "model.bin"
    assert quick(server.url, dest, sha256=SHA256).read_bytes() == PAYLOAD
    assert len(server.requests) == 2
    assert "Range" not in server.requests[0]
    assert server.requests[1]["Range"] == f"bytes={len(PAYLOAD) // 2}-"
    assert server.bytes_sent == len(PAYLOAD)


def test_existing_part_is_resumed_with_range(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "model.bin"
    (tmp_path / "model.bin.part").write_bytes(PAYLOAD[:1000])
    assert quick(server.url, dest, sha256=SHA256).read_bytes() == PAYLOAD
    assert [r.get("Range") for r in server.requests] == ["bytes=1000-"]
    assert server.bytes_sent == len(PAYLOAD) - 1000
    assert not (tmp_path / "model.bin.part").exists()


def test_server_ignoring_range_gives_a_full_download(server: Server, tmp_path: Path) -> None:
    server.honor_range = False
    dest = tmp_path / "model.bin"
    (tmp_path / "model.bin.part").write_bytes(b"\xff" * 1000)  # would corrupt the file if appended to
    assert quick(server.url, dest, sha256=SHA256).read_bytes() == PAYLOAD
    assert len(server.requests) == 1 and server.requests[0]["Range"] == "bytes=1000-"


def test_stale_part_is_discarded_after_a_bad_resume(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "model.bin"
    (tmp_path / "model.bin.part").write_bytes(b"\xff" * 1000)
    assert quick(server.url, dest, sha256=SHA256, retries=0).read_bytes() == PAYLOAD
    assert [r.get("Range") for r in server.requests] == ["bytes=1000-", None]


def test_complete_part_is_renamed_after_416(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "model.bin"
    (tmp_path / "model.bin.part").write_bytes(PAYLOAD)
    assert quick(server.url, dest, sha256=SHA256).read_bytes() == PAYLOAD
    assert server.bytes_sent == 0


def test_server_error_then_success(server: Server, tmp_path: Path) -> None:
    server.script = ["500", "500"]
    assert quick(server.url, tmp_path / "model.bin", sha256=SHA256, retries=2).read_bytes() == PAYLOAD
    assert len(server.requests) == 3


def test_persistent_server_error_gives_up(server: Server, tmp_path: Path) -> None:
    server.script = ["500"] * 10
    with pytest.raises(FetchError, match=r"gave up after 3 attempts; last error: HTTP 500"):
        quick(server.url, tmp_path / "model.bin", sha256=SHA256, retries=2)
    assert len(server.requests) == 3


def test_not_found_fails_without_retry(server: Server, tmp_path: Path) -> None:
    server.script = ["404"]
    with pytest.raises(FetchError) as info:
        quick(server.url, tmp_path / "model.bin", sha256=SHA256, retries=5)
    assert len(server.requests) == 1
    message = str(info.value)
    assert server.url in message and "HTTP 404" in message and SHA256 in message and "by hand" in message


def test_unreachable_server_retries_then_names_url(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.bin"
    with pytest.raises(FetchError, match=rf"could not fetch {re.escape(url)}: gave up after 2 attempts"):
        quick(url, tmp_path / "x.bin", sha256=SHA256, retries=1)


def test_unverified_download_needs_explicit_consent(server: Server, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="give sha256= or sha1="):
        quick(server.url, tmp_path / "model.bin")
    assert server.requests == []
    assert quick(server.url, tmp_path / "model.bin", allow_unverified=True).read_bytes() == PAYLOAD


@pytest.mark.parametrize(
    ("url", "kwargs", "pattern"),
    [
        ("ftp://example.org/x", {"sha256": SHA256}, "http://, https:// or file://"),
        ("data/x.bin", {"sha256": SHA256}, "http://, https:// or file://"),
        ("http:///x", {"sha256": SHA256}, "http://, https:// or file://"),
        ("http://127.0.0.1/x", {"sha256": "abc"}, "sha256 must be 64 hexadecimal digits"),
        ("http://127.0.0.1/x", {"sha1": SHA256}, "sha1 must be 40 hexadecimal digits"),
        ("http://127.0.0.1/x", {"sha256": SHA256, "retries": -1}, "retries"),
    ],
)
def test_bad_arguments(tmp_path: Path, url: str, kwargs: dict[str, object], pattern: str) -> None:
    with pytest.raises(ValueError, match=re.escape(pattern)):
        quick(url, tmp_path / "x.bin", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_cli_fetch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "model.bin"
    assert main(["fetch", source.as_uri(), str(dest), "--sha256", SHA256]) == 0
    assert dest.read_bytes() == PAYLOAD and capsys.readouterr().out.strip() == str(dest)
    assert main(["fetch", source.as_uri(), str(tmp_path / "bad.bin"), "--sha1", "0" * 40, "--retries", "0"]) == 2
    err = capsys.readouterr().err
    assert "ifmsan fetch: error: could not fetch" in err and "0" * 40 in err and "by hand" in err
    with pytest.raises(SystemExit):
        main(["fetch", source.as_uri(), str(dest)])  # a checksum is required


class CountingHashlib:
    """Stands in for hashlib inside ifmsan._shared.hashing, recording every file hash started."""

    algorithms_guaranteed = hashlib.algorithms_guaranteed

    def __init__(self) -> None:
        self.calls: list[str] = []

    def new(self, algorithm: str) -> object:
        self.calls.append(algorithm)
        return hashlib.new(algorithm)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> CountingHashlib:
    """A fresh in-process memo, hashes counted, and files written by the test memoizable at once (not 'racy')."""
    from ifmsan._shared import hashing

    counter = CountingHashlib()
    monkeypatch.setattr(hashing, "hashlib", counter)
    monkeypatch.setattr(hashing, "_MEMO", {})
    monkeypatch.setattr(hashing, "RACY_NS", -(10**18))
    return counter


def test_verify_file_hashes_once_per_process_and_content(tmp_path: Path, counted: CountingHashlib) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(PAYLOAD)
    assert verify_file(path, sha256=SHA256) == path
    verify_file(path, sha256=SHA256.upper())
    assert counted.calls == ["sha256"]  # memoized in this process
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin"]  # and nothing written on disk
    verify_file(path, sha1=SHA1)  # a new algorithm is hashed once
    verify_file(path, sha256=SHA256, sha1=SHA1)
    assert counted.calls == ["sha256", "sha1"]
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # touched: hashed again
    verify_file(path, sha256=SHA256)
    assert counted.calls == ["sha256", "sha1", "sha256"]


def test_a_file_changed_just_now_is_hashed_every_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """File times tick coarsely: a digest of a file changed less than RACY_NS ago is not memoized."""
    from ifmsan._shared import hashing

    counter = CountingHashlib()
    monkeypatch.setattr(hashing, "hashlib", counter)
    monkeypatch.setattr(hashing, "_MEMO", {})
    path = tmp_path / "model.bin"
    path.write_bytes(PAYLOAD)
    verify_file(path, sha256=SHA256)
    verify_file(path, sha256=SHA256)
    assert counter.calls == ["sha256", "sha256"]


def test_verify_file_changed_content_is_hashed_again(tmp_path: Path, counted: CountingHashlib) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(PAYLOAD)
    verify_file(path, sha256=SHA256)
    stat = path.stat()
    path.write_bytes(bytes(reversed(PAYLOAD)))  # same size, same mtime, new content: ctime still moves
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    wrong = hashlib.sha256(bytes(reversed(PAYLOAD))).hexdigest()
    with pytest.raises(ValueError) as info:
        verify_file(path, sha256=SHA256)
    message = str(info.value)
    assert str(path) in message and f"sha256 is {wrong}, expected {SHA256}" in message and f"delete {path}" in message


def forged_sidecar(path: Path, digests: dict[str, str]) -> Path:
    """The `.verified` record an older ifmsan trusted, forged to match the file's size, mtime and inode."""
    import json

    stat = path.stat()
    sidecar = path.with_name(path.name + ".verified")
    record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ino": stat.st_ino, "digests": digests}
    sidecar.write_text(json.dumps(record))
    return sidecar


@pytest.mark.parametrize(
    "sidecar",
    ["forged", "not json", '{"size": 1, "mtime_ns": 2, "ino": 3, "digests": {}}', "[]"],
    ids=["forged", "garbage", "stale", "list"],
)
def test_a_checksum_cache_file_never_vouches_for_a_file(tmp_path: Path, sidecar: str) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"other bytes")
    record = forged_sidecar(path, {"sha256": SHA256}) if sidecar == "forged" else (tmp_path / "model.bin.verified")
    if sidecar != "forged":
        record.write_text(sidecar)
    with pytest.raises(ValueError, match=f"expected {SHA256}"):
        verify_file(path, sha256=SHA256)
    assert not record.exists()  # a stale cache is removed when found
    path.write_bytes(PAYLOAD)
    assert verify_file(path, sha256=SHA256) == path


def test_cli_weights_with_a_forged_cache_file_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from ifmsan import models

    weights = tmp_path / "mini.pt"
    torch.save(models.load("alexnet_mini", seed=0).state_dict(), weights)
    claimed = hashlib.sha256(b"the file someone vouched for").hexdigest()
    forged_sidecar(weights, {"sha256": claimed})
    out = tmp_path / "x.nc"
    code = main(["extract", "--model", "alexnet_mini", "--weights", str(weights), "--weights-sha256", claimed,
                 "--image", "skimage:cat", "--image-id", "cat", "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("ifmsan extract: error: ") and err.count("\n") == 1, err
    assert f"{weights} is not the expected file: its sha256 is {file_checksum(weights)}, expected {claimed}" in err
    assert not out.exists() and not weights.with_name("mini.pt.verified").exists()


def test_verify_file_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cannot verify"):
        verify_file(tmp_path / "absent.bin", sha256=SHA256)
    (tmp_path / "x.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="give sha256= or sha1="):
        verify_file(tmp_path / "x.bin")
    with pytest.raises(ValueError, match="sha1 must be 40 hexadecimal digits"):
        verify_file(tmp_path / "x.bin", sha1="abc")


def test_fetch_leaves_no_checksum_cache_and_verifies_again(tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(PAYLOAD)
    dest = tmp_path / "data" / "model.bin"
    quick(source.as_uri(), dest, sha256=SHA256)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.bin"]
    dest.write_bytes(b"x" * len(PAYLOAD))  # replaced by other bytes: fetched again, not trusted
    assert quick(source.as_uri(), dest, sha256=SHA256) == dest and dest.read_bytes() == PAYLOAD
