"""Head obfuscations of Sun et al. (2018) and Oh et al. (2016): ``blurhead``, ``blackhead``, ``pixelatehead``.

These are presets of ``blur``, ``mask`` and ``pixelate``. An anonymizer never chooses its
own region (``anonymizers/base.py``: the region provider makes the mask, the anonymizer
only changes pixels inside it), so the "head" in the names is carried by the protocol:
``person-recognition`` anonymizes the head box (``region.name=head``), which makes these
the paper's obfuscations. Under a protocol with another region they act on that region
(``blackhead`` under ``market1501-reid`` blacks out the body), exactly like their base.

- ``blackhead``: the head box filled with black (0), Sun et al.'s "Black" input ("filled in
  with black pixels"); the same parameters as ``mask_black``.
- ``blurhead``: Gaussian blur of the head box with the suite's standard blur (sigma 7,
  kernel 21; DeepPrivacy2 / Paper F). Sun et al. take their kernel from Oh et al. (2016)
  without giving its size; sigma 7 on the 15-23 pixel heads of the synthetic crops leaves
  only the head's colours, a strong blur.
- ``pixelatehead``: the head box resized to an 8 x 8 grid and back (DeepPrivacy2's
  "pixelation 8x8", applied to the head box instead of the person), i.e. a fixed mosaic of
  8 x 8 cells per head whatever its size (2-3 pixels per cell on the synthetic heads).
"""
from __future__ import annotations

from anonymizers import blur, mask, pixelate  # noqa: F401  (the bases must be registered first)
from evalsuite.registry import ANONYMIZERS

ANONYMIZERS.register_preset(
    "blackhead", "mask", fill="black",
    description="Sun et al. 'blackhead': the head box filled with black (mask fill=black; the protocol's region is the head)",
)
ANONYMIZERS.register_preset(
    "blurhead", "blur", sigma=7.0, kernel_size=None,
    description="Sun et al. 'blurhead': Gaussian blur (sigma 7, kernel 21) of the head box (the protocol's region is the head)",
)
ANONYMIZERS.register_preset(
    "pixelatehead", "pixelate", grid=8,
    description="head pixelation: the head box resized to an 8x8 grid and back (the protocol's region is the head)",
)
