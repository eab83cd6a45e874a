"""A loaded model: `LoadedModel`, a causal language model with its tokenizer, name and origin.

It answers the shape questions every method asks (`n_layers`, `n_heads`, `n_kv_heads`,
`d_head`, ...) from the Hugging Face config of any family, tokenizes as TransformerLens does (one
BOS token first, `to_tokens`), and builds TransformerLens's bridge on demand. `finish_loading`
puts a freshly loaded Hugging Face model in the state every `LoadedModel` holds it in.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from transformers import PreTrainedTokenizerBase

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# A prompt each model can do, for `actpatch info` and quick checks; GPT-2's for other models.
SAMPLE_PROMPT = "The Eiffel Tower is in the city of"
# A model's own sample prompt, kept in its config (so in config.json when it is saved).
SAMPLE_PROMPT_KEY = "actpatch_sample_prompt"


@dataclass(eq=False)  # compared and hashed by identity: runners are cached per model object
class LoadedModel:
    """A causal language model with its tokenizer, its name and where it came from."""

    name: str
    source: str  # "hub", "local folder" or "bundled"
    hf_model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    notes: list[str] = field(default_factory=list)
    # Module -> device, when the model is spread over several devices (`models.placement`).
    device_map: dict[str, Any] | None = None
    # The model's own weights as loaded. TransformerLens's bridge, once built, wraps the modules
    # in place and adds split copies of some (GPT-2's fused c_attn as q, k, v), so counting and
    # checking "the weights" goes through this list, which the bridge does not change.
    weights: list[torch.nn.Parameter] = field(default_factory=list, repr=False)
    # Replay patched cell batches from recorded CUDA graphs (`actpatch.patching.graphs`); only
    # for a model on one CUDA GPU (`load_model(..., cuda_graphs=True)` checks).
    cuda_graphs: bool = False
    _bridge: Any = field(default=None, repr=False)
    _bridge_lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def __post_init__(self) -> None:
        if not self.weights:
            self.weights = list(self.hf_model.parameters())

    @property
    def config(self) -> Any:
        return self.hf_model.config

    @property
    def device(self) -> torch.device:
        """Where the model reads its tokens: its embedding's device (with a device map, other
        blocks may sit elsewhere: `devices`)."""
        embedding = self.hf_model.get_input_embeddings()
        if embedding is not None:
            return embedding.weight.device
        return next(self.hf_model.parameters()).device

    @property
    def devices(self) -> list[str]:
        """Every device the model's weights are on, the embedding's first."""
        from actpatch.models.placement import devices_of

        return devices_of(self.hf_model)

    def _config_int(self, *names: str) -> int:
        for name in names:
            value = getattr(self.config, name, None)
            if value is not None:
                return int(value)
        raise AttributeError(f"{self.name}'s config has none of {names}")

    @property
    def n_layers(self) -> int:
        return self._config_int("n_layer", "num_hidden_layers")

    @property
    def n_heads(self) -> int:
        return self._config_int("n_head", "num_attention_heads")

    @property
    def d_model(self) -> int:
        return self._config_int("n_embd", "hidden_size")

    @property
    def d_head(self) -> int:
        head_dim = getattr(self.config, "head_dim", None)  # Gemma's is not d_model / n_heads
        return int(head_dim) if head_dim else self.d_model // self.n_heads

    @property
    def n_kv_heads(self) -> int:
        """Key/value heads: fewer than n_heads with grouped-query attention."""
        value = getattr(self.config, "num_key_value_heads", None)
        return int(value) if value else self.n_heads

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hf_model.parameters()).dtype

    @property
    def n_ctx(self) -> int:
        return self._config_int("n_positions", "max_position_embeddings")

    @property
    def d_vocab(self) -> int:
        return int(self.config.vocab_size)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.weights)

    @property
    def bos_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        if bos is None:
            bos = self.config.bos_token_id
        return int(bos)

    @property
    def sample_prompt(self) -> str:
        """A prompt this model completes well: its config's `actpatch_sample_prompt` (the demo
        model carries one, and keeps it when exported to a folder), else GPT-2's."""
        return str(getattr(self.config, SAMPLE_PROMPT_KEY, None) or SAMPLE_PROMPT)

    def describe(self) -> dict[str, Any]:
        """The model's name, origin and shape, for display."""
        return {
            "name": self.name,
            "source": self.source,
            "architecture": self.config.model_type,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads,
            "d_model": self.d_model,
            "d_head": self.d_head,
            "n_ctx": self.n_ctx,
            "d_vocab": self.d_vocab,
            "n_params": self.n_params,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            "devices": self.devices,
            "cuda_graphs": self.cuda_graphs,
            "notes": list(self.notes),
        }

    def __repr__(self) -> str:
        """The model by name, origin and shape (not the Hugging Face module tree, which
        `hf_model` prints)."""
        shape = f"{self.n_layers} layers x {self.n_heads} heads"
        if self.n_kv_heads != self.n_heads:
            shape += f" ({self.n_kv_heads} key/value heads)"
        dtype = str(self.dtype).removeprefix("torch.")
        return (
            f"LoadedModel({self.name!r}, {self.config.model_type}, {shape}, d_model "
            f"{self.d_model}, {dtype} on {', '.join(self.devices)}, from {self.source})"
        )

    def to_tokens(self, text: str, *, prepend_bos: bool = True) -> list[int]:
        """Token ids of `text`, with a BOS token first as TransformerLens does for GPT-2."""
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return [self.bos_token_id, *ids] if prepend_bos else ids

    def to_str_tokens(self, ids: list[int] | torch.Tensor) -> list[str]:
        """The string of each token id (decoded one by one, spaces kept)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return [self.tokenizer.decode([int(i)]) for i in ids]

    def bridge(self) -> Any:
        """TransformerLens's `TransformerBridge` around this model (built once, on demand).

        Compatibility mode gives TransformerLens's hook names and shapes; its weight processing
        (folding norms, centring weights) is left off: it rewrites the model's own parameters,
        which the fast path reads too, and a patch means the same without it. The bridge still
        wraps the Hugging Face model's modules in place (sharing their weights)."""
        with self._bridge_lock:
            if self._bridge is None:
                from transformer_lens.model_bridge import TransformerBridge

                bridge = TransformerBridge.boot_transformers(
                    self.tokenizer.name_or_path or self.name,
                    hf_model=self.hf_model,
                    tokenizer=self.tokenizer,
                )
                bridge.enable_compatibility_mode(no_processing=True)
                bridge.eval()
                self._bridge = bridge
            return self._bridge


def finish_loading(model: PreTrainedModel, device: str, dtype: torch.dtype) -> PreTrainedModel:
    """`model` on `device` in `dtype`, in eval mode, without gradients (as LoadedModel keeps it)."""
    model = model.to(device=device, dtype=dtype)
    model.eval()
    model.requires_grad_(False)
    return model
