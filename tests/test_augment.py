import torch

from cifar_lightning.training import augment
from cifar_lightning.training.data import EpochSampler, TensorLoader


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


def test_cutout_covers_squares_of_the_configured_size_inside_the_image_repeatably():
    images = torch.full((64, 3, 32, 32), 7, dtype=torch.uint8)
    labels = torch.arange(64)

    def first_batch(seed: int, epoch: int) -> torch.Tensor:
        sampler = EpochSampler(64, shuffle=False, seed=seed)
        sampler.set_epoch(epoch)
        loader = TensorLoader(images, labels, 64, sampler, mean=(0.5, 0.5, 0.5), std=(1.0, 1.0, 1.0), cutout=8)
        return next(iter(loader))[0]

    x = first_batch(0, 0)
    fill = (128 / 255 - 0.5) / 1.0  # the mean colour, normalized
    covered = (x - fill).abs() < 1e-6
    for image in covered.all(1):  # every channel covered at the same pixels
        rows, cols = image.nonzero(as_tuple=True)
        assert len(rows) == 64 and rows.max() - rows.min() == 7 and cols.max() - cols.min() == 7
    assert covered.all(1).sum(0).bool().any()
    assert torch.equal(x, first_batch(0, 0))
    assert not torch.equal(x, first_batch(0, 1)) and not torch.equal(x, first_batch(1, 0))


def test_cutout_leaves_the_flips_and_shifts_of_an_epoch_unchanged():
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)

    def batch(cutout: int) -> torch.Tensor:
        loader = TensorLoader(
            images, torch.arange(16), 16, EpochSampler(16, shuffle=False), flip_p=0.5, translate=4, cutout=cutout
        )
        return next(iter(loader))[0]

    with_cutout, without = batch(8), batch(0)
    differs = (with_cutout != without).any(1)
    assert differs.flatten(1).sum(1).max() <= 64  # only the covered squares differ
