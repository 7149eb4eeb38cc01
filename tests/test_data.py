import hashlib
import http.server
import io
import pickle
import tarfile
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_arrays
from torchvision.datasets import CIFAR10

from cifar_lightning.errors import CifarError
from cifar_lightning.training.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR10DataModule,
    EpochSampler,
    TensorLoader,
    channel_stats,
    download_cifar10,
    load_npz,
)


def test_split_takes_first_for_training_and_last_for_validation(data_dir):
    dm = CIFAR10DataModule(data_dir=str(data_dir), download=False, val_size=100)
    dm.setup("fit")
    arrays = load_npz(data_dir / "cifar10.npz")
    train_x, train_y = dm.splits["train"]
    val_x, val_y = dm.splits["val"]
    assert len(train_x) == 540 and len(val_x) == 100
    assert torch.equal(train_x, torch.from_numpy(arrays["x_train"][:540]).permute(0, 3, 1, 2))
    assert torch.equal(val_y, torch.from_numpy(arrays["y_train"][540:]))
    assert dm.splits["test"][0].shape == (200, 3, 32, 32)


@pytest.mark.parametrize("augmentation", [{"flip_p": 1.0}, {"translate": 4}, {"cutout": 8}])
def test_the_datamodule_augments_training_batches_only(data_dir, tmp_path, augmentation):
    """Through the DataModule's own loaders: each augmentation changes every training epoch's batches, and never
    a validation, test or predict batch."""
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, image in enumerate(make_arrays(n_train=0, n_test=5)["x_test"]):
        Image.fromarray(image).save(photos / f"{i}.png")
    batches = {}
    for name, options in (("plain", {}), ("augmented", augmentation)):
        dm = CIFAR10DataModule(
            data_dir=str(data_dir), download=False, val_size=100, predict_path=str(photos), **options
        )
        dm.setup("fit")
        dm.setup("predict")
        loaders = {"train": dm.train_dataloader(), "val": dm.val_dataloader(), "test": dm.test_dataloader()}
        loaders["predict"] = dm.predict_dataloader()
        batches[name] = {split: torch.cat([x for x, _ in loader]) for split, loader in loaders.items()}
    assert not torch.equal(batches["plain"]["train"], batches["augmented"]["train"])
    for split in ("val", "test", "predict"):
        assert torch.equal(batches["plain"][split], batches["augmented"][split]), split


def test_training_order_covers_every_training_image_once_and_never_validation(data_dir):
    dm = CIFAR10DataModule(data_dir=str(data_dir), download=False, val_size=100, batch_size=32)
    dm.setup("fit")
    seen = torch.cat([y for _, y in dm.train_dataloader()])
    assert len(seen) == 540
    # labels alone cannot prove identity: check the drawn indices instead
    idx = dm.train_dataloader().sampler.indices()
    assert sorted(idx.tolist()) == list(range(540))


def test_batches_are_normalized_with_the_configured_mean_and_std():
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    loader = TensorLoader(images, torch.zeros(8, dtype=torch.long), 8, EpochSampler(8, shuffle=False))
    x, _ = next(iter(loader))
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(x, (images.float() / 255 - mean) / std)


def test_order_depends_on_seed_and_epoch_only():
    a, b = EpochSampler(100, shuffle=True, seed=0), EpochSampler(100, shuffle=True, seed=0)
    assert torch.equal(a.indices(), b.indices())
    b.set_epoch(1)
    assert not torch.equal(a.indices(), b.indices())
    assert not torch.equal(a.indices(), EpochSampler(100, shuffle=True, seed=1).indices())


def test_seeds_never_replay_each_others_epochs():
    """With ``seed + epoch``, seed 1's epoch 1 was seed 2's epoch 0: a seed study would be correlated."""
    orders = {}
    for seed in range(4):
        sampler = EpochSampler(1000, shuffle=True, seed=seed)
        for epoch in range(4):
            sampler.set_epoch(epoch)
            orders[seed, epoch] = tuple(sampler.indices().tolist())
            augment_draw = tuple(torch.rand(8, generator=sampler.generator("augment")).tolist())
            orders[seed, epoch, "augment"] = augment_draw
    assert len(set(orders.values())) == len(orders)


def test_ranks_draw_disjoint_equal_shares():
    shares = [EpochSampler(101, shuffle=True, seed=3, rank=r, world_size=2).indices() for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == 50
    assert not set(shares[0].tolist()) & set(shares[1].tolist())
    evals = [EpochSampler(101, shuffle=False, rank=r, world_size=2).indices() for r in range(2)]
    assert sorted(torch.cat(evals).tolist()) == list(range(101))


def test_loader_resumes_from_its_saved_position():
    images = torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1).expand(20, 3, 32, 32).contiguous()
    labels = torch.arange(20)

    def loader():
        return TensorLoader(images, labels, 4, EpochSampler(20, shuffle=True, seed=5))

    full = [y for _, y in loader()]
    first = loader()
    it = iter(first)
    next(it), next(it), next(it)  # three batches handed out, and trained on
    state = first.state_dict()
    assert state == {"epoch": 0, "batch": 3}
    resumed = loader()
    resumed.load_state_dict(state)
    assert [y.tolist() for _, y in resumed] == [y.tolist() for y in full[3:]]
    list(it)
    assert first.state_dict() == {"epoch": 1, "batch": 0}


def test_channel_stats_match_numpy():
    images = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8)
    mean, std = channel_stats(images)
    ref = images.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 2, 3)), rtol=1e-9)
    np.testing.assert_allclose(std, ref.std(axis=(0, 2, 3), ddof=1), rtol=1e-9)


def _write(path: Path, **changes):
    arrays = {**make_arrays(64, 16), **changes}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"x_train": np.zeros((64, 32, 32), np.uint8)}, "x_train must be uint8 [N,32,32,3]"),
        ({"x_test": np.zeros((16, 32, 32, 3), np.float32)}, "x_test must be uint8"),
        ({"y_train": np.zeros(63, np.int64)}, "y_train must be integers [64]"),
        ({"y_test": np.full(16, 10)}, "labels outside 0..9"),
        ({"y_train": np.full(64, -1)}, "labels outside 0..9"),
        ({"y_test": None}, "lacks the arrays ['y_test']"),
    ],
)
def test_bad_arrays_are_named(tmp_path, changes, message):
    path = _write(tmp_path / "cifar10.npz", **changes)
    with pytest.raises(CifarError, match=r"cifar10\.npz") as err:
        load_npz(path)
    assert message in str(err.value)


def test_truncated_file_is_reported(tmp_path):
    path = _write(tmp_path / "cifar10.npz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CifarError, match="truncated or not a valid .npz"):
        load_npz(path)


def test_pickled_arrays_are_refused(tmp_path):
    path = tmp_path / "cifar10.npz"
    np.savez(path, **{**make_arrays(64, 16), "x_train": np.array([{"evil": 1}], dtype=object)})
    with pytest.raises(CifarError, match="not a valid .npz"):
        load_npz(path)


def test_missing_data_without_download_says_what_to_do(tmp_path):
    dm = CIFAR10DataModule(data_dir=str(tmp_path / "nothing"), download=False)
    with pytest.raises(CifarError, match="data.download is false"):
        dm.prepare_data()
    assert not (tmp_path / "nothing").exists()


def test_too_few_images_for_the_validation_size(data_dir):
    with pytest.raises(CifarError, match="too few for data.val_size=1000"):
        CIFAR10DataModule(data_dir=str(data_dir), download=False, val_size=1000).prepare_data()


# --- download, against a local HTTP server standing in for the CIFAR-10 site -------------------------


def _cifar_archive(arrays: dict[str, np.ndarray]) -> tuple[bytes, dict[str, str]]:
    """A cifar-10-python.tar.gz in the official layout (pickled batches), and each member's md5."""
    members = {}
    x, y = arrays["x_train"], arrays["y_train"]
    for i, chunk in enumerate(np.array_split(np.arange(len(x)), 5), start=1):
        members[f"data_batch_{i}"] = {
            "data": x[chunk].transpose(0, 3, 1, 2).reshape(len(chunk), -1),
            "labels": y[chunk].tolist(),
        }
    members["test_batch"] = {
        "data": arrays["x_test"].transpose(0, 3, 1, 2).reshape(len(arrays["x_test"]), -1),
        "labels": arrays["y_test"].tolist(),
    }
    members["batches.meta"] = {"label_names": ["c"] * 10}
    buffer, md5s = io.BytesIO(), {}
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members.items():
            raw = pickle.dumps(content)
            md5s[name] = hashlib.md5(raw).hexdigest()
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return buffer.getvalue(), md5s


@pytest.fixture
def cifar_server(tmp_path):
    """Serves tmp_path/www on 127.0.0.1; yields (folder, base URL)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _dataset_class(url: str, archive: bytes, md5s: dict[str, str]) -> type[CIFAR10]:
    return type(
        "LocalCIFAR10",
        (CIFAR10,),
        {
            "url": url,
            "tgz_md5": hashlib.md5(archive).hexdigest(),
            "train_list": [[f"data_batch_{i}", md5s[f"data_batch_{i}"]] for i in range(1, 6)],
            "test_list": [["test_batch", md5s["test_batch"]]],
            "meta": {"filename": "batches.meta", "key": "label_names", "md5": md5s["batches.meta"]},
        },
    )


def test_download_fetches_verifies_and_keeps_an_npz(tmp_path, cifar_server):
    www, base = cifar_server
    arrays = make_arrays(50, 10)
    archive, md5s = _cifar_archive(arrays)
    (www / "cifar-10-python.tar.gz").write_bytes(archive)
    dataset = _dataset_class(f"{base}/cifar-10-python.tar.gz", archive, md5s)
    target = download_cifar10(tmp_path / "data", dataset)
    loaded = load_npz(target)
    np.testing.assert_array_equal(loaded["x_train"], arrays["x_train"])
    np.testing.assert_array_equal(loaded["y_test"], arrays["y_test"])
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["cifar10.npz"]


@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_bad_archive_is_rejected_and_leaves_nothing(tmp_path, cifar_server, damage):
    www, base = cifar_server
    archive, md5s = _cifar_archive(make_arrays(50, 10))
    served = archive[: len(archive) // 2] if damage == "truncated" else archive[:100] + b"x" + archive[101:]
    (www / "cifar-10-python.tar.gz").write_bytes(served)
    dataset = _dataset_class(f"{base}/cifar-10-python.tar.gz", archive, md5s)
    with pytest.raises(CifarError, match="failed its checksum"):
        download_cifar10(tmp_path / "data", dataset)
    assert not (tmp_path / "data").exists()  # not even an empty folder


def test_no_network_says_how_to_run_offline(tmp_path):
    dataset = type("Unreachable", (CIFAR10,), {"url": "http://127.0.0.1:9/cifar-10-python.tar.gz"})
    with pytest.raises(CifarError, match="To run offline, put a cifar10.npz"):
        download_cifar10(tmp_path / "data", dataset)
    assert not (tmp_path / "data").exists()  # not even an empty folder


def test_the_official_archive_on_disk_becomes_the_npz_offline(tmp_path, monkeypatch):
    arrays = make_arrays(50, 10)
    archive, md5s = _cifar_archive(arrays)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(archive)
    offline = type("Offline", (_dataset_class("http://127.0.0.1:9/unreachable", archive, md5s),), {})
    target = download_cifar10(tmp_path / "data", offline, archive=tmp_path / "cifar-10-python.tar.gz")
    np.testing.assert_array_equal(load_npz(target)["x_train"], arrays["x_train"])
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["cifar10.npz"]


def test_an_archive_that_is_not_the_official_one_is_refused_before_unpickling(tmp_path, monkeypatch):
    archive, md5s = _cifar_archive(make_arrays(50, 10))
    (tmp_path / "other.tar.gz").write_bytes(archive + b"tampered")
    dataset = _dataset_class("http://127.0.0.1:9/unreachable", archive, md5s)
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled an unverified archive"))
    with pytest.raises(CifarError, match="other.tar.gz is not the official archive"):
        download_cifar10(tmp_path / "data", dataset, archive=tmp_path / "other.tar.gz")
    assert not (tmp_path / "data").exists()


def test_stats_without_the_file_gives_advice_it_can_take(tmp_path, capsys, monkeypatch):
    from cifar_lightning.__main__ import main as package_main

    monkeypatch.chdir(tmp_path)
    assert package_main(["stats", "--data.data_dir=nowhere"]) == 1
    err = capsys.readouterr().err
    assert "no nowhere/cifar10.npz: pass --data.data_dir" in err and "data.download" not in err
