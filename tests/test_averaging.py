"""Weight averaging through Lightning's own EMAWeightAveraging callback, switched on from the config."""

import torch
from helpers import FIT

from cifar_lightning.training.classifier import CIFARClassifier

EMA = [
    "--trainer.callbacks+=EMAWeightAveraging",
    "--trainer.callbacks.decay=0.5",
    "--trainer.callbacks.use_buffers=false",
]
RUN = "lightning_logs/model1/version_0/checkpoints"


def test_the_checkpoint_holds_the_exponential_moving_average_of_the_weights(run_cli, tmp_path, monkeypatch):
    seen = []
    on_train_batch_end = CIFARClassifier.on_train_batch_end

    def record(self, outputs, batch, batch_idx):
        on_train_batch_end(self, outputs, batch, batch_idx)
        seen.append(self.net.classifier[-1].weight.detach().clone())

    monkeypatch.setattr(CIFARClassifier, "on_train_batch_end", record)
    assert run_cli(*FIT[:2], "--trainer.max_epochs=1", "--trainer.limit_train_batches=4", *EMA) == 0
    ema = seen[0]
    for weight in seen[1:]:
        ema = 0.5 * ema + 0.5 * weight  # torch.optim.swa_utils.get_ema_avg_fn: the first update copies
    last = torch.load(tmp_path / RUN / "last.ckpt", weights_only=True)
    torch.testing.assert_close(last["state_dict"]["net.classifier.3.weight"], ema)
    torch.testing.assert_close(last["current_model_state"]["net.classifier.3.weight"], seen[-1])
    assert not torch.equal(ema, seen[-1])


def test_resume_with_weight_averaging_is_exact(run_cli, tmp_path):
    args = [*FIT[:2], "--trainer.limit_train_batches=4", *EMA]
    assert run_cli(*args, "--trainer.max_epochs=2") == 0
    whole = torch.load(tmp_path / RUN / "last.ckpt", weights_only=True)
    (tmp_path / "lightning_logs").rename(tmp_path / "whole")
    assert run_cli(*args, "--trainer.max_epochs=1") == 0
    assert run_cli(*args, "--trainer.max_epochs=2", "--ckpt_path=last") == 0
    resumed = torch.load(tmp_path / RUN / "last.ckpt", weights_only=True)
    for key in ("state_dict", "current_model_state"):
        for name, value in whole[key].items():
            assert torch.equal(value, resumed[key][name]), (key, name)


def test_an_averaged_run_fits_tests_and_predicts_without_warnings_not_the_users_to_act_on(run_cli, tmp_path, recwarn):
    """Lightning warns when a run with weight averaging is tested (its checkpoint already holds the averaged
    weights), when the module has a ``configure_model`` hook (this one shards nothing), and when predict's loader
    has no batch indices (the prediction CSV goes by file order): none of it is the user's to act on."""
    from PIL import Image

    assert run_cli(*FIT[:2], "--trainer.max_epochs=1", "--trainer.limit_train_batches=4", *EMA) == 0
    assert run_cli("test", "--config=configs/model1.yaml", *EMA) == 0
    images = tmp_path / "mine"
    images.mkdir()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(images / "red.png")
    assert run_cli("predict", "--config=configs/model1.yaml", f"--data.predict_path={images}", *EMA) == 0
    assert (tmp_path / "predictions.csv").read_text().count("red.png") == 1
    said = [str(w.message) for w in recwarn]
    for text in ("WeightAveraging", "batch indices"):
        assert not [s for s in said if text in s], "\n".join(said)
