"""The LightningModule: the ConvNet, its loss and metrics, the optimizer and schedule from YAML."""

import math
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from jsonargparse.typing import ClosedUnitInterval, restricted_number_type
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix
from torchmetrics.functional.classification import multiclass_accuracy

from cifar_lightning.errors import CifarError
from cifar_lightning.training.cuda_graphs import GraphedStep
from cifar_lightning.training.data import CLASSES
from cifar_lightning.training.finite import FiniteGuard, logs_this_step
from cifar_lightning.training.network import ConvNet
from cifar_lightning.training.random_state import RandomState

DropoutP = restricted_number_type("DropoutP", float, [(">=", 0), ("<", 1)], docstring="0 (no dropout) to below 1")
NUM_CLASSES = 10


def per_class_accuracy(confusion: Tensor) -> Tensor:
    """Recall of each class from a confusion matrix whose rows are the true classes."""
    return confusion.diag() / confusion.sum(1).clamp(min=1)


def cuda_graph_blocker(trainer: L.Trainer, compiled: bool) -> str | None:
    """What rules out CUDA graph replays in this fit, or None: they need one device, fixed memory and shapes."""
    if trainer.strategy.root_device.type != "cuda":
        return "a CUDA device"
    if trainer.world_size > 1:
        return "a single device (not DDP)"
    if trainer.precision != "32-true":
        return "full precision (trainer.precision 32-true)"
    if compiled:
        return "an uncompiled network (model.compile false)"
    if trainer.accumulate_grad_batches > 1:
        return "trainer.accumulate_grad_batches 1"
    return None


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool | None:
    """Whether the CPU has bf16 instructions (AVX-512 BF16 or AMX on x86, BF16 on Arm) by Linux's CPU flags; None
    where they cannot be read. Without them bf16 autocast is emulated, and many times slower than fp32 instead
    of faster (BENCHMARKS.md)."""
    try:
        words = set(cpuinfo.read_text().split())
    except OSError:
        return None
    return bool(words & {"avx512_bf16", "amx_bf16", "bf16"})


def cuda_graph_error(blocker: str) -> CifarError:
    return CifarError(f"model.cuda_graph needs {blocker}: set model.cuda_graph to null (automatic) or false")


class CIFARClassifier(L.LightningModule):
    """Logs ``train/loss`` and ``train/acc`` (of the batch, every ``trainer.log_every_n_steps``),
    ``train/loss_epoch``, ``train/acc_epoch``, ``val/loss``, ``val/acc``, ``test/loss``, ``test/acc`` and
    ``test/acc_<class>``. It brings two callbacks of its own (:meth:`configure_callbacks`), so a fit from
    Python stops on a non-finite loss and resumes exactly as the command line's does.

    Nothing in a training step waits for the GPU: the epoch's loss and accuracy are summed on the device.
    With CUDA graphs, the forward, loss, sums and backward are one graph replay; Lightning still runs the
    optimizer step, schedule and gradient clipping.
    """

    def __init__(
        self,
        dropout: DropoutP = 0.0,
        optimizer: OptimizerCallable | None = None,
        lr_schedule: Literal["constant", "warmup_cosine"] = "constant",
        warmup_fraction: ClosedUnitInterval = 0.0,
        final_lr_fraction: ClosedUnitInterval = 0.0,
        label_smoothing: ClosedUnitInterval = 0.0,
        channels_last: bool | None = None,
        compile: bool = False,
        cuda_graph: bool | None = None,
        tta: bool = False,
    ) -> None:
        """
        Args:
            dropout: dropout probability after each max-pool and the first linear layer; 0 adds no layers.
            optimizer: any torch optimizer (class_path and init_args); default SGD(lr=1e-3, momentum=0.9).
            lr_schedule: ``warmup_cosine`` ramps linearly to the optimizer's lr, then follows a cosine
                down to ``final_lr_fraction`` of it, stepped every batch.
            warmup_fraction: share of all training steps spent warming up.
            final_lr_fraction: the last step's lr as a share of the peak.
            label_smoothing: cross-entropy label smoothing.
            channels_last: NHWC memory layout; default on CUDA, and on the CPU under bf16 precision.
            compile: ``torch.compile`` the network (slow to start; it rules out CUDA graphs, which are faster
                for a network this small: BENCHMARKS.md).
            tta: test-time augmentation in validate, test and predict: the mean of the softmax over each image
                and its mirror image (training is unchanged). Off in the study's configs.
            cuda_graph: replay the training step's forward and backward from a CUDA graph (one launch
                instead of ~100); default on when fitting on one CUDA device in full precision, uncompiled,
                without gradient accumulation.
        """
        super().__init__()
        # logger=False: TensorBoard's HPARAMS get the study's hyperparameters once, from TensorBoardFigures.
        # tta is how to evaluate, not part of the trained network: a checkpoint must not override the command line's.
        self.save_hyperparameters(ignore=["optimizer", "tta"], logger=False)
        self.net = ConvNet(dropout, NUM_CLASSES)
        self.optimizer = optimizer
        self.lr_schedule, self.warmup_fraction, self.final_lr_fraction = lr_schedule, warmup_fraction, final_lr_fraction
        self.label_smoothing = label_smoothing
        self.channels_last, self.compile_net, self.cuda_graph = channels_last, compile, cuda_graph
        self.tta = tta
        self._graphed: GraphedStep | None = None
        # The epoch so far: summed loss, correct predictions, images. Saved in checkpoints, so a mid-epoch
        # resume logs the same epoch means; fed to the metrics (which reduce across DDP ranks) at epoch end.
        self.register_buffer("train_sums", torch.zeros(3))
        self.train_loss, self.train_acc = MeanMetric(nan_strategy="disable"), MeanMetric(nan_strategy="disable")
        self.val_loss, self.val_acc = MeanMetric(), MulticlassAccuracy(NUM_CLASSES, average="micro")
        self.test_loss, self.test_acc = MeanMetric(), MulticlassAccuracy(NUM_CLASSES, average="micro")
        self.test_confusion = MulticlassConfusionMatrix(NUM_CLASSES)
        self._has_weights = False  # trained or loaded in this process: never evaluate fresh initial weights
        self._epoch_finished = False

    def configure_callbacks(self) -> list[L.Callback]:
        return [FiniteGuard(), RandomState()]

    def configure_model(self) -> None:
        try:
            trainer = self.trainer
        except RuntimeError:  # ``load_from_checkpoint`` calls this hook with no Trainer (Lightning 2.6): a Trainer
            return  # that later runs the module calls it again
        device = trainer.strategy.root_device.type  # the module is still on the CPU here: ask where it will run
        bf16 = str(trainer.precision).startswith("bf16")
        if device == "cpu" and bf16 and cpu_has_bf16() is False:
            rank_zero_warn(
                f"trainer.precision {trainer.precision} on a CPU without bf16 instructions (no avx512_bf16 or "
                "amx_bf16 in /proc/cpuinfo) is emulated, many times slower than 32-true: use 32-true on this CPU"
            )
        if self.channels_last is None:
            # cuDNN's native layout; on the CPU it adds to bf16's gain and costs time in fp32 (BENCHMARKS.md)
            self.channels_last = device == "cuda" or bf16
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        if self.compile_net:
            self.net.compile()
        if trainer.state.fn == TrainerFn.FITTING:
            blocker = cuda_graph_blocker(trainer, self.compile_net)
            if self.cuda_graph and blocker:
                raise cuda_graph_error(blocker)
            use = self.cuda_graph is not False and blocker is None
            self._graphed = GraphedStep(self._graphed_step, self) if use else None

    def forward(self, x: Tensor) -> Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        """Smoothed cross-entropy in training; plain in evaluation, so val and test losses compare with the study."""
        return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing if self.training else 0.0)

    def _sum_epoch(self, loss: Tensor, logits: Tensor, y: Tensor) -> None:
        loss = loss.detach()
        correct = (logits.argmax(1) == y).sum().to(loss.dtype)
        self.train_sums.add_(torch.stack([loss * len(y), correct, torch.full_like(loss, len(y))]))

    def _forward_loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The training forward and loss, added to the epoch's sums."""
        logits = self(x)
        loss = self.loss(logits, y)
        self._sum_epoch(loss, logits, y)
        return loss, logits

    def _graphed_step(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Everything a training step does on the device, the part one CUDA graph replays."""
        loss, logits = self._forward_loss(x, y)
        loss.backward()
        return loss.detach(), logits.detach()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss, logits = (self._graphed or self._forward_loss)(x, y)
        if logs_this_step(self.trainer):  # self.log is too slow for every step
            self.log("train/loss", loss.detach().clone())  # the next replay overwrites the graph's output
            self.log("train/acc", multiclass_accuracy(logits, y, NUM_CLASSES, average="micro"))
        return loss

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: torch.optim.Optimizer) -> None:
        """A graph replay zeroes the gradients itself, in the tensors it writes: they must not be set to None."""
        if not self._graphed:
            optimizer.zero_grad()

    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        """A graph replay has run the backward already."""
        if not self._graphed:
            super().backward(loss, *args, **kwargs)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._epoch_finished = batch_idx + 1 >= self.trainer.num_training_batches

    def on_train_epoch_end(self) -> None:
        """The epoch's means. An epoch that ``trainer.max_steps`` cut short keeps its sums for a resume."""
        if not self._epoch_finished:
            return
        loss_sum, correct, count = self.train_sums
        self.train_loss.update(loss_sum / count, weight=count)
        self.train_acc.update(correct / count, weight=count)
        self.log("train/loss_epoch", self.train_loss.compute())
        self.log("train/acc_epoch", self.train_acc.compute())
        self.train_loss.reset()
        self.train_acc.reset()
        self.train_sums.zero_()

    def probabilities(self, x: Tensor) -> Tensor:
        """Class probabilities for evaluation: of the image, or with ``tta`` the mean over it and its mirror."""
        probs = self(x).softmax(dim=1)
        return (probs + self(x.flip(-1)).softmax(dim=1)) / 2 if self.tta else probs

    def eval_logits(self, x: Tensor) -> Tensor:
        """With tta, log-probabilities: the loss and the argmax are those of the averaged softmax."""
        return self.probabilities(x).clamp_min(1e-12).log() if self.tta else self(x)

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, y = batch
        logits = self.eval_logits(x)
        loss_metric, acc_metric = getattr(self, f"{stage}_loss"), getattr(self, f"{stage}_acc")
        loss_metric.update(self.loss(logits, y), weight=len(y))
        acc_metric.update(logits, y)
        self.log(f"{stage}/loss", loss_metric, prog_bar=stage == "val")
        self.log(f"{stage}/acc", acc_metric, prog_bar=True)
        return logits

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """The logits, for callbacks that look at every prediction (the test record's calibration)."""
        logits = self._evaluate(batch, "test")
        self.test_confusion.update(logits, batch[1])
        return logits

    def on_test_epoch_end(self) -> None:
        for name, acc in zip(CLASSES, per_class_accuracy(self.test_confusion.compute()), strict=True):
            self.log(f"test/acc_{name}", acc)

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self.probabilities(batch[0])

    def configure_optimizers(self) -> Any:
        params = self.parameters()
        optimizer = self.optimizer(params) if self.optimizer else torch.optim.SGD(params, lr=1e-3, momentum=0.9)
        if self.lr_schedule == "constant":
            return optimizer
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = int(self.warmup_fraction * total)
        floor = self.final_lr_fraction

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min((step - warmup) / max(total - warmup - 1, 1), 1.0)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        # The closed form in LambdaLR rather than SequentialLR(LinearLR, CosineAnnealingLR): those compute the
        # cosine step from step, so their rates differ from it in the last bits (BENCHMARKS.md) and would change
        # every run made with this schedule, and their state would not load from this one's checkpoints.
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        ours = {k: v.shape for k, v in self.state_dict().items()}
        theirs = {k: v.shape for k, v in checkpoint["state_dict"].items() if isinstance(v, Tensor)}
        if ours != theirs:
            differing = sorted(set(ours.items()) ^ set(theirs.items()))[:3]
            raise CifarError(
                f"the checkpoint does not fit this ConvNet (differs in {', '.join(k for k, _ in differing)}): "
                "pass a checkpoint written by this package's fit"
            )
        self._has_weights = True

    def on_fit_start(self) -> None:
        self._has_weights = True

    def _refuse_fresh_weights(self) -> None:
        if not self._has_weights:
            raise CifarError(
                f"{self.trainer.state.fn.value} needs trained weights: pass ckpt_path (a checkpoint file, best or "
                "last), load the module with CIFARClassifier.load_from_checkpoint, or fit it first"
            )

    def on_validation_start(self) -> None:
        self._refuse_fresh_weights()

    def on_test_start(self) -> None:
        self._refuse_fresh_weights()

    def on_predict_start(self) -> None:
        self._refuse_fresh_weights()
