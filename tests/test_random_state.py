"""The global generators travel in the checkpoint, so a resumed fit draws what an uninterrupted one draws
(the end-to-end proof, a killed fit resumed, is in test_resume.py)."""

import random

import numpy as np
import torch

from cifar_lightning.training.random_state import KEY, RandomState


def _draws() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_the_generators_are_put_back_when_training_starts_not_when_the_checkpoint_loads():
    saver, loader = RandomState(), RandomState()
    checkpoint = {}
    saver.on_save_checkpoint(None, None, checkpoint)
    expected = _draws()
    loader.on_load_checkpoint(None, None, checkpoint)
    _draws()  # what runs between loading and the first step (model set-up, data loaders) may draw
    loader.on_train_start(None, None)
    assert _draws() == expected
    _draws()
    loader.on_train_start(None, None)  # once only: a second fit in this process is not rewound
    assert _draws() != expected


def test_a_checkpoint_without_generators_leaves_them_alone():
    guard = RandomState()
    guard.on_load_checkpoint(None, None, {"state_dict": {}})
    torch.manual_seed(1)
    expected = torch.rand(1)
    torch.manual_seed(1)
    guard.on_train_start(None, None)
    assert torch.equal(torch.rand(1), expected)
    assert KEY == "rng_states"  # where checkpoints of every version so far keep them: old runs still resume
