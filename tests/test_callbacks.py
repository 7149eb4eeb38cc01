"""The callbacks that leave a stage's files: here, the test record's calibration, read from what ``test_step``
returns and from the validation split only."""

import json

import pytest
import torch
from helpers import FIT, make_arrays

from cifar_lightning.training.classifier import CIFARClassifier


def test_the_temperature_is_fitted_on_the_validation_split_not_on_the_test_images(run_cli, tmp_path, data_dir):
    """Test images whose labels are all wrong call for a far higher temperature than the validation images: the
    run's record holds the validation one, as a fit of the same module's validation logits gives it."""
    import numpy as np

    from cifar_lightning.training import calibration
    from cifar_lightning.training.data import CIFAR10DataModule

    assert run_cli(*FIT, "--model.optimizer.init_args.lr=0.05") == 0
    ckpt = next((tmp_path / "lightning_logs/model1/version_0/checkpoints").glob("epoch=*"))
    mislabelled = tmp_path / "mislabelled"
    mislabelled.mkdir()
    arrays = make_arrays()  # the data the run was fitted on, every test label moved to the next class
    arrays["y_test"] = (arrays["y_test"] + 1) % 10
    np.savez(mislabelled / "cifar10.npz", **arrays)
    assert run_cli("test", "--config=configs/model1.yaml", f"--ckpt_path={ckpt}", f"--data.data_dir={mislabelled}") == 0
    record = json.loads((tmp_path / "lightning_logs/model1/version_0/test_results.json").read_text())

    model = CIFARClassifier.load_from_checkpoint(ckpt, map_location="cpu").eval()
    data = CIFAR10DataModule(data_dir=str(mislabelled), download=False, val_size=128)
    data.setup("test")
    temperatures = {}
    for split, loader in (("val", data.val_dataloader()), ("test", data.test_dataloader())):
        with torch.no_grad():
            logits, labels = (torch.cat(t) for t in zip(*((model(x), y) for x, y in loader), strict=True))
        temperatures[split] = calibration.fit_temperature(logits, labels)
    assert temperatures["test"] > 2 * temperatures["val"]  # the two splits do call for different ones
    assert record["test/temperature"] == pytest.approx(temperatures["val"], rel=1e-3)
