"""Finding pretrained weight files that are not shipped: a configured path, the torch hub cache, a download.

Weights the suite cannot ship (torch-fidelity's Inception for FID, the torchvision ImageNet
backbones of LPIPS) are looked for, in order, at the path a config key names, then in the
torch hub cache (``$TORCH_HOME/hub/checkpoints``, where torch-fidelity and torchvision put
their own downloads), then downloaded there when downloads are allowed. When none of that
works the metric is *unavailable*: :class:`WeightsUnavailable` carries one line naming the
file, where it was looked for and the config key that points elsewhere. A configured path
that does not exist is the user's error (:class:`~evalsuite.errors.UserError`). Files are
checked with ``torch.load(..., weights_only=True)`` before anything uses them.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from evalsuite.errors import UserError

log = logging.getLogger(__name__)


class WeightsUnavailable(Exception):
    """A weight file is absent and could not be fetched; the message is one line for the user."""


def hub_checkpoint_path(filename: str) -> Path:
    """Where torch's hub helpers cache a downloaded checkpoint named ``filename``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def resolve_weights(url: str, configured: str | None, key: str, what: str, download: bool) -> Path:
    """The local file holding the weights at ``url``.

    ``configured`` is the value of config key ``key`` (a path or None); ``what`` names the
    weights in messages. Raises UserError for a configured path that does not exist and
    WeightsUnavailable when the default file is absent and cannot be downloaded.
    """
    filename = url.rsplit("/", 1)[-1]
    if configured:
        path = Path(str(configured)).expanduser()
        if not path.is_file():
            raise UserError(f"{what} weights {path} (set by {key}) do not exist; point {key} at {filename} or unset it to use the torch hub cache")
        return path
    path = hub_checkpoint_path(filename)
    if path.is_file():
        return path
    reason = "downloads are disabled (download=false)"
    if download:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), progress=False)
            return path
        except Exception as exc:  # offline, proxy, HTTP error: the metric is left empty
            reason = f"download from {url} failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            path.unlink(missing_ok=True)
    raise WeightsUnavailable(f"{what} weights {filename} not found in {path.parent} and {reason}; set {key}=/path/to/{filename}")


def load_state_dict(path: Path, what: str, key: str) -> dict[str, Any]:
    """A state dict from ``path`` loaded with ``weights_only=True``; UserError naming the file when it is not one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"{what} weights {path} (config key {key}) cannot be loaded as a PyTorch state dict: {str(exc).splitlines()[0]}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{what} weights {path} (config key {key}) do not hold a state dict of tensors")
    return state
