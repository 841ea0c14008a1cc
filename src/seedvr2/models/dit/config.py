"""DiT configuration: one dataclass for both released structures, presets, and the official adapter.

The 3B and 7B checkpoints come from two official code trees (``dit_v2`` and ``dit``) that differ in
more than width; here those differences are fields of :class:`DiTConfig`:

=====================  ==========================  ==========================
field                  3B structure                7B structure
=====================  ==========================  ==========================
``mm_layers``          10 of 32 (rest shared)      36 of 36
``mlp_type``           ``swiglu`` (no biases)      ``gelu`` (tanh, biases)
``rope_type``          ``mmrope3d`` (video+text)   ``rope3d`` (video only)
``out_norm``           RMSNorm + modulation        none
``last_block_vid_only``  text not modulated        False
=====================  ==========================  ==========================
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from seedvr2.errors import ConfigError

WindowMethod = Literal["720pwin_by_size_bysize", "720pswin_by_size_bysize"]
REGULAR: WindowMethod = "720pwin_by_size_bysize"
SHIFTED: WindowMethod = "720pswin_by_size_bysize"

# Antialiased bicubic as the official pipeline (torchvision's Resize: kernel a = -0.5), which
# the released models were trained on; or plain bicubic (a = -0.75, PyTorch's and OpenCV's
# default and the evaluation's bicubic baseline), which the bundled seedvr2-small is trained on
# so that its pass-through start is exactly that baseline.
ConditionResize = Literal["bicubic_antialias", "bicubic"]
CONDITION_RESIZES: tuple[str, ...] = ("bicubic_antialias", "bicubic")

# The colour correction restoration applies unless told otherwise (``seedvr2.pipeline.color``).
# The released models drift in colour and are run with the official demo's wavelet correction; a
# model that outputs the right colours itself can say ``none``, so that its own corrections of the
# input's low frequencies (the degradations darken it) are not replaced by the input's again.
ColorCorrection = Literal["wavelet", "adain", "lab", "none"]
COLOR_CORRECTION_NAMES: tuple[str, ...] = ("wavelet", "adain", "lab", "none")


@dataclass(frozen=True)
class DiTConfig:
    """Hyper-parameters of the SeedVR2 native-resolution DiT."""

    dim: int = 2560  # width of both streams (official vid_dim == txt_dim)
    heads: int = 20  # attention heads; dim must equal heads * head_dim
    head_dim: int = 128
    num_layers: int = 32
    mm_layers: int = 10  # first blocks with separate video/text weights; the rest share (".all.")
    mlp_type: Literal["swiglu", "gelu"] = "swiglu"
    expand_ratio: float = 4.0  # MLP hidden = dim * ratio (SwiGLU: 2/3 of it, rounded up to 256)
    rope_type: Literal["mmrope3d", "rope3d"] = "mmrope3d"
    rope_dim: int = 128  # dims of each head the 3-axis RoPE spans (126 of 128 used for mmrope3d)
    out_norm: bool = True  # 3B: RMSNorm(affine) + modulation before the output projection
    last_block_vid_only: bool = True  # 3B: last block leaves the text stream un-modulated
    vid_in_channels: int = 33  # [x_t (16) | LQ latent (16) | mask (1)]
    vid_out_channels: int = 16
    txt_in_dim: int = 5120  # text-encoder width of pos_emb.pt / neg_emb.pt
    patch_size: tuple[int, int, int] = (1, 2, 2)
    norm_eps: float = 1e-5
    num_windows: tuple[int, int, int] = (4, 3, 3)  # windows per axis at the 720p proxy (eq. 1-2)
    window_methods: tuple[WindowMethod, ...] = field(default=())  # per block; () = alternate
    # Scale of the x_T the sampler starts from (1: the released models' Gaussian noise; 0: a
    # deterministic generator, x_T = 0, as the bundled seedvr2-small is trained and run).
    start_noise: float = 1.0
    # How the LQ is up-scaled to the output size into the condition (the pipeline's upscale_lq).
    condition_resize: ConditionResize = "bicubic_antialias"
    # The colour correction restore applies to this model's output by default.
    color_correction: ColorCorrection = "wavelet"

    def __post_init__(self) -> None:
        if self.dim != self.heads * self.head_dim:
            raise ConfigError(
                f"dim {self.dim} must equal heads {self.heads} x head_dim {self.head_dim}"
            )
        if not 0 <= self.mm_layers <= self.num_layers:
            raise ConfigError(f"mm_layers {self.mm_layers} not in [0, {self.num_layers}]")
        if self.condition_resize not in CONDITION_RESIZES:
            raise ConfigError(f"condition_resize {self.condition_resize!r} is not one of "
                              f"{list(CONDITION_RESIZES)}")
        if self.color_correction not in COLOR_CORRECTION_NAMES:
            raise ConfigError(f"color_correction {self.color_correction!r} is not one of "
                              f"{list(COLOR_CORRECTION_NAMES)}")
        if self.mlp_type not in ("swiglu", "gelu"):
            raise ConfigError(f"mlp_type {self.mlp_type!r} is not 'swiglu' or 'gelu'")
        if self.rope_type not in ("mmrope3d", "rope3d"):
            raise ConfigError(f"rope_type {self.rope_type!r} is not 'mmrope3d' or 'rope3d'")
        if self.rope_dim > self.head_dim or self.rope_dim // 3 < 2:
            raise ConfigError(f"rope_dim {self.rope_dim} must be in [6, head_dim {self.head_dim}]")
        if self.rope_type == "mmrope3d" and (self.rope_dim // 3) % 2:
            raise ConfigError(f"mmrope3d needs an even rope_dim // 3, got rope_dim {self.rope_dim}")
        if self.patch_size[0] != 1:
            raise ConfigError(f"temporal patch size {self.patch_size[0]} is not supported (use 1)")
        methods = self.window_methods or tuple(
            REGULAR if i % 2 == 0 else SHIFTED for i in range(self.num_layers)
        )
        if len(methods) != self.num_layers:
            raise ConfigError(
                f"window_methods has {len(methods)} entries for {self.num_layers} layers"
            )
        for m in methods:
            if m not in (REGULAR, SHIFTED):
                raise ConfigError(f"window method {m!r} is not {REGULAR!r} or {SHIFTED!r}")
        object.__setattr__(self, "window_methods", tuple(methods))
        object.__setattr__(self, "patch_size", tuple(self.patch_size))
        object.__setattr__(self, "num_windows", tuple(self.num_windows))

    @property
    def emb_dim(self) -> int:
        """Width of the time embedding: shift/scale/gate for attention and MLP."""
        return 6 * self.dim

    @property
    def mlp_hidden(self) -> int:
        """Hidden width of the MLP (SwiGLU: int(2/3 * ratio * dim) rounded up to 256)."""
        hidden = int(self.dim * self.expand_ratio)
        if self.mlp_type == "swiglu":
            hidden = math.ceil(int(2 * hidden / 3) / 256) * 256
        return hidden

    @property
    def rope_freqs(self) -> int:
        """Rotary frequencies per axis (3B: 21, 7B: 10); each rotates one pair of dims."""
        return (self.rope_dim // 3) // 2

    @property
    def patch_channels(self) -> int:
        """Channels of one patch token at the input."""
        return self.vid_in_channels * self.patch_size[1] * self.patch_size[2]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (stored in checkpoints' metadata)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DiTConfig:
        """Inverse of :meth:`to_dict`; unknown keys are errors that name the key."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown DiT config keys {unknown}; known: {sorted(names)}")
        kwargs = dict(values)
        for key in ("patch_size", "num_windows", "window_methods"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    @classmethod
    def from_official(cls, args: dict[str, Any]) -> DiTConfig:
        """Build from the official constructor arguments (``configs_{3b,7b}/main.yaml`` model).

        The 3B tree (``dit_v2``) is recognised by ``rope_type: mmrope3d`` / ``mm_layers``; anything
        else is the 7B tree (``dit``), which has every block two-stream and RoPE on video only.
        """
        args = dict(args)
        if args.get("vid_dim") != args.get("txt_dim"):
            raise ConfigError(f"vid_dim {args.get('vid_dim')} != txt_dim {args.get('txt_dim')}")
        for key, allowed in (("ada", "single"), ("norm", "fusedrms"), ("qk_norm", "fusedrms")):
            if args.get(key, allowed) != allowed:
                raise ConfigError(f"official config {key}={args[key]!r} unsupported ({allowed!r})")
        if args.get("qk_bias", False):
            raise ConfigError("official config qk_bias=True is unsupported")
        if any(b != "mmdit_sr" for b in args.get("block_type", [])):
            raise ConfigError(f"block_type {args['block_type']} unsupported (only 'mmdit_sr')")
        if args.get("shared_mlp", False) or args.get("shared_qkv", False):
            raise ConfigError("official 7B config with shared_mlp/shared_qkv is unsupported")
        windows = {tuple(w) for w in args.get("window", [(4, 3, 3)])}
        if len(windows) != 1:
            raise ConfigError(f"per-block window counts differ {sorted(windows)}; unsupported")
        num_layers = int(args["num_layers"])
        is_v2 = args.get("rope_type") == "mmrope3d" or "mm_layers" in args
        emb_dim = args.get("emb_dim", 6 * args["vid_dim"])
        if emb_dim != 6 * args["vid_dim"]:
            raise ConfigError(f"emb_dim {emb_dim} != 6 x vid_dim {args['vid_dim']}")
        if is_v2 and args.get("rope_type", "mmrope3d") != "mmrope3d":
            raise ConfigError(f"rope_type {args['rope_type']!r} unsupported for the 3B tree")
        mlp_type = {"swiglu": "swiglu", "normal": "gelu"}.get(args.get("mlp_type", "normal"))
        if mlp_type is None:
            raise ConfigError(f"mlp_type {args['mlp_type']!r} unsupported ('swiglu', 'normal')")
        return cls(
            dim=int(args["vid_dim"]),
            heads=int(args["heads"]),
            head_dim=int(args["head_dim"]),
            num_layers=num_layers,
            mm_layers=int(args.get("mm_layers", num_layers)) if is_v2 else num_layers,
            mlp_type=mlp_type,
            expand_ratio=float(args.get("expand_ratio", 4)),
            rope_type="mmrope3d" if is_v2 else "rope3d",
            rope_dim=int(args.get("rope_dim", 128)) if is_v2 else int(args["head_dim"]) // 2,
            out_norm=is_v2 and args.get("vid_out_norm") is not None,
            last_block_vid_only=is_v2,
            vid_in_channels=int(args.get("vid_in_channels", 33)),
            vid_out_channels=int(args.get("vid_out_channels", 16)),
            txt_in_dim=int(args["txt_in_dim"]),
            patch_size=tuple(args.get("patch_size", (1, 2, 2))),
            norm_eps=float(args.get("norm_eps", 1e-5)),
            num_windows=next(iter(windows)),
            window_methods=tuple(args.get("window_method", ())),
        )


def _three_b(**overrides: Any) -> DiTConfig:
    return DiTConfig(**overrides)


def _seven_b(**overrides: Any) -> DiTConfig:
    base: dict[str, Any] = dict(
        dim=3072, heads=24, num_layers=36, mm_layers=36, mlp_type="gelu", rope_type="rope3d",
        rope_dim=64, out_norm=False, last_block_vid_only=False,
    )
    base.update(overrides)
    return DiTConfig(**base)


DIT_PRESETS: dict[str, DiTConfig] = {
    "3b": _three_b(),
    "7b": _seven_b(),
    # Small models of the same structures, for tests and CPU training.
    "3b-tiny": _three_b(dim=128, heads=2, head_dim=64, num_layers=4, mm_layers=2, txt_in_dim=64,
                        rope_dim=60),
    "7b-tiny": _seven_b(dim=128, heads=2, head_dim=64, num_layers=2, mm_layers=2, txt_in_dim=64,
                       rope_dim=32),
    "3b-small": _three_b(dim=384, heads=6, head_dim=64, num_layers=8, mm_layers=4, txt_in_dim=64,
                         rope_dim=60),
}


def resolve_dit_config(config: str | dict[str, Any] | DiTConfig) -> DiTConfig:
    """Turn a preset name, an official/own dict, or a config into a :class:`DiTConfig`."""
    if isinstance(config, DiTConfig):
        return config
    if isinstance(config, str):
        if config not in DIT_PRESETS:
            raise ConfigError(f"unknown DiT preset {config!r}; choose one of {sorted(DIT_PRESETS)}")
        return DIT_PRESETS[config]
    if isinstance(config, dict):
        if "vid_dim" in config:
            return DiTConfig.from_official(config)
        return DiTConfig.from_dict(config)
    raise ConfigError(f"DiT config must be a preset name, dict or DiTConfig, not {type(config)}")
