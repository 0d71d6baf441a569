"""A stand-in for an external anonymizer program: blur every image of a folder into another.

    python blur_folder.py INPUT OUTPUT [--sigma 7] [--engine pillow|evalsuite] [--fail] [--skip N] [--extra] [--resize]

``pillow`` blurs with Pillow's ImageFilter.GaussianBlur (an approximation by box filters:
not the same pixels as evalsuite's blur); ``evalsuite`` loads the suite's own
``anonymizers.blur.gaussian_blur`` (sigma 7, kernel 21), so its output equals the built-in
``blur`` exactly. The remaining flags simulate broken programs for the adapter's error paths.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--sigma", type=float, default=7.0)
    parser.add_argument("--engine", choices=("pillow", "evalsuite"), default="pillow")
    parser.add_argument("--fail", action="store_true")
    parser.add_argument("--skip", type=int, default=0)
    parser.add_argument("--extra", action="store_true")
    parser.add_argument("--resize", action="store_true")
    args = parser.parse_args()
    if args.fail:
        print("loading model weights\nRuntimeError: CUDA out of memory (simulated)", file=sys.stderr)
        return 3
    src, dst = Path(args.input), Path(args.output)
    files = sorted(p for p in src.rglob("*.png"))
    for path in files[args.skip:]:
        image = Image.open(path).convert("RGB")
        if args.engine == "pillow":
            out = image.filter(ImageFilter.GaussianBlur(radius=args.sigma))
        else:
            import torch

            sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the evalsuite checkout
            from anonymizers.blur import gaussian_blur, kernel_size_for

            tensor = torch.from_numpy(np.asarray(image)).permute(2, 0, 1)[None].contiguous()
            blurred = gaussian_blur(tensor, kernel_size_for(args.sigma), args.sigma)
            out = Image.fromarray(blurred[0].permute(1, 2, 0).numpy())
        if args.resize:
            out = out.resize((out.width + 1, out.height))
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        out.save(target)
    if args.extra:
        Image.new("RGB", (4, 4)).save(dst / "stray.png")
    print(f"blurred {len(files) - args.skip} images", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
