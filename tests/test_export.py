"""ONNX export: raw pixels in, probabilities out, checked against the checkpoint before the file exists."""

import csv
import json

import numpy as np
import pytest
from helpers import FIT, module_probabilities, patterned_images

onnx = pytest.importorskip("onnx", reason="the export extra: pip install -e '.[export]'")
onnxruntime = pytest.importorskip("onnxruntime", reason="the export extra: pip install -e '.[export]'")

from cifar_lightning.__main__ import main as package_main  # noqa: E402
from cifar_lightning.training.data import CIFAR10_STD  # noqa: E402


@pytest.fixture
def trained(run_cli, tmp_path):
    # a few steps at a high rate: outputs far from uniform, so that a mix-up of the input shows
    assert run_cli(*FIT, "--model.optimizer.init_args.lr=0.05", "--data.mean=[0.4,0.5,0.6]") == 0
    return tmp_path


def test_export_takes_pixels_gives_probabilities_and_matches_the_checkpoint(trained, data_dir, capsys):
    (trained / "exports").mkdir()  # a folder: the model's own name in it
    args = ["export", "--config=configs/model1.yaml", "--output=exports", f"--data.data_dir={data_dir}"]
    assert package_main(args) == 0
    out = capsys.readouterr().out
    assert "check on 128 validation images: largest probability difference" in out
    assert "wrote exports/model1.onnx" in out
    model = onnx.load(trained / "exports/model1.onnx")
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["classes"])[0] == "airplane" and "model1" in meta["config"] and float(meta["val_acc"]) >= 0
    session = onnxruntime.InferenceSession(str(trained / "exports/model1.onnx"), providers=["CPUExecutionProvider"])
    arrays = np.load(data_dir / "cifar10.npz")
    for n in (1, 5, 33):  # any batch size
        probs = session.run(None, {"images": arrays["x_test"][:n]})[0]
        assert probs.shape == (n, 10) and probs.dtype == np.float32
        np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert not list(trained.rglob(".model1.onnx.*"))


def test_a_checkpoint_in_its_run_folder_exports_with_the_runs_own_config(trained, data_dir, capsys):
    ckpt = next((trained / "lightning_logs/model1/version_0/checkpoints").glob("epoch=*"))
    assert package_main(["export", f"--ckpt_path={ckpt}", f"--data.data_dir={data_dir}"]) == 0
    meta = {p.key: p.value for p in onnx.load(trained / "model1.onnx").metadata_props}
    assert meta["config"] == (ckpt.parents[1] / "config.yaml").read_text() and meta["checkpoint"] == str(ckpt)
    (trained / "loose.ckpt").write_bytes(ckpt.read_bytes())  # outside a run folder: no config to go by
    capsys.readouterr()
    assert package_main(["export", "--ckpt_path=loose.ckpt", f"--data.data_dir={data_dir}", "--output=loose.onnx"]) == 1
    assert capsys.readouterr().err.startswith("error: export needs --config, the config the checkpoint was trained")
    assert not (trained / "loose.onnx").exists()


def test_every_way_out_of_the_package_gives_the_lightning_modules_probabilities(trained, data_dir, tmp_path, run_cli):
    """The wrapper in PyTorch, onnxruntime on the exported file and ``predict`` on image files, against the
    LightningModule's own softmax on the same images (patterned so that a transposed, mirrored or channel-swapped
    input, or a wrong mean or std, changes the answer), as tight as the export's own check."""
    import torch
    from PIL import Image

    from cifar_lightning.tools.export import TOLERANCE, load_classifier

    ckpt = next((trained / "lightning_logs/model1/version_0/checkpoints").glob("epoch=*"))
    images = patterned_images()
    (tmp_path / "reference").mkdir()
    expected = module_probabilities(ckpt, images, tmp_path / "reference")
    wrapper, _ = load_classifier(ckpt)
    with torch.no_grad():
        in_torch = wrapper(torch.from_numpy(images)).numpy()
        for altered in (images.transpose(0, 2, 1, 3), images[:, :, ::-1], images[..., ::-1]):  # the images matter
            moved = wrapper(torch.from_numpy(altered.copy())).numpy()
            assert np.abs(moved - expected).max() > 10 * TOLERANCE
    export = ["export", "--config=configs/model1.yaml", "--output=m.onnx", f"--data.data_dir={data_dir}"]
    assert package_main(export) == 0
    session = onnxruntime.InferenceSession(str(trained / "m.onnx"), providers=["CPUExecutionProvider"])
    in_onnxruntime = session.run(None, {"images": images})[0]
    (tmp_path / "photos").mkdir()
    for i, image in enumerate(images):  # PNG: lossless, and 32x32 so the resize changes nothing
        Image.fromarray(image).save(tmp_path / "photos" / f"{i:02d}.png")
    assert run_cli("predict", "--config=configs/model1.yaml", "--data.predict_path=photos", f"--ckpt_path={ckpt}") == 0
    with open(tmp_path / "predictions.csv") as f:
        rows = list(csv.reader(f))[1:]
    in_predict = np.array([[float(p) for p in row[3:]] for row in sorted(rows)])

    for got in (in_torch, in_onnxruntime, in_predict):
        assert (got.argmax(1) == expected.argmax(1)).all()
        np.testing.assert_allclose(got, expected, atol=TOLERANCE)


def test_the_normalization_travels_with_the_model(trained, data_dir):
    """The checkpoint was trained with mean (0.4, 0.5, 0.6): the export must use it, not the study's."""
    import torch

    from cifar_lightning.tools.export import load_classifier

    ckpt = next((trained / "lightning_logs/model1/version_0/checkpoints").glob("epoch=*"))
    model, _ = load_classifier(ckpt)
    assert model.mean.flatten().tolist() == pytest.approx([0.4, 0.5, 0.6])
    assert model.std.flatten().tolist() == pytest.approx(CIFAR10_STD)
    assert model(torch.zeros(2, 32, 32, 3, dtype=torch.uint8)).shape == (2, 10)


@pytest.mark.parametrize("problem", ["corrupt", "unwritable"])
def test_a_bad_checkpoint_or_output_is_one_error_and_no_file(trained, data_dir, capsys, problem):
    args = ["export", "--config=configs/model1.yaml", f"--data.data_dir={data_dir}"]
    if problem == "corrupt":
        (trained / "bad.ckpt").write_bytes(b"not a checkpoint")
        args += ["--ckpt_path=bad.ckpt", "--output=out.onnx"]
    else:
        args += ["--output=missing/folder/out.onnx"]
    assert package_main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert ("bad.ckpt is not a readable checkpoint" if problem == "corrupt" else "cannot write missing") in err
    assert not list(trained.rglob("*.onnx*"))


def test_a_full_disk_is_one_error_and_no_file(trained, data_dir, capsys, monkeypatch):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx, "save", full)  # where the exporter's own write ran out of space
    args = ["export", "--config=configs/model1.yaml", f"--data.data_dir={data_dir}", "--output=out.onnx"]
    assert package_main(args) == 1
    err = capsys.readouterr().err
    assert err == "error: cannot write out.onnx: No space left on device; no file was left half-written\n"
    assert not list(trained.rglob("*.onnx*"))
