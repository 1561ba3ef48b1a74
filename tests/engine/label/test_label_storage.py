"""Object storage as input (engine.label.storage): the walk, retried reads, and `distill
label` from a local S3 server (moto's, started and stopped by the test on 127.0.0.1)
against the same images on disk."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from engine.errors import UserError
from engine.label.decode import DecodeError
from engine.label.discover import discover_folder, open_sources
from engine.label.manifest import RunManifest
from engine.label.run import label
from engine.label.storage import read_object
from tests.engine.conftest import assert_same_records, read_run
from tests.engine.conftest import request


class Flaky:
    """A filesystem whose reads fail `failures` times with a dropped connection first."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def cat_file(self, path: str) -> bytes:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionResetError(f"connection reset reading {path}")
        return b"bytes"


def test_a_failing_read_is_retried_then_a_reason() -> None:
    flaky = Flaky(failures=2)
    assert read_object(flaky, "b/k.jpg", attempts=3, backoff=0) == b"bytes" and flaky.calls == 3
    flaky = Flaky(failures=3)
    with pytest.raises(DecodeError, match=r"^read failed after 3 attempts: connection reset reading b/k\.jpg$"):
        read_object(flaky, "b/k.jpg", attempts=3, backoff=0)
    assert flaky.calls == 3

    class Gone:
        calls = 0

        def cat_file(self, path):
            self.calls += 1
            raise FileNotFoundError(path)

    gone = Gone()
    with pytest.raises(DecodeError, match="^object not found$"):
        read_object(gone, "b/k.jpg", attempts=3, backoff=0)
    assert gone.calls == 1  # a missing object does not come back: no retry


def test_the_walk_names_and_orders_as_the_folder_walk(tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec", reason="fsspec (the storage extra) is not installed")
    names = ["a.jpg", "a/x.jpg", "a-b/y.png", "b/c/z.JPG", "b/notes.txt", ".hidden/h.jpg", "b/.h.jpg", "k.tif"]
    memory = fsspec.filesystem("memory")
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(name.encode())
        memory.pipe(f"/walk-test/{name}", name.encode())
    try:
        root, sources = open_sources("memory://walk-test", None)
        sources = list(sources)
        assert root == "memory://walk-test"
        assert [s.name for s in sources] == [s.name for s in discover_folder(tmp_path)]
        assert [s.read() for s in sources] == [s.name.encode() for s in sources]
        assert [s.name for s in open_sources("memory://walk-test/", None, with_bytes=False)[1]] == \
               [s.name for s in sources]
    finally:
        memory.rm("/walk-test", recursive=True)


def test_url_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match=r"^credentials in a URL are refused"):
        open_sources("s3://key:secret@bucket/images", None)
    pytest.importorskip("fsspec", reason="fsspec (the storage extra) is not installed")
    with pytest.raises(UserError, match=r"^no such prefix: memory://nothing-here$"):
        open_sources("memory://nothing-here", None)
    monkeypatch.setitem(sys.modules, "fsspec", None)  # as if the extra were not installed
    with pytest.raises(UserError, match=r"^reading s3:// needs the storage extra: pip install 'distill\[storage\]'"):
        open_sources("s3://bucket/images", None)


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch):
    """A moto S3 server on 127.0.0.1 (a free port), found through the environment the way
    a user's credentials and endpoint are; stopped after the test."""
    pytest.importorskip("s3fs", reason="s3fs (the storage extra) is not installed")
    server_module = pytest.importorskip("moto.server", reason="moto[server] (the dev extra) is not installed")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}"}.items():
        monkeypatch.setenv(key, value)
    try:
        yield
    finally:
        server.stop()


def test_s3_run_matches_the_disk_run_and_bad_reads_are_failures(s3_server, exported, dump, tmp_path, monkeypatch):
    import boto3
    import s3fs

    client = boto3.client("s3")
    client.create_bucket(Bucket="dump")
    for path in sorted(dump.rglob("*.jpg")):
        client.put_object(Bucket="dump", Key=f"images/{path.relative_to(dump).as_posix()}", Body=path.read_bytes())
    image = next(dump.rglob("*.jpg")).read_bytes()
    # An archived object: the server refuses to read it (403). A flaky one: every read of
    # it drops the connection, so it is tried ATTEMPTS times, then recorded.
    client.put_object(Bucket="dump", Key="images/b/zz_archived.jpg", Body=image, StorageClass="GLACIER")
    client.put_object(Bucket="dump", Key="images/b/zz_flaky.jpg", Body=image)
    real_cat_file, flaky_reads = s3fs.S3FileSystem.cat_file, []

    def cat_file(self, path, *args, **kwargs):
        if path.endswith("zz_flaky.jpg"):
            flaky_reads.append(path)
            raise ConnectionResetError("connection reset by peer")
        return real_cat_file(self, path, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "cat_file", cat_file)

    summary = label(request(exported, "s3://dump/images", tmp_path / "s3"))
    label(request(exported, dump, tmp_path / "disk"))
    from_s3, failures = read_run(tmp_path / "s3")
    from_disk, _ = read_run(tmp_path / "disk")
    assert_same_records(from_s3, from_disk)
    assert from_s3 == from_disk  # the very same records, names included
    assert sorted((f["file_name"], f["reason"]) for f in failures) == [
        ("b/zz_archived.jpg", "permission denied"),
        ("b/zz_flaky.jpg", "read failed after 3 attempts: connection reset by peer")]
    assert len(flaky_reads) == 3 and summary.images == 10 and summary.failed == 2
    assert RunManifest.load(tmp_path / "s3").settings.input.images == "s3://dump/images"
    assert "testing" not in (tmp_path / "s3" / "manifest.json").read_text()  # no credentials recorded
