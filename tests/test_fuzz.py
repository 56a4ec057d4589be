"""Fuzz tests: broken files and random settings raise only the project's own errors.

Random bytes and mutated real files go to checkpoint, image and annotation
loading; random ``--set`` strings give a valid config or a one-line error. The
examples are few (the suite's budget: all of them together well under a minute); set
``PTLIB_FUZZ_EXAMPLES=1000`` for a long, randomised hunt.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ptlib.data.annotations import AnnotationError, read_caption_annotations
from ptlib.data.coco import read_karpathy_split
from ptlib.data.images import BadImageError, load_rgb
from ptlib.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ptlib.train.runconfig import load_run_config

_EXAMPLES = int(os.environ.get("PTLIB_FUZZ_EXAMPLES", "30"))  # more for a long hunt
FUZZ = settings(max_examples=_EXAMPLES, deadline=None, derandomize=_EXAMPLES <= 30,
                suppress_health_check=[HealthCheck.too_slow], database=None)
FOLDER = Path(tempfile.mkdtemp(prefix="ptlib-fuzz-"))


def _real_checkpoint() -> bytes:
    path = save_checkpoint(FOLDER / "real.pt", {
        "model": {"w": torch.arange(12.0).reshape(3, 4), "b": torch.zeros(3)},
        "vocab": {"itos": ["<pad>", "<bos>", "<eos>", "<unk>", "red"]},
        "epoch": 2, "history": [{"loss": 1.5}], "run_config": {"model": {"d_model": 8}},
    })
    return path.read_bytes()


def _real_images() -> list[bytes]:
    picture = Image.new("RGB", (24, 16), (10, 200, 30))
    picture.putpixel((3, 4), (255, 0, 0))
    out = []
    for fmt in ("PNG", "JPEG", "GIF", "BMP"):
        buffer = io.BytesIO()
        picture.save(buffer, format=fmt)
        out.append(buffer.getvalue())
    return out


REAL_CHECKPOINT = _real_checkpoint()
REAL_IMAGES = _real_images()
REAL_CAPTIONS = json.dumps({
    "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "sub/b.jpg"}],
    "annotations": [{"id": 1, "image_id": 1, "caption": "A red circle."},
                    {"id": 2, "image_id": 2, "caption": "two blue squares"}],
}).encode()
REAL_KARPATHY = (Path(__file__).parent / "fixtures" / "karpathy_tiny.json").read_bytes()


@st.composite
def mutated(draw, original: bytes) -> bytes:
    """``original`` truncated, with bytes overwritten, inserted or deleted."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        kind = draw(st.sampled_from(("flip", "insert", "delete", "truncate")))
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        else:
            del data[at:]
    return bytes(data)


def _write(name: str, data: bytes) -> Path:
    path = FOLDER / name
    path.write_bytes(data)
    return path


def _one_line(err: Exception) -> None:
    assert "\n" not in str(err), f"{type(err).__name__} is not one line: {err}"


@FUZZ
@given(st.one_of(st.binary(max_size=200), mutated(REAL_CHECKPOINT)))
def test_broken_checkpoints_raise_only_checkpoint_errors(data):
    path = _write("fuzz.pt", data)
    try:
        load_checkpoint(path)
    except CheckpointError as err:
        assert str(path) in str(err)
        _one_line(err)


@FUZZ
@given(st.one_of(st.binary(max_size=200),
                 st.sampled_from(REAL_IMAGES).flatmap(lambda real: mutated(real))))
def test_broken_images_raise_only_bad_image_errors(data):
    path = _write("fuzz.img", data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            picture = load_rgb(path)
        assert picture.mode == "RGB"
    except BadImageError as err:
        assert err.path == str(path)
        _one_line(err)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=True)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["images", "annotations", "id", "image_id", "file_name", "caption",
                         "split", "filepath", "filename", "sentences", "raw", "cocoid", "x"]),
        inner, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(st.one_of(st.binary(max_size=120), mutated(REAL_CAPTIONS),
                 JSON_VALUES.map(lambda v: json.dumps(v).encode())))
def test_broken_caption_files_raise_only_annotation_errors(data):
    path = _write("captions.json", data)
    try:
        read_caption_annotations(path)
    except AnnotationError as err:
        assert path.name in str(err)


@FUZZ
@given(st.one_of(mutated(REAL_KARPATHY), JSON_VALUES.map(lambda v: json.dumps(v).encode())))
def test_broken_karpathy_files_raise_only_annotation_errors(data):
    path = _write("dataset_coco.json", data)
    try:
        read_karpathy_split(path, "train")
    except AnnotationError as err:
        assert path.name in str(err)


SECTIONS_KEYS = st.sampled_from([
    "train.epochs", "train.lr", "train.batch_size", "train.betas", "train.amp", "train.seed",
    "model.d_model", "model.n_heads", "model.prune_ratio", "model.prune_layers",
    "model.encoder_kwargs", "model.pretrained", "data.n_train", "data.img_size",
    "data.dataset", "data.max_len", "data.nosuch", "nosuch.x", "train", "train.epochs.x",
    "model.", ".x",
])
YAML_VALUES = st.one_of(
    st.sampled_from(["1", "2.5", "-1", "0", "abc", "[1, 2]", "{a: 1}", "null", "true", "3e-4",
                     ".nan", "[", "'x", "~", "64", "[0.9, 0.98]", "shapes", "1e400", ""]),
    st.text(max_size=8),
)


@FUZZ
@given(st.lists(st.tuples(SECTIONS_KEYS, st.sampled_from(["=", ""]), YAML_VALUES),
                min_size=1, max_size=3))
def test_random_set_strings_give_a_valid_config_or_one_line_error(items):
    overrides = [f"{key}{equals}{value}" for key, equals, value in items]
    try:
        config = load_run_config("shapes_vit_ci", overrides)
    except ValueError as err:
        _one_line(err)
        return
    assert set(config) >= {"data", "model", "train"}


@pytest.mark.parametrize("data", [b"", b"\x00", b"PK\x03\x04", b"\x80\x02}q\x00."])
def test_tiny_checkpoint_files(data):
    with pytest.raises(CheckpointError):
        load_checkpoint(_write("tiny.pt", data))
