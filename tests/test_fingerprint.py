"""Data fingerprints: what makes two datasets "the same data" for a re-run."""

from __future__ import annotations

from gpart.data import fingerprint as fp


def test_local_fingerprint_sees_content_not_location(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    (a / "train.csv").write_text("x,label\n1,0\n")
    (a / ".train.csv.tmp").write_text("half written")  # temporaries are not data
    first = fp.local_fingerprint(a)
    assert set(first["files"]) == {"train.csv"}
    moved = fp.local_fingerprint(a.rename(tmp_path / "b"))
    assert fp.same_data(first, moved) and fp.fingerprint_digest(first) == fp.fingerprint_digest(
        moved
    )
    assert "was" in fp.describe_change(first, {**moved, "files": {}})  # shows where it moved
    (tmp_path / "b" / "train.csv").write_text("x,label\n1,1\n")
    changed = fp.local_fingerprint(tmp_path / "b")
    assert not fp.same_data(first, changed)
    assert fp.describe_change(first, changed).startswith(
        "train.csv changed (same size, other content)"
    )


def test_large_files_hash_their_ends_and_size(tmp_path, monkeypatch):
    monkeypatch.setattr(fp, "WHOLE_FILE_BYTES", 64)
    monkeypatch.setattr(fp, "EDGE_BYTES", 16)
    path = tmp_path / "big.bin"
    body = bytes(range(200))
    path.write_bytes(body)
    base = fp.file_digest(path)
    path.write_bytes(body[:-1] + b"\xff")  # last byte: inside the tail that is hashed
    assert fp.file_digest(path) != base
    path.write_bytes(body[:100] + b"\xff" + body[101:])  # the middle is not read
    assert fp.file_digest(path) == base


def test_hub_and_local_describe_a_source_change():
    hub = fp.hub_fingerprint("nyu-mll/glue", "rte")
    local = {"kind": "local", "root": "/data/rte", "files": {}}
    assert fp.describe_change(hub, local) == (
        "the data source changed (hub nyu-mll/glue/rte -> /data/rte)"
    )
    assert fp.same_data(hub, fp.hub_fingerprint("nyu-mll/glue", "rte"))
