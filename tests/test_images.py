"""People's images as a viewer shows them, and files from strangers that must never run code."""

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from cifar_lightning.errors import CifarError
from cifar_lightning.training import images
from cifar_lightning.training.images import load_images, read_image


def test_exif_orientation_is_applied(tmp_path):
    """A phone photo stored sideways with Orientation=6 (rotate 90 degrees clockwise to view)."""
    stored = np.zeros((32, 64, 3), np.uint8)
    stored[:, :32] = (255, 0, 0)  # left half red, as stored
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    seen = read_image(tmp_path / "phone.jpg")
    assert seen[:12, :, 0].mean() > 200 and seen[-12:, :, 0].mean() < 60  # the red half is now on top


def test_sixteen_bit_grey_keeps_its_brightness(tmp_path):
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(tmp_path / "grey16.png")
    assert np.abs(read_image(tmp_path / "grey16.png").astype(int) - 128).max() <= 1


def test_transparent_pixels_are_shown_on_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = (0, 0, 0)  # black under full transparency
    Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    assert (read_image(tmp_path / "clear.png") == 255).all()


def test_folders_are_read_with_their_subfolders_in_order(tmp_path):
    (tmp_path / "b" / "c").mkdir(parents=True)
    for name in ("a.png", "b/x.png", "b/c/y.png", ".hidden.png"):
        Image.new("RGB", (40, 30), (10, 20, 30)).save(tmp_path / name)
    batch, files, failures = load_images(tmp_path)
    assert [str(f.relative_to(tmp_path)) for f in files] == ["a.png", "b/c/y.png", "b/x.png"]
    assert batch.shape == (3, 3, 32, 32) and batch.dtype == torch.uint8 and failures == []


def test_nothing_to_classify_is_an_error(tmp_path):
    with pytest.raises(CifarError, match=r"nothing to classify in .* \(no files\)"):
        load_images(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CifarError, match="1 files, none readable: notes.txt"):
        load_images(tmp_path)


def test_a_decompression_bomb_is_refused_without_decoding_it(tmp_path, monkeypatch):
    Image.new("L", (5000, 5000)).save(tmp_path / "bomb.png", optimize=True)  # a few KB, 25 M pixels
    Image.new("RGB", (32, 32), (0, 255, 0)).save(tmp_path / "ok.png")
    assert (tmp_path / "bomb.png").stat().st_size < 100_000
    monkeypatch.setattr(images, "MAX_PIXELS", 1_000_000)
    decoded = []
    monkeypatch.setattr(images, "to_rgb", lambda img: decoded.append(img) or img.convert("RGB"))
    batch, files, failures = load_images(tmp_path)
    assert [f.name for f in files] == ["ok.png"] and decoded == [decoded[0]] and len(decoded) == 1
    assert failures[0][0].name == "bomb.png" and "more than the 1,000,000 allowed" in failures[0][1]


class Payload:
    """Unpickling this would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_that_would_run_code_is_refused(run_cli, tmp_path, capsys):
    marker = tmp_path / "executed"
    with open(tmp_path / "evil.ckpt", "wb") as f:
        pickle.dump({"state_dict": Payload(marker), "pytorch-lightning_version": "2.6.6"}, f)
    assert run_cli("test", "--config=configs/model1.yaml", "--ckpt_path=evil.ckpt") == 1
    assert "evil.ckpt is not a readable checkpoint" in capsys.readouterr().err
    assert not marker.exists()


def test_a_data_file_that_would_run_code_is_refused(run_cli, tmp_path, data_dir, capsys):
    marker = tmp_path / "executed"
    arrays = dict(np.load(data_dir / "cifar10.npz"))
    arrays["y_train"] = np.array([Payload(marker)] * len(arrays["y_train"]), dtype=object)
    np.savez(data_dir / "cifar10.npz", **arrays)
    assert run_cli("fit", "--config=configs/model1.yaml", "--trainer.max_epochs=1") == 1
    assert "cifar10.npz is truncated or not a valid .npz file" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "lightning_logs").exists()


def test_a_config_file_that_would_run_code_is_refused(run_cli, tmp_path, capsys):
    marker = tmp_path / "executed"
    evil = tmp_path / "configs" / "evil.yaml"
    evil.write_text(f"seed_everything: !!python/object/apply:os.system ['touch {marker}']\n")
    assert run_cli("fit", "--config=configs/evil.yaml") == 2
    assert "configs/evil.yaml is not valid YAML" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "lightning_logs").exists()
    assert os.path.exists(evil)


def test_the_readmes_onnx_example_reads_the_pixels_predict_reads(tmp_path, monkeypatch):
    """The README's code for onnxruntime users, run on a large rotated photo, gives read_image's pixels exactly."""
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split('session = onnxruntime.InferenceSession("model4.onnx")\n')[1].split("probabilities =")[0]
    rng = np.random.default_rng(0)
    photo = np.clip(rng.normal(128, 60, (300, 400, 3)).cumsum(1) / 40, 0, 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(photo).save(tmp_path / "cat.jpg", exif=exif, quality=90)
    monkeypatch.chdir(tmp_path)
    namespace = {"np": np, "Image": Image}
    exec("from PIL import ImageOps\n" + block, namespace)
    assert namespace["pixels"].shape == (1, 32, 32, 3)
    assert np.array_equal(namespace["pixels"][0], read_image(tmp_path / "cat.jpg"))
