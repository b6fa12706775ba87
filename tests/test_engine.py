"""The engine's parts on their own: schedule, optimizer groups, seeding, sharding, the multi-view
aggregation and checkpoint discovery."""

import math
import random

import numpy as np
import pytest
import torch

import ats_video  # noqa: F401  (before timm)
from ats_video.build import build_lr_schedule, build_model, build_optimizer
from ats_video.config import load_config
from ats_video.data.lists import VideoRecord
from ats_video.engine.checkpoints import checkpoint_path, last_checkpoint
from ats_video.engine.data import EngineDataset, ShardSampler, eval_loader, seeded
from ats_video.engine.distributed import init_process, shutdown
from ats_video.engine.evaluate import evaluate
from ats_video.engine.schedule import lr_at
from ats_video.models.timesformer import TimeSformer

TINY = [
    "MODEL.ARCH", "timesformer", "MODEL.PATCH_SIZE", "8", "MODEL.EMBED_DIM", "48",
    "MODEL.DEPTH", "4", "MODEL.NUM_HEADS", "3",
    "DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "32",
]  # fmt: skip


# ---------------------------------------------------------------- schedule and optimizer


def test_cosine_with_warmup():
    lr = build_lr_schedule(
        load_config(
            "",
            ["SOLVER.BASE_LR", "0.1", "SOLVER.MAX_EPOCH", "10", "SOLVER.WARMUP_EPOCHS", "2.0",
             "SOLVER.WARMUP_START_LR", "0.01", "SOLVER.COSINE_END_LR", "0.001"],
        )
    )  # fmt: skip
    at_two = 0.001 + 0.099 * 0.5 * (1 + math.cos(math.pi * 0.2))
    assert lr(0) == pytest.approx(0.01)
    assert lr(1) == pytest.approx((0.01 + at_two) / 2)  # linear ramp to the cosine's value
    assert lr(2) == pytest.approx(at_two)
    assert lr(5) == pytest.approx(0.001 + 0.099 * 0.5)
    assert lr(10) == pytest.approx(0.001)
    values = [lr(e / 10) for e in range(20, 100)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_steps_with_relative_lrs():
    kwargs = dict(policy="steps_with_relative_lrs", base_lr=0.5, max_epoch=30)
    steps = dict(steps=[0, 10, 20], lrs=[1, 0.1, 0.01])
    assert [lr_at(e, **kwargs, **steps) for e in (0, 9.99, 10, 25)] == pytest.approx(
        [0.5, 0.5, 0.05, 0.005]
    )


@pytest.mark.parametrize("method, nesterov", [("sgd", True), ("sgd", False), ("adamw", None)])
def test_optimizer_skips_decay_on_norms_biases_and_embeddings(method, nesterov):
    overrides = ["SOLVER.OPTIMIZING_METHOD", method, "SOLVER.WEIGHT_DECAY", "0.05"]
    if nesterov is not None:
        overrides += ["SOLVER.NESTEROV", str(nesterov)]
    cfg = load_config("", TINY + overrides)
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {g["weight_decay"]: {names[id(p)] for p in g["params"]} for g in optimizer.param_groups}
    assert set(decay) == {0.0, 0.05}
    assert {"pos_embed", "cls_token", "time_embed", "norm.weight", "head.bias"} <= decay[0.0]
    assert all(
        n.endswith("bias") or "norm" in n or "embed" in n or "token" in n for n in decay[0.0]
    )
    assert {"head.weight", "blocks.0.attn.qkv.weight", "patch_embed.proj.weight"} <= decay[0.05]
    assert len(decay[0.0]) + len(decay[0.05]) == len(names)
    expected = torch.optim.AdamW if method == "adamw" else torch.optim.SGD
    assert type(optimizer) is expected
    if method == "sgd":
        assert optimizer.defaults["nesterov"] is nesterov


# ---------------------------------------------------------------- seeding and sharding


class RandomSamples(torch.utils.data.Dataset):
    """Images (ImageFolder-like) that are nothing but random draws from torch, numpy and Python."""

    samples = [(f"{i}.JPEG", 0) for i in range(6)]

    def __len__(self):
        return 6

    def __getitem__(self, index):
        draws = [torch.rand(()).item(), float(np.random.rand()), random.random()]
        return {"video": torch.tensor(draws), "label": index}


def test_samples_follow_seed_epoch_and_index_only():
    dataset = EngineDataset(RandomSamples(), seed=3)
    torch.manual_seed(0)
    before = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    first = dataset[2]["inputs"]
    torch.rand(5), np.random.rand(5), random.random()  # other use of the global states
    assert torch.equal(dataset[2]["inputs"], first)
    assert not torch.equal(dataset[3]["inputs"], first)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[2]["inputs"], first)
    dataset.set_epoch(0)
    assert torch.equal(EngineDataset(RandomSamples(), seed=3)[2]["inputs"], first)
    assert not torch.equal(EngineDataset(RandomSamples(), seed=4)[2]["inputs"], first)
    torch.manual_seed(0)
    np.random.set_state(("MT19937", before[1], 624, 0, 0.0))
    with seeded(7):
        pass
    assert torch.equal(torch.get_rng_state(), before[0])  # the caller's state is put back


@pytest.mark.parametrize("length", [1, 7, 21, 22, 100])
@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_shards_cover_every_sample_exactly_once(length, world_size):
    shards = [list(ShardSampler(length, rank, world_size)) for rank in range(world_size)]
    assert sorted(i for shard in shards for i in shard) == list(range(length))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert all(shard == list(range(shard[0], shard[-1] + 1)) for shard in shards if shard)


@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_shards_and_batches_keep_a_clips_crops_together(world_size):
    """3 crops per clip: no process and no batch holds part of a clip's crops, whatever the
    test batch, so every clip is decoded by one worker once."""
    videos, crops = 7, 3
    data = EngineDataset(ViewSamples(torch.zeros(videos * crops, 4), num_views=crops))
    shards = [list(ShardSampler(len(data), r, world_size, crops)) for r in range(world_size)]
    assert sorted(i for shard in shards for i in shard) == list(range(videos * crops))
    assert all(shard[0] % crops == 0 and len(shard) % crops == 0 for shard in shards if shard)
    for batch_size in (1, 2, 4):
        loader = eval_loader(data, batch_size=batch_size, rank=0, world_size=world_size, num_workers=0,
                             pin_memory=False, group=crops)
        assert loader.batch_size % crops == 0 and loader.batch_size >= batch_size


# ---------------------------------------------------------------- multi-view aggregation


class ViewSamples(torch.utils.data.Dataset):
    """Videos x ``num_views`` views, video ``unusable`` unusable; a view's "video" is
    ``inputs[index]``: by default 5 x 3 views of the logits [4] the model should return. A
    stand-in for KineticsDataset's test samples."""

    def __init__(self, inputs=None, num_views=3, unusable=3, num_classes=4):
        if inputs is None:
            inputs = torch.randn(15, 4, generator=torch.Generator().manual_seed(0))
        self.inputs = inputs
        self.num_views, self.unusable = num_views, unusable
        count = len(inputs) // num_views
        self.videos = [VideoRecord(f"v{i}.mp4", i % num_classes) for i in range(count)]

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, index):
        video, view = divmod(index, self.num_views)
        usable = video != self.unusable
        return {
            "video": self.inputs[index] if usable else torch.zeros_like(self.inputs[index]),
            "label": self.videos[video].label,
            "video_index": video,
            "view_index": view,
            "usable": usable,
            "error": "" if usable else "decord: cannot open",
        }


class Recording(TimeSformer):
    """A (tiny) TimeSformer, so that the engine can count its GFLOPs, that returns its inputs
    as logits and remembers every batch size it was given."""

    def __init__(self):
        super().__init__(num_frames=1, img_size=8, patch_size=8, embed_dim=12, depth=1, num_heads=1)
        self.sizes = []

    def forward(self, x):
        self.sizes.append(len(x))
        return x


@pytest.fixture
def one_process():
    process = init_process()
    yield process
    shutdown()


def evaluate_views(model, data, *, batch_size, num_classes=4, ensemble="sum"):
    """:func:`evaluate` of ``model`` over the views of ``data`` on one CPU process."""
    loader = eval_loader(
        EngineDataset(data), batch_size=batch_size, rank=0, world_size=1, num_workers=0,
        pin_memory=False,
    )  # fmt: skip
    return evaluate(
        model,
        loader,
        num_classes=num_classes,
        ensemble=ensemble,
        device=torch.device("cpu"),
        autocast_dtype=None,
        desc="test",
        show_progress=False,
    )


@pytest.mark.parametrize("ensemble", ["sum", "max"])
def test_views_are_combined_per_video(one_process, ensemble):
    data = ViewSamples()
    model = Recording()
    result = evaluate_views(model, data, batch_size=3, ensemble=ensemble)
    probs = data.inputs.softmax(-1).view(5, 3, 4)
    expected = probs.sum(1) if ensemble == "sum" else probs.amax(1)
    usable = torch.tensor([True, True, True, False, True])
    torch.testing.assert_close(result.scores[usable], expected[usable])
    assert result.scores[3].abs().sum() == 0
    assert result.usable.tolist() == usable.tolist()
    assert result.unusable.failures == {3: "decord: cannot open"}
    assert model.sizes == [3, 3, 3, 3]  # video 3's batch held no usable view: not forwarded
    assert result.views_run == 12
    hits = (expected[usable].argmax(-1) == torch.tensor([0, 1, 2, 0])).double().mean().item()
    assert result.accuracy(1) == pytest.approx(100 * hits)
    assert result.accuracy(5) == 100.0  # 4 classes: top-5 holds them all


def test_views_split_across_batches_still_combine(one_process):
    data = ViewSamples()
    result = evaluate_views(Recording(), data, batch_size=4)
    torch.testing.assert_close(result.scores[0], data.inputs[:3].softmax(-1).sum(0))


# ---------------------------------------------------------------- checkpoints


def test_last_checkpoint_ignores_partial_files(tmp_path):
    assert last_checkpoint(str(tmp_path)) is None
    for epoch in (1, 2, 10):
        path = checkpoint_path(str(tmp_path), epoch)
        (tmp_path / "checkpoints").mkdir(exist_ok=True)
        open(path, "wb").close()
    (tmp_path / "checkpoints" / ".checkpoint_epoch_00011.pyth.partial").write_bytes(b"half")
    (tmp_path / "checkpoints" / "checkpoint_epoch_00012.pyth.bak").write_bytes(b"")
    assert last_checkpoint(str(tmp_path)) == str(
        tmp_path / "checkpoints" / "checkpoint_epoch_00010.pyth"
    )


def test_kept_tokens_of_every_view_are_collected_in_view_order(one_process):
    torch.manual_seed(0)
    model = TimeSformer(num_frames=2, img_size=16, patch_size=4, embed_dim=12, depth=3,
                        num_heads=2, num_classes=3)  # fmt: skip
    ats_video.apply_ats(model.eval(), blocks=[1, 2], k=5)  # of 16 tokens per frame
    # 4 videos x 2 views of random 2-frame clips of 16 px; video 2 is unusable
    clips = torch.randn(8, 3, 2, 16, 16, generator=torch.Generator().manual_seed(1))
    data = ViewSamples(clips, num_views=2, unusable=2, num_classes=3)
    result = evaluate_views(model, data, batch_size=3, num_classes=3)
    usable = [i for i in range(8) if i // 2 != 2]
    want = {1: [], 2: []}
    for i in usable:  # each view alone
        with torch.no_grad():
            model(clips[i : i + 1])
        for record in ats_video.kept_tokens(model):
            want[record.block].append(int(record.count.sum()))
    assert sorted(result.kept_per_view) == [1, 2]
    for block in (1, 2):
        assert result.kept_per_view[block].tolist() == want[block]
        assert result.kept_tokens[block] == pytest.approx(np.mean(want[block]))
    assert len(set(want[2])) > 1  # the views kept different numbers: the order is checked


def test_a_run_keeps_the_earlier_config_when_it_differs(tmp_path):
    from ats_video.engine.logs import duration, write_run_config

    assert write_run_config(str(tmp_path), "A: 1\n") == f"wrote {tmp_path}/config.yaml"
    write_run_config(str(tmp_path), "A: 1\n")  # the same again: nothing to keep
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]
    said = write_run_config(str(tmp_path), "A: 2\n")
    assert said.endswith(f"kept as {tmp_path}/config.1.yaml")
    write_run_config(str(tmp_path), "A: 3\n")
    texts = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert texts == {"config.1.yaml": "A: 1\n", "config.2.yaml": "A: 2\n", "config.yaml": "A: 3\n"}
    assert (duration(3725.4), duration(59.6)) == ("1:02:05", "0:01:00")
