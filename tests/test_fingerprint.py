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


def _folder(root, n):
    for i in range(n):
        sub = root / f"class_{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"img_{i}.png").write_bytes(f"pixels {i}".encode())


def test_large_folders_are_summarised_and_read_only_a_sample(tmp_path, monkeypatch):
    monkeypatch.setattr(fp, "MAX_LISTED_FILES", 20)
    monkeypatch.setattr(fp, "SAMPLED_FILES", 4)
    _folder(tmp_path / "a", 30)
    read = []
    digest = fp.file_digest
    monkeypatch.setattr(fp, "file_digest", lambda path: read.append(path) or digest(path))
    first = fp.local_fingerprint(tmp_path / "a")
    assert "files" not in first and first["summary"]["files"] == 30
    assert len(read) == 4 and set(first["summary"]["sample"]) == {
        p.relative_to(tmp_path / "a").as_posix() for p in read
    }
    moved = fp.local_fingerprint((tmp_path / "a").rename(tmp_path / "b"))
    assert fp.same_data(first, moved)  # the sample does not depend on the location
    root = tmp_path / "b"

    (root / "class_0" / "img_0.png").rename(root / "class_1" / "img_0.png")
    renamed = fp.local_fingerprint(root)
    assert not fp.same_data(first, renamed)
    assert fp.describe_change(first, renamed).startswith("files were renamed or resized")
    (root / "class_1" / "img_0.png").rename(root / "class_0" / "img_0.png")

    (root / "class_2" / "new.png").write_bytes(b"more")
    grown = fp.local_fingerprint(root)
    assert fp.describe_change(first, grown).startswith("the folder changed (30 files")
    (root / "class_2" / "new.png").unlink()

    sampled = next(iter(first["summary"]["sample"]))
    (root / sampled).write_bytes((root / sampled).read_bytes()[:-1] + b"X")  # same size
    edited = fp.local_fingerprint(root)
    assert fp.describe_change(first, edited).startswith(f"{sampled} changed (same size")


def test_a_full_listing_recorded_before_summaries_still_matches(tmp_path, monkeypatch):
    _folder(tmp_path, 30)
    listed = fp.local_fingerprint(tmp_path)  # the threshold is 1000: a full listing
    assert len(listed["files"]) == 30
    monkeypatch.setattr(fp, "MAX_LISTED_FILES", 20)
    monkeypatch.setattr(fp, "SAMPLED_FILES", 4)
    summarised = fp.local_fingerprint(tmp_path)
    assert fp.same_data(listed, summarised)
    assert fp.fingerprint_digest(listed) == fp.fingerprint_digest(summarised)
    (tmp_path / "class_0" / "img_0.png").write_bytes(b"resized image")
    assert not fp.same_data(listed, fp.local_fingerprint(tmp_path))
