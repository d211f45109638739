"""The one encoding pass of frozen towers: decoding in worker processes, text beside images, crash-safe shards."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mmtune.config import load_config
from mmtune.data.post import Post
from mmtune.errors import InputError
from mmtune.models.extraction import default_workers, image_features, prepared, resolve_workers
from mmtune.models.feature_cache import ExtractionStopped, FeatureCache, extraction_budget
from mmtune.models.fusion import FusionClassifier
from mmtune.models.towers import build_image_tower
from tests.models.conftest import noise_image


@pytest.fixture(scope="module")
def tiny(tiny_encoder) -> Path:
    """The folder holding the tiny bert and convnext checkpoints."""
    tiny_encoder("bert")
    return tiny_encoder("convnext").parent


def _jpeg(path: Path, rng: np.random.Generator) -> Path:
    height, width = rng.integers(20, 90, 2)
    return noise_image(path, int(height), int(width), rng)


@pytest.fixture(scope="module")
def posts(tmp_path_factory: pytest.TempPathFactory) -> list[Post]:
    """11 posts of JPEGs of several sizes; post 3 has two images, post 5 a missing one."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = [_jpeg(root / f"img{k}.jpg", rng) for k in range(12)]
    made = [Post(str(k), (paths[k],), f"caption {k} " * (k + 1)) for k in range(11)]
    made[3] = Post("3", (paths[3], paths[11]), "two images")
    made[5] = Post("5", (root / "missing.jpg",), "no image")
    return made


def _tower(tiny: Path):
    return build_image_tower(load_config(None, ["model.freeze.preset=all"]), str(tiny / "convnext"))


def _features(tower, posts: list[Post], workers: int, root: Path | None = None, batch_size: int = 3,
              runtime: str = "torch") -> torch.Tensor:
    store = FeatureCache(root).namespace(tower.identity, tower.signature())
    return torch.stack(image_features(tower, store, posts, workers=workers, batch_size=batch_size, progress=False,
                                      runtime=runtime))


def test_features_are_bit_identical_for_every_worker_count_and_equal_the_in_process_path(tiny, posts) -> None:
    tower = _tower(tiny)
    serial = torch.cat([tower.features(posts[start:start + 3]) for start in range(0, len(posts), 3)])
    for workers in (0, 1, 2, 4):
        assert torch.equal(_features(tower, posts, workers), serial), workers
    assert torch.count_nonzero(serial[5]) == 0 and torch.count_nonzero(serial[4]) > 0  # the missing image


def test_onnx_features_are_bit_identical_for_every_worker_count_and_equal_torchs_to_1e_3(tiny, posts,
                                                                                         tmp_path) -> None:
    tower = _tower(tiny)
    torch_features = _features(tower, posts, workers=0)
    onnx_features = [_features(tower, posts, workers, root=tmp_path / f"w{workers}", runtime="onnx")
                     for workers in (0, 1, 2, 4)]
    assert all(torch.equal(features, onnx_features[0]) for features in onnx_features[1:])
    assert not torch.equal(onnx_features[0], torch_features)  # another runtime computed them
    torch.testing.assert_close(onnx_features[0], torch_features, atol=1e-3, rtol=1e-3)
    assert torch.count_nonzero(onnx_features[0][5]) == 0  # the post whose image is missing


def test_computing_features_leaves_the_global_random_state_alone(tiny, posts) -> None:
    # A run that computes features must initialise and shuffle exactly like the same run on a warm cache.
    tower = _tower(tiny)
    before = torch.get_rng_state()
    _features(tower, posts, workers=2)
    assert torch.equal(torch.get_rng_state(), before)


def test_image_inputs_survive_pickling_for_spawned_workers(tiny, posts) -> None:
    tower = _tower(tiny)
    copied = pickle.loads(pickle.dumps(tower.inputs))  # what a spawn/forkserver worker receives
    assert torch.equal(copied(posts[:4])["pixel_values"], tower.inputs(posts[:4])["pixel_values"])


def test_a_frozen_tower_runs_channels_last_with_features_equal_to_1e_3(tiny, posts) -> None:
    tower = _tower(tiny)
    inputs = tower.inputs(posts[:4])
    seen: list[bool] = []
    tower.encoder.register_forward_pre_hook(
        lambda _, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    frozen = tower.encode(inputs)
    tower.trainable = True  # a trainable tower keeps the layout it trains with
    trained_layout = tower.encode(inputs)
    assert seen == [True, False]
    torch.testing.assert_close(frozen, trained_layout, atol=1e-3, rtol=1e-3)


def test_prepared_splits_the_first_batch_over_here_and_the_workers_then_gives_each_worker_whole_batches() -> None:
    chunks = [[k] * 3 for k in range(6)] + [[6]]
    batches = list(prepared(_pid_and_items, chunks, workers=2))
    assert [batch["x"].tolist() for batch in batches] == chunks
    pids = [set(batch["pid"].tolist()) for batch in batches]
    workers = pids[0] - {os.getpid()}
    assert os.getpid() in pids[0] and len(workers) == 2  # the first batch: a piece here, one per worker
    assert all(len(later) == 1 and later <= workers for later in pids[1:])  # later: whole, from one worker
    assert set().union(*pids[1:]) == workers  # in turn
    here = list(prepared(_pid_and_items, chunks, workers=0))
    assert [batch["x"].tolist() for batch in here] == chunks
    assert {pid for batch in here for pid in batch["pid"].tolist()} == {os.getpid()}


def test_a_frozen_towers_pixels_arrive_channels_last_so_the_forward_copies_nothing(tiny, posts) -> None:
    tower = _tower(tiny)
    arrived: list[tuple[bool, int]] = []
    encoder_input: list[int] = []
    encode = tower.encode

    def recording(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        pixels = inputs["pixel_values"]
        arrived.append((pixels.is_contiguous(memory_format=torch.channels_last), pixels.data_ptr()))
        return encode(inputs)

    tower.encode = recording
    tower.encoder.register_forward_pre_hook(lambda _, args: encoder_input.append(args[0].data_ptr()))
    for workers in (0, 2):
        arrived.clear(), encoder_input.clear()
        _features(tower, posts[:9], workers=workers)
        assert [layout for layout, _ in arrived] == [True] * 3, workers
        assert [pointer for _, pointer in arrived] == encoder_input, workers  # the very tensor: no copy


def _pid_and_items(chunk: list[int]) -> dict[str, torch.Tensor]:
    return {"pid": torch.tensor([os.getpid()] * len(chunk)), "x": torch.tensor(chunk)}


def test_a_pass_stopped_by_the_budget_leaves_no_worker_running(tiny, posts, tmp_path) -> None:
    tower = _tower(tiny)

    class Spent:
        seconds = 1.0

        def elapsed(self) -> float:
            return 10.0  # over budget after the first batch

    with extraction_budget(Spent()), pytest.raises(ExtractionStopped) as stopped:
        _features(tower, posts, workers=2, root=tmp_path)
    assert stopped.value.done == 3  # the probe batch: min(batch, 4) = 3, then stopped
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not multiprocessing.active_children()
    # The probe batch's shard stays: the next run computes only the rest.
    assert len(list(tmp_path.rglob("shard-*.safetensors"))) == 1


@pytest.mark.parametrize("runtime", ["torch", "auto"])
def test_fusion_prepare_caches_both_towers_equal_to_direct_features(tiny, posts, tmp_path, runtime) -> None:
    cfg = load_config(None, [f"model.fusion.text_encoder={tiny / 'bert'}",
                             f"model.fusion.image_encoder={tiny / 'convnext'}", "model.freeze.preset=all",
                             f"train.cache_dir={tmp_path}", "train.extract_workers=2",
                             f"train.extract_runtime={runtime}"])
    torch.manual_seed(0)
    classifier = FusionClassifier(cfg, ["a", "b"], 2)
    examples = classifier.prepare(posts, train=False)
    image = torch.cat([classifier.image_tower.features(posts[start:start + 32]) for start in range(0, 11, 32)])
    cached = torch.stack([e.features["image"] for e in examples])
    if runtime == "torch":
        assert torch.equal(cached, image)
    else:  # auto: ONNX Runtime, its graph kept under the cache folder
        torch.testing.assert_close(cached, image, atol=1e-3, rtol=1e-3)
        assert len(list((tmp_path / "onnx").glob("*/encoder.onnx"))) == 1
    text = classifier.text_tower.features([e.text for e in examples])
    torch.testing.assert_close(torch.stack([e.features["text"] for e in examples]), text, atol=1e-5, rtol=1e-4)


def test_extract_workers_is_validated_and_defaults_to_min_4_cpus() -> None:
    assert load_config(None, []).train.extract_workers is None
    assert resolve_workers(None) == default_workers() == min(4, len(os.sched_getaffinity(0)))
    assert resolve_workers(0) == 0
    with pytest.raises(InputError, match="train.extract_workers"):
        load_config(None, ["train.extract_workers=-1"])


_KILLED_RUN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import torch
    from mmtune.config import load_config
    from mmtune.data.post import Post
    from mmtune.models.extraction import image_features
    from mmtune.models.feature_cache import FeatureCache
    from mmtune.models.towers import build_image_tower
    tiny, root, slow = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "slow"
    posts = [Post(str(k), (Path(p),), "") for k, p in enumerate(sys.argv[4:])]
    tower = build_image_tower(load_config(None, ["model.freeze.preset=all"]), str(tiny))
    encode = tower.encode
    def slowly(inputs):
        time.sleep(0.5 if slow else 0.0)
        return encode(inputs)
    tower.encode = slowly
    store = FeatureCache(root).namespace(tower.identity, tower.signature())
    features = image_features(tower, store, posts, workers=2, batch_size=2, progress=False)
    torch.save(torch.stack(features), root / "features.pt")
""")


@pytest.mark.slow  # three interpreters that import torch: ~15-30 s on a busy 2-core machine
def test_a_killed_extraction_resumes_to_the_features_of_an_uninterrupted_one(tiny, posts, tmp_path) -> None:
    images = [str(post.images[0]) for post in posts]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    def run(root: Path, slow: bool) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", _KILLED_RUN, str(tiny / "convnext"), str(root),
                                 "slow" if slow else "fast", *images], env=env)

    killed = tmp_path / "killed"
    process = run(killed, slow=True)
    deadline = time.monotonic() + 120
    while len(list(killed.rglob("shard-*.safetensors"))) < 2 and time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it was killed"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    shards = len(list(killed.rglob("shard-*.safetensors")))
    assert 2 <= shards < 6 and not list(killed.rglob("features.pt"))
    assert run(killed, slow=False).wait() == 0
    assert run(tmp_path / "whole", slow=False).wait() == 0
    assert torch.equal(torch.load(killed / "features.pt"), torch.load(tmp_path / "whole" / "features.pt"))
    assert len(list(killed.rglob("shard-*.safetensors"))) == 6  # 11 posts in batches of 2: none computed twice
