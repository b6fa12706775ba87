"""Benchmark: ways to run attention over packed sequences of different lengths, on this device.

    python benchmarks/attention_backends.py                 # CPU, writes attention_backends.md
    python benchmarks/attention_backends.py --device cuda --dtype bfloat16 --out benchmarks/attention_backends_gpu.md

One DeiT-S attention layer (6 heads of 64) over a batch of sequences whose lengths vary as after
a few ATS blocks (uniform in [0.5 N, N], N = 197), the queries being every row. Candidates, all
taking the packed rows [R, H, d] and giving [R, H, d]:
- padded: ``ats_video.tokens.attention``'s padded backend (SDPA over a padded view, -inf keys);
- sequential: one SDPA call per sequence;
- nested: SDPA on nested jagged tensors (``torch.nested``, layout=torch.jagged);
- flex: ``flex_attention`` with a block mask of the sequences (compiled);
- varlen: ``torch.nn.attention.varlen`` (CUDA, half precision only).
Each is timed interleaved with the others (fastest of ``--rounds`` calls).
"""

from pathlib import Path

import ats_video  # noqa: F401
import torch
import torch.nn.functional as F

from ats_video.tokens import Layout, attention, attention_backend

import common  # benchmarks/common.py, beside this script

ROOT = Path(__file__).resolve().parent


def candidates(q, k, v, layout, device):
    """name -> a call computing attention over the packed rows, or the reason it cannot run."""

    def padded():
        with attention_backend("padded"):
            return attention(q, k, v, layout, layout)

    def sequential():
        with attention_backend("sequential"):
            return attention(q, k, v, layout, layout)

    def nested():
        nt = [torch.nested.nested_tensor_from_jagged(z, offsets=layout.offsets).transpose(1, 2) for z in (q, k, v)]
        return F.scaled_dot_product_attention(*nt).transpose(1, 2).values()

    found = {"padded": padded, "sequential": sequential, "nested": nested}
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        sequence = layout.sequence_of_rows()

        def same_sequence(b, h, q_idx, kv_idx):
            return sequence[q_idx] == sequence[kv_idx]

        mask = create_block_mask(same_sequence, None, None, len(q), len(q), device=device)
        compiled = torch.compile(flex_attention)

        def flex():
            return compiled(*(z.transpose(0, 1)[None] for z in (q, k, v)), block_mask=mask)[0].transpose(0, 1)

        flex()  # compiles here, so that a compiler failure only drops this candidate
        found["flex"] = flex
    except Exception as error:  # flex attention is compiled: it needs a working toolchain
        found["flex"] = f"failed: {type(error).__name__}: {str(error).splitlines()[0]}"
    if device.startswith("cuda") and q.dtype in (torch.float16, torch.bfloat16):

        def varlen():
            with attention_backend("varlen"):
                return attention(q, k, v, layout, layout)

        found["varlen"] = varlen
    return found


def main():
    parser = common.argument_parser(__doc__)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--out", type=Path, default=ROOT / "attention_backends.md")
    args = parser.parse_args()
    dtype = torch.float32 if args.dtype == "float32" else getattr(torch, args.dtype)
    rows = []
    for batch in args.batch_sizes:
        generator = torch.Generator().manual_seed(batch)
        lengths = torch.randint(98, 198, (batch,), generator=generator) if batch > 1 else torch.tensor([197])
        layout = Layout.from_lengths(lengths.to(args.device))
        q, k, v = (torch.randn(layout.num_rows, 6, 64, generator=generator).to(args.device, dtype) for _ in range(3))
        found = candidates(q, k, v, layout, args.device)
        calls = {name: call for name, call in found.items() if callable(call)}
        want = calls["sequential"]()
        errors = {name: (call().float() - want.float()).abs().max().item() for name, call in calls.items()}
        with torch.no_grad():  # not inference mode: nested tensors cannot be views of inference tensors
            seconds = common.time_interleaved(calls, args.rounds, args.device)
        for name in calls:
            rows.append(
                f"| {batch} | {int(lengths.sum())} | {name} | {seconds[name] * 1e3:.2f} | "
                f"{seconds[name] / seconds['padded']:.2f} | {errors[name]:.1e} |"
            )
            print(rows[-1], flush=True)
        for name, failure in found.items():
            if not callable(failure):  # a candidate that could not run says why, in the table
                rows.append(f"| {batch} | {int(lengths.sum())} | {name} | {failure} | - | - |")
                print(rows[-1], flush=True)
    description = (
        f"One DeiT-S attention layer (6 heads x 64), sequence lengths uniform in [98, 197] (197 at batch 1), "
        f"{args.dtype}; fastest of {args.rounds} calls per candidate, interleaved. Time relative to the padded "
        "backend; max |difference| from the sequential reference."
    )
    table = ["| batch | rows | backend | ms | time / padded | max abs diff |", "|---|---|---|---|---|---|", *rows]
    common.write_report(args.out, __file__, title=f"# Attention over packed sequences on {args.device}",
                        machine=args.machine, sections=[description, "", *table])


if __name__ == "__main__":
    main()
