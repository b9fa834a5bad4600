"""folder:PATH data sets: thousands of images hold no files open; a decompression bomb is
refused with one line."""

import os
import resource
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from tunelab.objectives.data import DataSpec, load_data

IMAGES_PER_CLASS = 1000


def _tiny_pngs(root: Path) -> Path:
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(IMAGES_PER_CLASS):
            Image.new("L", (4, 4), color=(i * 7) % 256).save(root / label / f"{i}.png")
    return root


def _png(path: Path, width: int, height: int, compressed_rows: bytes) -> None:
    """A 1-bit greyscale PNG declaring width x height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", compressed_rows) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def test_thousands_of_images_load_without_holding_files_open(tmp_path):
    folder = _tiny_pngs(tmp_path / "images")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # far fewer descriptors than images: a loader that opens them all at once fails
    cap = len(os.listdir("/proc/self/fd")) + 64
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(cap, hard), hard))
    try:
        data = load_data(DataSpec(f"folder:{folder}"))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    total = len(data.train) + len(data.val) + len(data.test)
    assert total == 2 * IMAGES_PER_CLASS and data.image_size == (4, 4) and data.channels == 1


def _bomb_folder(root: Path, width: int, height: int, full: bool) -> Path:
    _tiny_pngs_few(root)
    # `full`: every row really compressed (Pillow would decode it); else the header alone
    rows = zlib.compress(bytes((width + 7) // 8 + 1) * height, 9) if full else zlib.compress(b"\0")
    _png(root / "a" / "bomb.png", width, height, rows)
    return root


def _tiny_pngs_few(root: Path) -> None:
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (4, 4), color=i * 50).save(root / label / f"{i}.png")


@pytest.mark.parametrize(
    ("width", "height", "full"),
    [(30_000, 30_000, False), (10_000, 10_000, True)],
    ids=["past Pillow's error limit", "between Pillow's warning and error limits"],
)
def test_decompression_bomb_is_one_line_exit_2(workdir, refused, width, height, full):
    _bomb_folder(workdir / "images", width, height, full)
    refused(
        ["run", "cnn", "--dataset", "folder:images", "--study-name", "bomb"],
        "a/bomb.png declares more than",
    )
