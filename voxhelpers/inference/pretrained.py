"""Pretrained weights: safetensors (fp16 or int8 per-channel) + a JSON model card each; loading never unpickles.

The card holds ``system``, ``config``, ``profile``, ``epochs``, ``data``, ``command`` (generated from the config:
the command line that reproduces the run), ``metrics`` and ``weights`` (file, dtype, sha256, bytes). Loading checks
the file's sha256 against the card (``verify=False`` for a user's own edited weights) and rebuilds the network from
the card's config through the system registry.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from torch import nn

from ..data.io import load_weights, read_card, save_weights, sha256, write_json


def save_pretrained(model: nn.Module, system: str, config: dict, path: str | Path, profile: str, command: str,
                    data: str, metrics: dict | None = None, dtype: str = "fp16", epochs: int | None = None,
                    **card_fields) -> Path:
    """Write a model's weights (safetensors) and the JSON model card beside them, both atomically.

    Args:
        model: the network to ship (a generator, the image → voxel model...).
        system: its system's registry name.
        config: the run's config dict.
        path: the ``.safetensors`` file.
        profile, command, data: the card's provenance fields.
        metrics: card metrics (often filled later by evaluation, :func:`update_card`).
        dtype: ``"fp16"``, ``"fp32"`` or ``"int8"`` (per-channel).
        epochs: epochs actually run (default: the config's).
        card_fields: extra card fields (``trained_on``, ``selection``...).

    Returns:
        the weights path.
    """
    path = Path(path)
    save_weights(path, model.state_dict(), dtype=dtype, metadata={"system": system})
    card = {
        "system": system,
        "config": config,
        "profile": profile,
        "epochs": epochs if epochs is not None else config.get("epochs"),
        "data": data,
        "command": command,
        "metrics": metrics or {},
        "weights": {"file": path.name, "dtype": dtype, "sha256": sha256(path), "bytes": path.stat().st_size},
        "parameters": sum(p.numel() for p in model.parameters()),
        "created": datetime.date.today().isoformat(),
        **card_fields,
    }
    write_json(path.with_suffix(".json"), card)
    return path


def update_card(path: str | Path, **fields) -> dict:
    """Merge fields into a model card (``metrics`` merged key by key), written atomically."""
    card = read_card(path)
    for k, v in fields.items():
        card[k] = {**card.get(k, {}), **v} if k == "metrics" else v
    write_json(Path(path).with_suffix(".json"), card)
    return card


def card_config(card: dict):
    """The card's config as its system's config dataclass (older cards' keys upgraded)."""
    from ..systems import get_system

    return get_system(card["system"]).config.from_dict(card["config"])


def load_pretrained(path: str | Path, device="cpu", verify: bool = True) -> tuple[nn.Module, dict]:
    """Rebuild a pretrained model from its safetensors file and model card (no unpickling).

    Args:
        path: the ``.safetensors`` file or its ``.json`` card.
        device: where the model goes.
        verify: check the file's sha256 against the card's (off for weights a user edited on purpose).

    Returns:
        ``(model, card)``, the model in eval mode on ``device``.

    Raises:
        FileNotFoundError: a missing file or card. ValueError: a corrupt file, a sha256 other than the card's (both
        named), or weights that do not fit the card's network.
    """
    from ..nets import build_network
    from ..systems import get_system

    path = Path(path).with_suffix(".safetensors")
    card = read_card(path)
    weights = card.get("weights", {})
    if not isinstance(weights, dict):
        raise ValueError(f"{path.with_suffix('.json')}: the model card's 'weights' must be a JSON object (file, dtype, "
                         f"sha256, bytes), got {weights!r:.80}")
    if verify:
        expected = weights.get("sha256")
        actual = sha256(path) if path.is_file() else None
        if expected and actual and actual != expected:
            raise ValueError(f"{path}: sha256 {actual} differs from its card's {expected}: the file is not the one "
                             "the card describes (corrupt, or other weights); pass verify=False to load edited weights")
    try:
        model = build_network(card["system"], get_system(card["system"]).shipped_role, card_config(card))
    except (ValueError, TypeError) as e:  # a damaged card: an unknown system, a config field of the wrong type
        raise ValueError(f"{path.with_suffix('.json')}: the model card does not describe a network this version "
                         f"can build ({e})") from e
    state = load_weights(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not match the {card['system']} network of its card ({e})") from e
    return model.to(device).eval(), card
