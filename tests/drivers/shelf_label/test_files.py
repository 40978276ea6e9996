"""The file back end: one PNG per label, replaced atomically, read back as shown."""

from __future__ import annotations

from decimal import Decimal

import pytest
from PIL import Image

from drivers.shelf_label.files import FileLabels
from drivers.shelf_label.models import get_model
from drivers.shelf_label.render import LabelContent, content_hash, render


def label(price: str = "12.80") -> tuple[Image.Image, str]:
    model = get_model("m2-2.9-bwr")
    c = LabelContent(sku="MILK-1L", name="Organic Whole Milk 1 L", price=Decimal(price), currency="CNY")
    return render(c, model), content_hash(c, model)


def test_a_written_label_reads_back_as_drawn(tmp_path):
    labels = FileLabels(tmp_path / "labels")  # created on first write
    img, digest = label()
    path = labels.write("MILK-1L", img, digest)
    assert path == tmp_path / "labels" / "MILK-1L.png"
    back = labels.read("MILK-1L")
    assert back.mode == "P" and back.size == img.size and back.tobytes() == img.tobytes()
    assert back.getpalette() == img.getpalette()
    info = labels.info("MILK-1L")
    assert info.content_hash == digest and info.path == path


def test_a_label_is_replaced_whole_and_leaves_no_temporary_file(tmp_path):
    labels = FileLabels(tmp_path)
    labels.write("0000021D4E83B4A1", *label("12.80"))
    img, digest = label("13.50")
    labels.write("0000021D4E83B4A1", img, digest)
    assert labels.read("0000021D4E83B4A1").tobytes() == img.tobytes()
    assert labels.info("0000021D4E83B4A1").content_hash == digest
    assert [p.name for p in tmp_path.iterdir()] == ["0000021D4E83B4A1.png"]


def test_a_failed_write_keeps_the_old_label(tmp_path, monkeypatch):
    labels = FileLabels(tmp_path)
    old, digest = label("12.80")
    labels.write("MILK-1L", old, digest)

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    new, _ = label("13.50")
    monkeypatch.setattr(new, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        labels.write("MILK-1L", new, "x")
    assert labels.read("MILK-1L").tobytes() == old.tobytes()
    assert [p.name for p in tmp_path.iterdir()] == ["MILK-1L.png"]


def test_missing_and_unreadable_labels(tmp_path):
    labels = FileLabels(tmp_path)
    assert labels.read("NONE") is None and labels.info("NONE") is None
    (tmp_path / "BROKEN.png").write_bytes(b"not a png")
    info = labels.info("BROKEN")
    assert info is not None and info.content_hash is None  # so the driver writes it again
    with pytest.raises(OSError):
        labels.read("BROKEN")


def test_a_label_written_without_a_hash_has_none(tmp_path):
    labels = FileLabels(tmp_path)
    labels.write("A", label()[0])
    assert labels.info("A").content_hash is None


def test_keys_and_remove(tmp_path):
    labels = FileLabels(tmp_path)
    assert FileLabels(tmp_path / "absent").keys() == []
    for key in ("B", "A", "0000021D4E83B4A1"):
        labels.write(key, label()[0])
    (tmp_path / "notes.txt").write_text("ignored")
    assert labels.keys() == ["0000021D4E83B4A1", "A", "B"]
    assert labels.remove("A") and not labels.remove("A")
    assert labels.keys() == ["0000021D4E83B4A1", "B"]


@pytest.mark.parametrize("key", ["", "../etc/passwd", "a/b", ".hidden", "a..b", "x" * 65, "名字", "a b"])
def test_a_key_that_is_not_a_safe_file_name_is_refused(tmp_path, key):
    with pytest.raises(ValueError, match="label key"):
        FileLabels(tmp_path).write(key, label()[0])
    assert list(tmp_path.iterdir()) == []


def test_a_label_file_is_readable_by_everyone_under_the_usual_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        labels = FileLabels(tmp_path)
    finally:
        os.umask(old)
    path = labels.write("MILK-1L", *label())
    assert path.stat().st_mode & 0o777 == 0o644
    labels.write("MILK-1L", *label("13.50"))  # replaced: still 0644
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_stricter_umask_is_respected(tmp_path):
    import os

    old = os.umask(0o077)
    try:
        labels = FileLabels(tmp_path)
    finally:
        os.umask(old)
    assert labels.write("MILK-1L", *label()).stat().st_mode & 0o777 == 0o600


def test_facts_are_text_chunks_next_to_the_hash(tmp_path):
    labels = FileLabels(tmp_path)
    img, digest = label()
    labels.write("MILK-1L", img, digest, {"sku": "MILK-1L", "price": "12.80", "currency": "CNY"})
    info = labels.info("MILK-1L")
    assert info.content_hash == digest
    assert info.facts == {"sku": "MILK-1L", "price": "12.80", "currency": "CNY"}
    labels.write("MILK-1L", img, "h2", {"sku": "MILK-1L", "notice": "请咨询店员 Please ask staff for the price"})
    assert labels.info("MILK-1L").facts == {"sku": "MILK-1L", "notice": "请咨询店员 Please ask staff for the price"}
    for bad in ({"content-hash": "x"}, {"Price": "1"}, {"price": "1" * 1001}, {"a:b": "1"}):
        with pytest.raises(ValueError, match="label fact"):
            labels.write("MILK-1L", img, "h3", bad)
    assert labels.info("MILK-1L").content_hash == "h2"  # a refused write changes nothing
