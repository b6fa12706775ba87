"""The ATS step never waits on the device beyond one read per ATS block.

On a GPU, every read of a device value (``.item()``, ``bool()``, ``.tolist()``, a boolean mask,
``nonzero``, ``torch.equal``, ``bincount``...) makes the host wait until the GPU has done all the
work queued before it. The same calls are made on a CPU, so they are counted here: the forward of
every family with ATS, in each mode and with each kind of budget, makes at most one per ATS block
(the kept lengths that packing needs, read together with the check that the scores were finite).
"""

import ats_video  # noqa: F401  (before timm)
import pytest
import torch
from timm.models.vision_transformer import VisionTransformer
from torch.utils._python_dispatch import TorchDispatchMode

from ats_video import apply_ats, kept_tokens
from ats_video.models import timesformer, xvit
from ats_video.tokens import kept_counts

aten = torch.ops.aten
# ops whose result depends on device values in its shape or is a host value: each is a sync on CUDA
READS = {aten._local_scalar_dense, aten.nonzero, aten.equal, aten.masked_select, aten.bincount,
         aten._unique2, aten.unique_consecutive, aten.unique_dim}


class DeviceReads(TorchDispatchMode):
    """Records every operation that reads a device value on the host, by name."""

    def __init__(self):
        super().__init__()
        self.reads, self.active = [], False

    def __enter__(self):
        self.active = True
        return super().__enter__()

    def __exit__(self, *exc):
        self.active = False
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        bool_index = packet in (aten.index, aten.index_put, aten.index_put_) and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1]
        )
        unsized_repeat = (packet is aten.repeat_interleave and isinstance(args[0] if len(args) == 1 else args[1], torch.Tensor)
                          and kwargs.get("output_size", args[3] if len(args) > 3 else None) is None)
        if packet in READS or bool_index or unsized_repeat:
            self.reads.append(str(func))
        return func(*args, **kwargs)


@pytest.fixture
def device_reads(monkeypatch):
    """A :class:`DeviceReads` that also counts ``tolist``, ``cpu`` and ``numpy`` (which reach no
    operator on a CPU tensor) while it is entered."""
    mode = DeviceReads()
    for name in ("tolist", "cpu", "numpy"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            if mode.active:
                mode.reads.append(f"Tensor.{_name}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return mode


VIDEO = dict(num_frames=4, img_size=32, patch_size=8, embed_dim=48, depth=5, num_heads=3, num_classes=7)
FAMILIES = {  # name: (builder, input shape without the batch, modes)
    "deit": (lambda: VisionTransformer(img_size=32, patch_size=8, embed_dim=48, depth=5, num_heads=3, num_classes=7),
             (3, 32, 32), ["frame"]),
    "timesformer": (lambda: timesformer(**VIDEO), (3, 4, 32, 32), ["frame", "shared"]),
    "xvit": (lambda: xvit(**VIDEO), (3, 4, 32, 32), ["frame", "shared"]),
}
CASES = [(name, mode, k) for name, (_, _, modes) in FAMILIES.items() for mode in modes for k in (None, 6, 0.5)]
ATS_BLOCKS = [1, 3]  # a plain block between and after them: those read nothing


def model_and_clips(name, mode, k):
    torch.manual_seed(0)
    build, shape, _ = FAMILIES[name]
    model = build().eval()
    with torch.no_grad():  # far from the init: peaked attention, so samples keep different counts
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return apply_ats(model, ATS_BLOCKS, k, mode=mode), torch.randn(3, *shape)


@pytest.mark.parametrize("name, mode, k", CASES)
def test_one_device_read_per_ats_block(device_reads, name, mode, k):
    model, clips = model_and_clips(name, mode, k)
    with torch.no_grad(), device_reads:
        model(clips)
    assert len(device_reads.reads) <= len(ATS_BLOCKS), device_reads.reads
    counts = [record.count.sum(1) for record in kept_tokens(model)]
    assert any(len(c.unique()) > 1 for c in counts), "the case needs samples that keep different counts"


@pytest.mark.parametrize("name, mode", [(name, modes[-1]) for name, (_, _, modes) in FAMILIES.items()])
def test_training_step_reads_once_per_ats_block(device_reads, name, mode):
    """Forward and backward of a training step, and the kept counts a training log reads."""
    model, clips = model_and_clips(name, mode, 0.5)
    model.train()
    with device_reads:
        model(clips).logsumexp(-1).sum().backward()
        totals = kept_counts(model)
    assert len(device_reads.reads) <= len(ATS_BLOCKS), device_reads.reads
    assert {b: int(t) for b, t in totals.items()} == {r.block: int(r.count.sum()) for r in kept_tokens(model)}


@pytest.mark.parametrize("name", ["deit", "timesformer"])
def test_compiles_with_graph_breaks_at_the_reads_only(name):
    """torch.compile(dynamic=True) traces the whole forward but the one read per ATS block
    (``read_lengths``, kept out of the graph), and the compiled model gives the eager logits."""
    model, clips = model_and_clips(name, "frame", 0.5)
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    with torch.no_grad():
        compiled = torch.compile(model, dynamic=True, backend="eager")
        logits, kept = compiled(clips), [r.count for r in kept_tokens(compiled)]
        breaks = dict(counters["graph_break"])
        assert breaks and all("read_lengths" in reason for reason in breaks), breaks
        torch.testing.assert_close(logits, model(clips))
        assert all(torch.equal(a, r.count) for a, r in zip(kept, kept_tokens(model)))
