"""``python -m cifar_lightning export``: a checkpoint as an ONNX model that other runtimes can use as it is.

The model takes what an image file decodes to, uint8 ``[N, 32, 32, 3]`` (any N), and returns the ten class
probabilities: the normalization the checkpoint was trained with travels inside it, so a runtime fed raw
pixels gets the right answers. Before the file appears under its name, onnxruntime must agree with the
checkpoint on every validation image (same class, probabilities within ``TOLERANCE``).
"""

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cifar_lightning.atomic import atomic_write, in_folder, writing
from cifar_lightning.errors import CifarError
from cifar_lightning.runs.checkpoints import load_checkpoint
from cifar_lightning.runs.cli import config_location, experiment
from cifar_lightning.runs.config_checks import Seed
from cifar_lightning.runs.folders import CONFIG_FILE, resolve_checkpoint, run_of
from cifar_lightning.training.data import CIFAR10_MEAN, CIFAR10_STD, CLASSES, NPZ_NAME, VAL_SIZE, load_npz

TOLERANCE = 1e-4
INSTALL = "pip install -e '.[export]'"


class PixelsToProbabilities(nn.Module):
    """uint8 NHWC pixels -> normalized NCHW floats -> the ConvNet -> softmax, in one graph."""

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        x = images.permute(0, 3, 1, 2).float().div(255).sub(self.mean).div(self.std)
        return self.net(x).softmax(dim=1)


def load_classifier(path: Path) -> tuple[PixelsToProbabilities, dict[str, Any]]:
    """The network of a checkpoint written by fit, with its normalization; any problem is one CifarError."""
    from cifar_lightning.training.classifier import CIFARClassifier

    checkpoint = load_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters") or {}
    model = CIFARClassifier(dropout=hparams.get("dropout", 0.0))
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise CifarError(f"{path} does not fit this ConvNet ({first}): pass a checkpoint written by fit") from None
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    mean, std = tuple(data.get("mean", CIFAR10_MEAN)), tuple(data.get("std", CIFAR10_STD))
    return PixelsToProbabilities(model.net, mean, std).eval(), checkpoint


def resolve(config: Path, ckpt_path: str, seed: int) -> Path:
    """``best``/``last`` of the config's runs with this seed, as ``test`` resolves them (a run of the config's own
    settings first); or the file given."""
    options = (f"--seed_everything={seed}",)
    save_dir, name, _ = config_location(config, options)
    path, why = resolve_checkpoint(save_dir, name, ckpt_path, seed, experiment=experiment(config, options))
    if why:
        print(f"using {path} ({why})")
    return path


def export(
    config: str = "",
    ckpt_path: str = "best",
    output: str = ".",
    seed: Seed = 0,
    data_dir: str | None = None,
) -> Path:
    """Write an ONNX model of a checkpoint and check it against the checkpoint on the validation images.

    Args:
        config: the config the checkpoint was trained with (names its runs and its data); default: the
            ``config.yaml`` of the run folder a checkpoint file sits in.
        ckpt_path: a checkpoint file, or ``best``/``last`` of the config's runs with ``seed``.
        output: the ``.onnx`` file to write, or a folder to write ``<model>.onnx`` in (as ``cp`` does).
        seed: which seed's run ``best``/``last`` mean.
        data_dir: the folder with ``cifar10.npz`` for the check (default: the checkpoint's own data folder).
    """
    if not config:
        run = run_of(Path(ckpt_path)) if ckpt_path not in ("best", "last") else None
        if run is None or not (run / CONFIG_FILE).is_file():
            raise CifarError(
                "export needs --config, the config the checkpoint was trained with (e.g. configs/model4.yaml), "
                "unless --ckpt_path is a checkpoint file in its run folder (MODEL/version_N/checkpoints/)"
            )
        config = str(run / CONFIG_FILE)
    try:
        import onnx
        import onnxruntime
    except ModuleNotFoundError as err:
        raise CifarError(f"export needs {err.name}: install the extra with {INSTALL}") from None
    path = resolve(Path(config), ckpt_path, seed)
    model, checkpoint = load_classifier(path)
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    target = in_folder(output, f"{config_location(Path(config))[1]}.onnx")
    try:  # the exporter may write its weights beside the graph: everything stays in scratch until checked
        scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    except OSError as err:  # tried, not foretold: a permission check says nothing of a full or read-only disk
        raise CifarError(f"cannot write {target}: {err.strerror}; pass --output in a folder you can write") from None
    try:
        npz = Path(data_dir or data.get("data_dir", "data")) / NPZ_NAME
        arrays = load_npz(npz)
        val_size = data.get("val_size", VAL_SIZE)
        images, labels = arrays["x_train"][-val_size:], arrays["y_train"][-val_size:]
        with writing(target):  # a full disk or a folder turned read-only, in the exporter's writes or ours
            raw, final = scratch / "exported.onnx", scratch / "final.onnx"
            example = torch.from_numpy(images[:2])
            batch = torch.export.Dim("batch")
            torch.onnx.export(
                model, (example,), raw, input_names=["images"], output_names=["probabilities"],
                dynamic_shapes={"images": {0: batch}}, dynamo=True, verbose=False,
            )  # fmt: skip
            with torch.no_grad():
                expected = model(torch.from_numpy(images)).numpy()
            onnx_model = onnx.load(raw)
            metadata = {
                "classes": json.dumps(CLASSES),
                "input": "uint8 [N,32,32,3] RGB pixels, as decoded from an image file",
                "output": "float32 [N,10] class probabilities, in the order of 'classes'",
                "checkpoint": str(path),
                "config": Path(config).read_text(),
            }
            onnx.save(onnx_model, final)  # one self-contained file
            session = onnxruntime.InferenceSession(str(final), providers=["CPUExecutionProvider"])
            got = session.run(None, {"images": images})[0]
            largest = float(np.abs(got - expected).max())
            same_class = bool((got.argmax(1) == expected.argmax(1)).all())
            print(f"check on {len(images)} validation images: largest probability difference {largest:.2e}")
            if not same_class or largest > TOLERANCE:
                raise CifarError(
                    f"onnxruntime disagrees with the checkpoint (largest probability difference {largest:.2e}, "
                    f"same classes: {same_class}): {target} not written"
                )
            val_acc = float((got.argmax(1) == labels).mean())
            for key, value in {**metadata, "val_acc": f"{val_acc:.4f}"}.items():
                onnx_model.metadata_props.add(key=key, value=value)
            atomic_write(target, lambda f: f.write(onnx_model.SerializeToString()))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"wrote {target} (validation accuracy {val_acc:.4f}; input uint8 [N,32,32,3], output 10 probabilities)")
    return target
