import torch

from cifar_lightning import augment
from cifar_lightning.data import EpochSampler, TensorLoader


def test_flip_mirrors_exactly_the_masked_images():
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    mask = torch.tensor([True, False, True, False, False, True])
    out = augment.flip(images, mask)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert torch.equal(out[mask], images[mask].flip(-1))
    assert torch.equal(out[~mask], images[~mask])


def test_translate_moves_each_image_by_its_shift_and_pads_with_zeros():
    images = torch.randint(1, 256, (2, 3, 32, 32), dtype=torch.uint8)
    out = augment.translate(images, torch.tensor([[0, 0], [2, -3]]), pad=4)
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert torch.equal(out[0], images[0])
    assert torch.equal(out[1, :, :30, 3:], images[1, :, 2:, :29])  # content shifted up 2, right 3
    assert (out[1, :, 30:, :] == 0).all() and (out[1, :, :, :3] == 0).all()


def test_augmentation_is_on_for_training_batches_only_and_repeatable():
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(16)

    def batches(flip_p: float, translate: int) -> list[torch.Tensor]:
        loader = TensorLoader(images, labels, 16, EpochSampler(16, shuffle=False), flip_p=flip_p, translate=translate)
        return [x for x, _ in loader]

    plain = batches(0.0, 0)
    augmented = batches(0.5, 4)
    assert augmented[0].shape == plain[0].shape and augmented[0].dtype == torch.float32
    assert not torch.equal(augmented[0], plain[0])
    assert torch.equal(augmented[0], batches(0.5, 4)[0])  # same seed and epoch, same augmentation
