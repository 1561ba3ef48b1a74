"""The labeling path's inputs: discovery (engine.label.discover) and the guarded decoder
(engine.label.decode), run over the gauntlet of awkward files in tests/engine/label/gauntlet.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from engine.errors import UserError
from engine.label import decode as decode_module
from engine.label.decode import DEFAULT_MAX_PIXELS, DecodeError, decode_bytes, decode_file
from engine.label.discover import Source, discover_folder, open_sources, read_list
from tests.engine.label.gauntlet import (
    BOMB_SIDE,
    CMYK_NAME,
    DEEP_NAME,
    EXIF_NAME,
    EXIF_STORED_HW,
    GRAY_NAME,
    NO_READ_NAME,
    ONE_PIXEL_NAME,
    PNG_AS_JPG_NAME,
    RED_BOX,
    RGBA_NAME,
    bomb_png,
    build_gauntlet,
    running_as_root,
)


@pytest.fixture(scope="module")
def gauntlet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str | None]]:
    root = tmp_path_factory.mktemp("gauntlet")
    return root, build_gauntlet(root)


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


# ----------------------------------------------------------------------------- discovery


def test_discovery_is_sorted_recursive_and_filters_by_extension(tmp_path: Path) -> None:
    _touch(
        tmp_path,
        "b.jpg", "a/2.PNG", "a/1.jpeg", "a/deeper/x.webp", "c.TIFF", "B.bmp", "z.txt",
        "noext", ".hidden.jpg", ".cache/in_hidden_dir.jpg", "a0.tif",
    )
    names = [s.name for s in discover_folder(tmp_path)]
    # Sorted by name within each directory (code points: upper case first), directories
    # entered where they sort, hidden names and non-image extensions skipped.
    assert names == ["B.bmp", "a/1.jpeg", "a/2.PNG", "a/deeper/x.webp", "a0.tif", "b.jpg", "c.TIFF"]
    assert [s.name for s in discover_folder(tmp_path)] == names  # deterministic
    assert all(s.problem is None for s in discover_folder(tmp_path))
    first = next(discover_folder(tmp_path))
    assert first == Source(tmp_path / "B.bmp", "B.bmp")


def test_discovery_of_the_gauntlet(gauntlet: tuple[Path, dict[str, str | None]]) -> None:
    root, expected = gauntlet
    sources = list(discover_folder(root))  # ends despite sub/back -> ..
    by_name = {s.name: s for s in sources}
    assert len(by_name) == len(sources), "an entry came out twice"
    assert set(by_name) == set(expected)
    assert by_name["loop.jpg"].problem == "symlink loop"
    assert by_name["broken_link.jpg"].problem == "broken symlink"
    assert by_name["sub/back"].problem == "symlink loop: directory already visited"
    flagged = {name for name, s in by_name.items() if s.problem is not None}
    assert flagged == {"loop.jpg", "broken_link.jpg", "sub/back"}
    for name in flagged:
        assert expected[name] in by_name[name].problem
    assert by_name["sub/ünïcødé 图.png"].path == root / "sub" / "ünïcødé 图.png"


def test_directory_reached_twice_is_entered_once(tmp_path: Path) -> None:
    _touch(tmp_path, "real/x.jpg")
    os.symlink("real", tmp_path / "alias")
    sources = list(discover_folder(tmp_path))
    # "alias" sorts first, so the images are found through it; "real" is then a repeat.
    assert sources == [
        Source(tmp_path / "alias" / "x.jpg", "alias/x.jpg"),
        Source(tmp_path / "real", "real", "symlink loop: directory already visited"),
    ]


def test_discovery_is_lazy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _touch(tmp_path, "a/1.jpg", "b/2.jpg", "b/c/3.jpg", "d/4.jpg")
    listed: list[str] = []
    real_scandir = os.scandir

    def counting_scandir(path):
        listed.append(Path(path).relative_to(tmp_path).as_posix())
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", counting_scandir)
    sources = discover_folder(tmp_path)
    assert listed == []  # a generator: nothing happens before the first next()
    assert next(sources).name == "a/1.jpg"
    assert listed == [".", "a"]  # the siblings b, b/c and d are not listed yet
    assert [s.name for s in sources] == ["b/2.jpg", "b/c/3.jpg", "d/4.jpg"]
    assert listed == [".", "a", "b", "b/c", "d"]


def test_unlistable_directory_is_reported_and_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulated: as root (CI), chmod 0 would not stop the listing.
    _touch(tmp_path, "a.jpg", "locked/secret.jpg", "z.jpg")
    real_scandir = os.scandir

    def scandir(path):
        if Path(path) == tmp_path / "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert list(discover_folder(tmp_path)) == [
        Source(tmp_path / "a.jpg", "a.jpg"),
        Source(tmp_path / "locked", "locked", "cannot list directory: permission denied"),
        Source(tmp_path / "z.jpg", "z.jpg"),
    ]


def test_read_list_relative_absolute_comments(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "abs.png"
    _touch(tmp_path, "lists/imgs/one.jpg")
    list_file = tmp_path / "lists" / "todo.txt"
    list_file.write_text(
        f"# images to label\n\nimgs/one.jpg\n  imgs/with space.jpg  \n{elsewhere}\n   \n#x.jpg\n",
        encoding="utf-8",
    )
    assert list(read_list(list_file)) == [
        Source(tmp_path / "lists" / "imgs" / "one.jpg", "imgs/one.jpg"),
        Source(tmp_path / "lists" / "imgs" / "with space.jpg", "imgs/with space.jpg"),
        Source(elsewhere, str(elsewhere)),
    ]


def test_open_sources(tmp_path: Path) -> None:
    _touch(tmp_path, "imgs/a.jpg")
    root, sources = open_sources(tmp_path / "imgs", None)
    assert root == tmp_path / "imgs" and [s.name for s in sources] == ["a.jpg"]
    (tmp_path / "list.txt").write_text("imgs/a.jpg\n")
    root, sources = open_sources(None, tmp_path / "list.txt")
    assert root == tmp_path and [s.name for s in sources] == ["imgs/a.jpg"]
    (tmp_path / "empty").mkdir()
    root, sources = open_sources(tmp_path / "empty", None)  # the caller decides
    assert list(sources) == []


@pytest.mark.parametrize(
    ("images", "list_file", "match"),
    [
        ("missing", None, r"^image folder not found: .*missing$"),
        ("imgs/a.jpg", None, r"^not a folder, a tar archive or a video: .*a\.jpg$"),
        (None, "missing.txt", r"^list file not found: .*missing\.txt$"),
        (None, "imgs", r"^list file is a folder: "),
        (None, None, r"^give exactly one of"),
        ("imgs", "list.txt", r"^give exactly one of"),
    ],
)
def test_open_sources_errors(
    tmp_path: Path, images: str | None, list_file: str | None, match: str
) -> None:
    _touch(tmp_path, "imgs/a.jpg", "list.txt")
    with pytest.raises(UserError, match=match):
        open_sources(
            tmp_path / images if images else None, tmp_path / list_file if list_file else None
        )


# -------------------------------------------------------------------------------- decode


def _stored_size(path: Path) -> tuple[int, int]:
    """(width, height) as stored, read independently with Pillow."""
    with Image.open(path) as image:
        return image.size


def test_every_gauntlet_entry(gauntlet: tuple[Path, dict[str, str | None]]) -> None:
    root, expected = gauntlet
    wrong: dict[str, str] = {}
    for source in discover_folder(root):
        want = expected[source.name]
        if source.problem is not None:  # checked in test_discovery_of_the_gauntlet
            continue
        try:
            image = decode_file(source.path)
        except DecodeError as error:
            if want is None or want not in str(error):
                wrong[source.name] = f"raised {str(error)!r}, expected {want!r}"
            continue
        if want is not None:
            wrong[source.name] = f"decoded, expected a failure with {want!r}"
            continue
        width, height = _stored_size(source.path)
        if source.name == EXIF_NAME:
            width, height = height, width  # orientation 6: displayed rotated by 90 degrees
        if image.shape != (height, width, 3) or image.dtype != np.uint8:
            wrong[source.name] = f"got {image.shape} {image.dtype}, want ({height}, {width}, 3)"
        elif not image.flags.c_contiguous:
            wrong[source.name] = "not C-contiguous"
    assert wrong == {}


def test_gauntlet_decodes_without_stderr_noise(
    gauntlet: tuple[Path, dict[str, str | None]], capfd: pytest.CaptureFixture[str]
) -> None:
    # libjpeg prints "Corrupt JPEG data: ..." straight to fd 2 for some damaged JPEGs
    # (OpenCV's log level does not govern it); none of the gauntlet's files trigger it.
    root, expected = gauntlet
    capfd.readouterr()
    for name in expected:
        try:
            decode_file(root / name)
        except DecodeError:
            pass
    assert capfd.readouterr().err == ""


def _box_mean(image: np.ndarray, box: tuple[int, int, int, int], inset: int = 4) -> np.ndarray:
    x1, y1, x2, y2 = box
    return image[y1 + inset : y2 - inset, x1 + inset : x2 - inset].reshape(-1, 3).mean(axis=0)


@pytest.mark.parametrize(
    "name", [PNG_AS_JPG_NAME, RGBA_NAME, DEEP_NAME, CMYK_NAME, "UPPER.JPG", "sub/with space.jpg"]
)
def test_red_stays_red(gauntlet: tuple[Path, dict[str, str | None]], name: str) -> None:
    root, _ = gauntlet
    r, g, b = _box_mean(decode_file(root / name), RED_BOX)
    assert r > 230 and g < 25 and b < 25, (r, g, b)


def test_exif_orientation_is_applied(gauntlet: tuple[Path, dict[str, str | None]]) -> None:
    root, _ = gauntlet
    image = decode_file(root / EXIF_NAME)
    stored_h, stored_w = EXIF_STORED_HW
    assert image.shape == (stored_w, stored_h, 3)
    # Rotating 90 degrees clockwise sends stored (row r, col c) to displayed
    # (row c, col stored_h - 1 - r): the red square moves to the top-right corner.
    x1, y1, x2, y2 = RED_BOX
    r, g, b = _box_mean(image, (stored_h - y2, x1, stored_h - y1, x2))
    assert r > 230 and g < 25 and b < 25, (r, g, b)
    with Image.open(root / EXIF_NAME) as pil:
        reference = np.asarray(ImageOps.exif_transpose(pil).convert("RGB"), dtype=np.int16)
    assert np.abs(image.astype(np.int16) - reference).mean() < 2.0


@pytest.mark.parametrize("name", [PNG_AS_JPG_NAME, RGBA_NAME, "sub/ünïcødé 图.png"])
def test_png_pixels_are_exact(gauntlet: tuple[Path, dict[str, str | None]], name: str) -> None:
    root, _ = gauntlet
    with Image.open(root / name) as pil:
        reference = np.asarray(pil.convert("RGB"))  # drops alpha, as IMREAD_COLOR does
    np.testing.assert_array_equal(decode_file(root / name), reference)


def test_16_bit_is_scaled_to_8_bit(gauntlet: tuple[Path, dict[str, str | None]]) -> None:
    root, _ = gauntlet
    raw = cv2.imread(str(root / DEEP_NAME), cv2.IMREAD_UNCHANGED)  # (H, W, 3) uint16 BGR
    assert raw.dtype == np.uint16 and raw.max() > 255
    expected = (raw >> 8).astype(np.uint8)[..., ::-1]
    np.testing.assert_array_equal(decode_file(root / DEEP_NAME), expected)


def test_grayscale_becomes_three_equal_channels(
    gauntlet: tuple[Path, dict[str, str | None]],
) -> None:
    root, _ = gauntlet
    image = decode_file(root / GRAY_NAME)
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
    with Image.open(root / GRAY_NAME) as pil:
        reference = np.asarray(pil, dtype=np.int16)
    assert np.abs(image[..., 0].astype(np.int16) - reference).mean() < 2.0


def test_cmyk_colours(gauntlet: tuple[Path, dict[str, str | None]]) -> None:
    root, _ = gauntlet
    with Image.open(root / CMYK_NAME) as pil:
        assert pil.mode == "CMYK"
        reference = np.asarray(pil.convert("RGB"), dtype=np.int16)
    image = decode_file(root / CMYK_NAME)
    assert np.abs(image.astype(np.int16) - reference).mean() < 4.0


def test_one_pixel_image(gauntlet: tuple[Path, dict[str, str | None]]) -> None:
    root, _ = gauntlet
    image = decode_file(root / ONE_PIXEL_NAME)
    assert image.shape == (1, 1, 3) and (image == 200).all()


def test_bomb_is_refused_from_the_header(monkeypatch: pytest.MonkeyPatch) -> None:
    data = bomb_png()

    def must_not_decode(*args, **kwargs):
        raise AssertionError("the pixel decoder ran on a decompression bomb")

    monkeypatch.setattr(decode_module.cv2, "imdecode", must_not_decode)
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError) as info:
            decode_bytes(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(info.value) == (
        f"image too large: {BOMB_SIDE}x{BOMB_SIDE} pixels exceeds the "
        f"{DEFAULT_MAX_PIXELS}-pixel limit"
    )
    assert peak < 1 << 20, f"{peak} bytes allocated while refusing a bomb"


def test_max_pixels_is_the_callers(gauntlet: tuple[Path, dict[str, str | None]]) -> None:
    root, _ = gauntlet
    data = (root / PNG_AS_JPG_NAME).read_bytes()
    width, height = _stored_size(root / PNG_AS_JPG_NAME)
    assert decode_bytes(data, max_pixels=width * height).shape == (height, width, 3)
    with pytest.raises(DecodeError, match=rf"^image too large: {width}x{height} pixels "
                       rf"exceeds the {width * height - 1}-pixel limit$"):
        decode_bytes(data, max_pixels=width * height - 1)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"just some text\n", "not an image (unrecognized format)"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image (unrecognized format)"),
    ],
)
def test_decode_bytes_reasons(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_bytes(data)
    assert str(info.value) == reason


def test_decode_file_reasons(tmp_path: Path, gauntlet: tuple[Path, dict[str, str | None]]) -> None:
    root, _ = gauntlet
    cases = {
        tmp_path / "missing.jpg": "file not found",
        tmp_path: "is a directory",
        root / "loop.jpg": "symlink loop",
        root / "broken_link.jpg": "file not found",  # discovery says "broken symlink" first
        root / "truncated.jpg": "corrupt or truncated image data",
    }
    for path, reason in cases.items():
        with pytest.raises(DecodeError) as info:
            decode_file(path)
        assert str(info.value) == reason, path


def test_decoding_from_threads_matches_serial(
    gauntlet: tuple[Path, dict[str, str | None]],
) -> None:
    root, expected = gauntlet
    good = sorted(root / name for name, want in expected.items() if want is None)
    serial = [decode_file(path) for path in good]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(decode_file, good * 3))
    for i, image in enumerate(threaded):
        np.testing.assert_array_equal(image, serial[i % len(good)])


# The child imports the decoder while still root (the interpreter's standard library may
# sit under /root, which uid 65534 cannot traverse), then drops to nobody and decodes.
_UNPRIVILEGED_CHILD = """
import json, os, sys
from pathlib import Path
from engine.label.decode import DecodeError, decode_file
try:
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
except OSError as error:
    print(json.dumps({"dropped": False, "error": str(error)}))
    sys.exit(0)
results = {}
for name in sys.argv[1:]:
    try:
        results[name] = list(decode_file(Path(name)).shape)
    except DecodeError as error:
        results[name] = str(error)
print(json.dumps({"dropped": True, "uid": os.geteuid(), "results": results}))
"""


def test_permission_denied(gauntlet: tuple[Path, dict[str, str | None]]) -> None:
    if not running_as_root():
        root, _ = gauntlet
        with pytest.raises(DecodeError, match="^permission denied$"):
            decode_file(root / NO_READ_NAME)
        return
    # Root reads any file, so the denial is only observable as another user. The folder
    # must be traversable by that user (mkdtemp makes it 0700), so that the file's own
    # mode is what refuses it; a readable image beside it shows that reading works.
    folder = Path(tempfile.mkdtemp(prefix="distill-noread-"))
    try:
        os.chmod(folder, 0o755)
        readable, unreadable = folder / "readable.png", folder / "unreadable.png"
        Image.new("RGB", (8, 6), (255, 0, 0)).save(readable)
        shutil.copyfile(readable, unreadable)
        os.chmod(readable, 0o644)
        os.chmod(unreadable, 0)
        child = subprocess.run(
            [sys.executable, "-c", _UNPRIVILEGED_CHILD, str(readable), str(unreadable)],
            capture_output=True, text=True, timeout=120,
        )
        assert child.returncode == 0, child.stderr
        report = json.loads(child.stdout.strip().splitlines()[-1])
        if not report["dropped"]:
            pytest.skip(f"cannot drop privileges to uid 65534: {report['error']}")
        assert report["uid"] == 65534
        assert report["results"] == {str(readable): [6, 8, 3], str(unreadable): "permission denied"}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
