"""Every bad input and fault ends in one clear line, and nothing is lost (issue 16).

The CLI cases run in-process (``ptlib.cli.main``): a Python start with torch costs
seconds. One checkpoint, built without training, serves every test here.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import pickle
import shlex
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from ptlib.cli import main
from ptlib.data.images import BadImageError
from ptlib.errors import ExternalToolError, one_line
from ptlib.metrics import java_available
from ptlib.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)

requires_java = pytest.mark.skipif(not java_available(), reason="METEOR / PTB need java on PATH")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A checkpoint of the ci ViT config (untrained), images good and bad, broken files."""
    from ptlib.train.run import build_model, build_run_data
    from ptlib.train.runconfig import load_run_config

    root = tmp_path_factory.mktemp("errors")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PTLIB_DATA_DIR", str(root / "data"))
        config = load_run_config("shapes_vit_ci")
        data = build_run_data(config["data"], splits=("train",))
        model = build_model(config["model"], data.vocab)
    run_config = {k: config[k] for k in ("name", "data", "model", "train")}
    ckpt = save_checkpoint(root / "run" / "best.pt", {
        "run_config": run_config, "vocab": data.vocab.to_json(), "model": model.state_dict()})
    good = root / "good.png"
    Image.new("RGB", (40, 30), (200, 30, 30)).save(good)
    (root / "bad.jpg").write_bytes(b"not an image at all")
    (root / "text.pt").write_text("hello, I am text\n")
    (root / "one.pt").write_bytes(b"x")
    (root / "a_file").write_text("I am a file, not a folder")
    return {"root": root, "ckpt": ckpt, "good": good, "data": data, "config": config,
            "model": model}


def run_cli(command: str, root: Path | None = None) -> tuple[int, str, str]:
    """Run ``ptlib COMMAND`` in-process: (exit code, stdout, stderr)."""
    argv = shlex.split(command.format(root=root) if root is not None else command)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            code = main(argv)
        except SystemExit as done:
            code = done.code
    return int(code or 0), out.getvalue(), err.getvalue()


BAD_COMMANDS: list[tuple[str, str]] = [
    # (arguments, a phrase the one error line must hold)
    ("nosuch", "invalid choice"),
    ("info --nosuch", "unrecognized arguments"),
    ("train", "--config"),
    ("train --config nosuch", "no run config named 'nosuch'"),
    ("train --config shapes_vit_ci --set train.epochs=abc", "train.epochs='abc': must be an integer"),
    ("train --config shapes_vit_ci --set train.lr=abc", "train.lr='abc': must be a number"),
    ("train --config shapes_vit_ci --set train.batch_size=[1,2]", "train.batch_size=[1, 2]"),
    ("train --config shapes_vit_ci --set model.d_model=abc", "model.d_model='abc'"),
    ("train --config shapes_vit_ci --set data.nosuch=1", "data: unknown key nosuch"),
    ("train --config shapes_vit_ci --set model.nosuch=1", "nosuch"),
    ("train --config shapes_vit_ci --set train.nosuch=1", "nosuch"),
    ("train --config shapes_vit_ci --set train.epochs=2.5", "train.epochs=2.5: must be an integer"),
    ("train --config shapes_vit_ci --set train.epochs.x=1", "train.epochs is a value"),
    ("train --config shapes_vit_ci --set epochs", "section.key=value"),
    ("train --config shapes_vit_ci --stop-at-epoch -1", "--stop-at-epoch: -1 is not allowed"),
    ("train --config shapes_vit_ci --out {root}/a_file/sub", "lies under the file"),
    ("train --config shapes_vit_ci --out {root}/a_file", "is a file"),
    ("eval --ckpt {root}/missing.pt", "does not exist"),
    ("eval --ckpt {root}/text.pt", "cannot be read as a torch checkpoint"),
    ("eval --ckpt {root}/one.pt", "cannot be read as a torch checkpoint"),
    ("eval --ckpt {root}/run/best.pt --max-images -5", "--max-images: -5 is not allowed"),
    ("eval --ckpt {root}/run/best.pt --beam 0", "--beam: 0 is not allowed"),
    ("eval --ckpt {root}/run/best.pt --beam x", "'x' is not an integer"),
    ("eval --ckpt {root}/run/best.pt --out {root}/a_file/r.json", "is a file, not a folder"),
    ("caption --ckpt {root}/one.pt {root}/good.png", "cannot be read"),
    ("caption --ckpt {root}/run/best.pt --beam 0 {root}/good.png", "--beam: 0"),
    ("caption --ckpt {root}/run/best.pt --attention {root}/a_file/a.png {root}/good.png",
     "is a file, not a folder"),
    ("caption --ckpt {root}/run/best.pt --attention {root}/a.png {root}/good.png {root}/good.png",
     "exactly one IMAGE"),
    ("data shapes --out {root}/a_file", "is a file"),
    ("data shapes --out {root}/shapes --n-train -3", "n_train"),
    ("data shapes --img-size big", "'big'"),
    ("results --only nosuch", "nosuch"),
    ("results --profile nosuch", "nosuch"),
    ("bench nosuch", "invalid choice"),
]


def test_every_command_answers_bad_arguments_with_one_line(world):
    failures = []
    for command, phrase in BAD_COMMANDS:
        code, _, err = run_cli(command, world["root"])
        lines = [line for line in err.splitlines() if line.strip()]
        if code == 0 or "Traceback" in err or len(lines) != 1 or phrase not in lines[0] \
                or not lines[0].startswith("ptlib"):
            failures.append(f"ptlib {command}: exit {code}, stderr {err!r}")
    assert not failures, "\n".join(failures)


def test_caption_captions_every_readable_image_and_names_each_bad_one(world):
    root = world["root"]
    code, out, err = run_cli(
        "caption --ckpt {root}/run/best.pt --beam 1 {root}/good.png {root}/bad.jpg "
        "{root}/missing.png {root}/good.png --json", root)
    assert code == 1
    captioned = [line for line in out.splitlines() if line.startswith(str(root / "good.png"))]
    assert len(captioned) == 2
    lines = err.strip().splitlines()
    assert lines == [
        f"ptlib caption: error: bad image {root}/bad.jpg: not an image (Pillow cannot identify "
        "the format)",
        f"ptlib caption: error: bad image {root}/missing.png: file not found",
        f"ptlib caption: error: 2 of 4 image(s) could not be captioned: {root}/bad.jpg, "
        f"{root}/missing.png",
    ]
    assert run_cli("caption --ckpt {root}/run/best.pt --beam 1 {root}/good.png", root)[0] == 0


def test_blocked_pickle_global_is_named_as_refused_for_safety(world, capsys):
    path = world["root"] / "evil.pt"
    torch.save({"format": 1, "payload": _Evil()}, path)
    code, _, err = run_cli(f"caption --ckpt {path} {world['good']}")
    assert code == 2 and "refused for safety" in err and "system" in err
    assert "weights_only=False" not in err and "Re-running" not in err
    assert len(err.strip().splitlines()) == 1


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _edited_checkpoint(world, name: str, **changes) -> Path:
    state = load_checkpoint(world["ckpt"])
    for key, value in changes.items():
        section, field = key.split("__")
        state["run_config"][section][field] = value
    return save_checkpoint(world["root"] / name, state)


@pytest.mark.parametrize("change, named", [
    ({"model__d_model": 32}, "in the file"),
    ({"model__n_decoder_layers": 3}, "missing"),
])
def test_checkpoint_that_does_not_fit_its_model_is_refused_before_loading(world, change, named):
    from ptlib.train.run import load_captioner

    path = _edited_checkpoint(world, f"mismatch_{next(iter(change))}.pt", **change)
    calls = []
    original = torch.nn.Module.load_state_dict
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.nn.Module, "load_state_dict",
                      lambda *a, **k: calls.append(1) or original(*a, **k))
        with pytest.raises(CheckpointError, match="does not fit the model") as info:
            load_captioner(path)
    assert not calls and named in str(info.value) and "\n" not in str(info.value)


def test_resume_refuses_another_model_data_or_vocabulary_naming_the_keys(world):
    from ptlib.train.config import TrainConfig
    from ptlib.train.trainer import Trainer

    data, config = world["data"], world["config"]
    state = load_checkpoint(world["ckpt"])
    state.update(train_config=TrainConfig.from_dict(config["train"]).to_dict())
    state["run_config"]["model"]["d_model"] = 32
    state["run_config"]["data"]["n_train"] = 99
    state["vocab"] = {**state["vocab"], "itos": state["vocab"]["itos"][:-1]}
    path = save_checkpoint(world["root"] / "resume_other.pt", state)
    trainer = Trainer(
        world["model"], data.datasets["train"], None, TrainConfig.from_dict(config["train"]),
        world["root"] / "resume_out", collate_fn=lambda x: x, device=torch.device("cpu"),
        checkpoint_extra={"run_config": load_checkpoint(world["ckpt"])["run_config"],
                          "vocab": data.vocab.to_json()},
        show_progress=False,
    )
    before = {k: v.clone() for k, v in world["model"].state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        trainer.resume(path)
    message = str(info.value)
    assert "model.d_model: 32 -> 64" in message and "data.n_train: 99 -> 64" in message
    assert "vocabulary size" in message and "\n" not in message
    assert all(torch.equal(before[k], v) for k, v in world["model"].state_dict().items())


def test_failed_save_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "last.pt", {"epoch": 1})

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(path, {"epoch": 2})
    message = one_line(info.value)
    assert str(path) in message and "No space left on device" in message
    assert "previous file is intact" in message
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_stale_temp_files_of_killed_saves_are_removed_on_the_next_save(tmp_path):
    stale = [tmp_path / ".last.pt.abc123.tmp", tmp_path / ".best.pt.x.tmp"]
    for file in stale:
        file.write_bytes(b"half a checkpoint")
    (tmp_path / "keep.tmp").write_text("not ours")
    save_checkpoint(tmp_path / "last.pt", {"epoch": 1})
    assert not stale[0].exists() and stale[1].exists()
    from ptlib.train.checkpoint import remove_stale_temp_files

    assert remove_stale_temp_files(tmp_path) == [stale[1]]
    assert (tmp_path / "keep.tmp").exists()


def test_bad_image_in_a_dataloader_worker_reaches_the_user_as_one_line(world, capsys):
    from torch.utils.data import DataLoader

    from ptlib.data.datasets import CaptionDataset, collate_captions

    dataset = world["data"].datasets["train"]
    image_dir = dataset.image_dir
    broken = CaptionDataset(image_dir, dataset.records[:2], dataset.vocab, img_size=64)
    target = world["root"] / "worker_images"
    target.mkdir()
    for record in broken.records:
        (target / record.file_name).parent.mkdir(parents=True, exist_ok=True)
        (target / record.file_name).write_bytes(b"\xff\xd8\xff truncated jpeg")
    broken.image_dir = target
    loader = DataLoader(broken, batch_size=2, num_workers=1, collate_fn=collate_captions)
    with pytest.raises(BadImageError) as info:
        next(iter(loader))
    assert one_line(info.value).startswith(f"bad image {target}")
    assert "Traceback" not in one_line(info.value)
    assert info.value.reason == "not an image (Pillow cannot identify the format)"
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.path, copy.reason) == (info.value.path, info.value.reason)


def test_ctrl_c_before_the_first_batch_is_one_line(monkeypatch, capsys):
    import ptlib.train.runconfig as runconfig

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runconfig, "load_run_config", interrupted)
    assert main(["train", "--config", "shapes_vit_ci"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "ptlib train: interrupted (Ctrl-C) before it finished"
    monkeypatch.setenv("PTLIB_DEBUG", "1")
    with pytest.raises(KeyboardInterrupt):
        main(["train", "--config", "shapes_vit_ci"])


def test_debug_shows_the_traceback_and_bugs_still_raise(monkeypatch, capsys):
    with pytest.raises(ValueError, match="train.epochs"):
        main(["--debug", "train", "--config", "shapes_vit_ci", "--set", "train.epochs=x"])
    import ptlib.train.runconfig as runconfig

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(runconfig, "load_run_config", bug)
    with pytest.raises(ZeroDivisionError):
        main(["train", "--config", "shapes_vit_ci"])
    monkeypatch.setattr(runconfig, "load_run_config",
                        lambda *a, **k: (_ for _ in ()).throw(KeyError(101)))
    with pytest.raises(KeyError):  # a bare key is a bug, not a message
        main(["train", "--config", "shapes_vit_ci"])


def test_nan_message_does_not_advise_clipping_that_is_already_on(world, tmp_path):
    from ptlib.train.config import TrainConfig
    from ptlib.train.trainer import Trainer

    class NanModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(1))

        def forward(self, images, tokens):
            logits = self.weight * torch.full((*tokens.shape, 5), float("nan"))
            return type("Out", (), {"logits": logits, "aux_loss": None})()

    samples = [{"images": torch.zeros(3), "tokens": torch.tensor([1, 2, 3])}] * 4

    def collate(items):
        return {"images": torch.stack([i["images"] for i in items]),
                "tokens": torch.stack([i["tokens"] for i in items])}

    for clip, advice in ((1.0, "already on: train.grad_clip=1.0"), (0.0, "set train.grad_clip")):
        cfg = TrainConfig(epochs=1, batch_size=2, grad_clip=clip, eval_every=0)
        result = Trainer(NanModel(), samples, None, cfg, tmp_path / str(clip), collate_fn=collate,
                         device=torch.device("cpu"), show_progress=False).fit()
        assert result.status == "nan" and advice in result.message
        assert (clip > 0) == ("or set train.grad_clip" not in result.message)


def test_dropped_captions_are_counted_and_reported(tmp_path, monkeypatch, capsys):
    from ptlib.train.command import _report_left_out

    _report_left_out("train", [("captions.json: annotations[3] (image 1)", "empty caption")] * 5,
                     [("img/a.jpg", "truncated")])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ptlib train: 5 caption(s)/image(s) dropped from the annotation")
    assert out[0].endswith("and 2 more")
    assert out[1] == "ptlib train: 1 unreadable image(s) skipped: img/a.jpg: truncated"


def test_build_caption_data_keeps_what_the_annotations_dropped(tmp_path, monkeypatch):
    import json

    import ptlib.data.shapes as shapes_module
    from ptlib import course
    from ptlib.data.loaders import build_caption_data
    from ptlib.data.shapes import ShapesConfig, generate_shapes_dataset, shapes_paths

    sizes = {"img_size": 32, "n_train": 4, "n_val": 2, "n_test": 2, "n_compositional": 0}
    root = tmp_path / "shapes"
    generate_shapes_dataset(root, ShapesConfig(**sizes), verbose=False)
    captions = shapes_paths(root, "train")[1]
    content = json.loads(captions.read_text())
    content["annotations"][0]["caption"] = "   "
    captions.write_text(json.dumps(content))
    monkeypatch.setattr(shapes_module, "ensure_shapes_dataset", lambda *a, **k: root)
    profile = course.Profile(name="t", description="", seed=0, settings={"data": {
        "dataset": "shapes", "vocab_min_freq": 1, **sizes}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = build_caption_data(profile, splits=("train",))
    image_id = content["annotations"][0]["image_id"]
    assert data.dropped == [(f"{captions.name}: annotations[0] (image {image_id})",
                             "empty caption")]


# ---------------------------------------------------------------------------
# External processes: timeouts, a checkout path with a space, no Java
# ---------------------------------------------------------------------------


@requires_java
def test_meteor_and_ptb_run_from_a_folder_whose_path_has_a_space(tmp_path, monkeypatch):
    import shutil

    from ptlib.metrics import CaptionScorer
    from ptlib.metrics import java as java_module

    real = java_module.meteor_dir()
    spaced = tmp_path / "with space" / "meteor"
    (spaced / "data").mkdir(parents=True)
    shutil.copy(real / "meteor-1.5.jar", spaced / "meteor-1.5.jar")  # a copy: java resolves links
    (spaced / "data" / "paraphrase-en.gz").symlink_to(real / "data" / "paraphrase-en.gz")
    ptb = tmp_path / "with space" / "tokenizer"
    ptb.mkdir()
    jar = java_module.tokenizer_dir() / "stanford-corenlp-3.4.1.jar"
    (ptb / jar.name).symlink_to(jar)
    monkeypatch.setattr(java_module, "meteor_dir", lambda: spaced)
    monkeypatch.setattr(java_module, "tokenizer_dir", lambda: ptb)
    with CaptionScorer(("METEOR",), tokenizer="ptb") as scorer:
        result = scorer.score({1: ["A red circle."], 2: ["two blue squares"]},
                              {1: "a red circle", 2: "a green star"})
    assert result["tokenizer"] == "ptb"
    assert 0 < result["METEOR"] < 1 and not math.isnan(result["METEOR"])


@requires_java
def test_a_failing_meteor_ends_in_one_line_not_a_hang(tmp_path, monkeypatch):
    from ptlib.metrics import CaptionScorer
    from ptlib.metrics import java as java_module

    broken = tmp_path / "meteor"
    (broken / "data").mkdir(parents=True)
    (broken / "meteor-1.5.jar").write_bytes(b"not a jar")
    (broken / "data" / "paraphrase-en.gz").write_bytes(b"")
    monkeypatch.setattr(java_module, "meteor_dir", lambda: broken)
    scorer = CaptionScorer(("METEOR",), tokenizer="python")
    with pytest.raises(ExternalToolError) as info:
        scorer.score({1: ["a red circle"]}, {1: "a red circle"})
    assert "METEOR (Java) exited" in str(info.value) and "java said:" in str(info.value)
    assert "\n" not in str(info.value)
    scorer.close()  # returns at once: no lock left held
    scorer.close()


@requires_java
def test_a_java_helper_that_does_not_answer_is_stopped_by_the_timeout(monkeypatch):
    from ptlib.metrics import java as java_module

    monkeypatch.setenv("PTLIB_JAVA_TIMEOUT", "0.001")
    with pytest.raises(ExternalToolError, match="gave no answer within 0.001 s"):
        java_module.ptb_tokenize({1: ["a red circle"]})
    monkeypatch.setenv("PTLIB_JAVA_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="PTLIB_JAVA_TIMEOUT='soon'"):
        java_module.java_timeout()


def test_without_java_scores_say_java_is_missing(monkeypatch):
    import shutil

    from ptlib.metrics import CaptionScorer

    real_which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda cmd, *a, **k: None if cmd == "java" else real_which(cmd, *a, **k))
    with pytest.warns(RuntimeWarning):
        scorer = CaptionScorer()
    result = scorer.score({1: ["a red circle"], 2: ["a blue star"]},
                          {1: "a red circle", 2: "a star"})
    assert result["METEOR"] is None and result["SPICE"] is None
    assert result["unavailable"] == {
        "METEOR": "java not found on PATH (METEOR 1.5 runs in Java)",
        "SPICE": "java not found on PATH (SPICE runs in Java)",
    }
    assert result["BLEU-1"] > 0
