"""Built-in anonymizers; importing this package registers them with ``ANONYMIZERS``."""
from anonymizers import blur, identity, mask, pixelate  # noqa: F401  (registration side effects)
from anonymizers import ksame  # noqa: F401  (k-Same-Pixel / k-Same-Select)
from anonymizers import head  # noqa: F401  (blurhead / blackhead / pixelatehead presets)
from anonymizers import external, precomputed  # noqa: F401  (adapters: a program over a folder, a folder of results)
from anonymizers import deepprivacy  # noqa: F401  (dp-body / dp-face: DeepPrivacy-style inpainting GANs)
from anonymizers import uap  # noqa: F401  (universal adversarial perturbation against a surrogate recognizer)
from anonymizers import ppas  # noqa: F401  (AnonymousNet: attribute estimation, PPAS selection, StarGAN-style synthesis)
from anonymizers import head_inpaint  # noqa: F401  (head-inpaint: Sun et al. two-stage head inpainting)
