"""Applies ATS to a timm DeiT and reports what it keeps and what it saves.

    python tools/ats_demo.py                                   # DeiT-S, random weights
    python tools/ats_demo.py --checkpoint deit_small_patch16_224-cd65a155.pth --k 0.7

Runs a batch of images (seeded random images unless --images-pt names a saved [B, 3, H, W]
tensor) through the model with and without ATS and prints, per ATS block, the kept-token
counts, then the GFLOPs per image as run and how often the top-1 class agrees.
"""

import argparse

import ats_video  # before timm: repairs torchvision imports where needed
import timm
import torch

from ats_video import apply_ats
from ats_video.flops import count_gflops


def parse_budget(text: str):
    return float(text) if "." in text else int(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="deit_small_patch16_224", help="a timm ViT/DeiT name")
    parser.add_argument("--checkpoint", help="DeiT/timm .pth ({'model': state_dict} or a bare state dict)")
    parser.add_argument("--blocks", type=int, nargs="+", help="0-indexed ATS blocks (default 3..last)")
    parser.add_argument("--k", type=parse_budget, default=1.0, help="budget: int K or float ratio rho (default 1.0, K = N)")
    parser.add_argument("--selector", choices=["sample", "topk"], default="sample")
    parser.add_argument("--images-pt", help="a torch-saved [B, 3, H, W] float tensor, normalised")
    parser.add_argument("--batch-size", type=int, default=4, help="random images when --images-pt is not given")
    args = parser.parse_args()

    torch.manual_seed(0)  # the same random weights every run when no checkpoint is given
    model = timm.create_model(args.model).eval()
    if args.checkpoint:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("model", state), strict=True)
    size = model.patch_embed.img_size
    if args.images_pt:
        images = torch.load(args.images_pt, map_location="cpu", weights_only=True)
    else:
        images = torch.randn(args.batch_size, 3, *size, generator=torch.Generator().manual_seed(0))

    with torch.inference_mode():
        plain_logits = model(images)
    plain_gflops = count_gflops(model, images)
    apply_ats(model, args.blocks, args.k, selector=args.selector)
    with torch.inference_mode():
        ats_logits = model(images)
    ats_gflops = count_gflops(model, images)

    print(f"{args.model} + ATS (k={args.k}, selector={args.selector}) on {len(images)} images")
    print("block  kept tokens per image")
    for record in ats_video.kept_tokens(model):
        print(f"{record.block:5d}  {record.count.tolist()}")
    agree = (plain_logits.argmax(-1) == ats_logits.argmax(-1)).float().mean().item()
    print(f"GFLOPs per image: {plain_gflops.mean():.2f} without ATS, {ats_gflops.mean():.2f} with ATS")
    print(f"top-1 agreement with the model without ATS: {agree:.0%}")


if __name__ == "__main__":
    main()
