"""The testbed model family: sizes, the shared character tokenizer, where weights live.

Depth is what separates the sizes: on a CPU engine a decode step of a tiny model costs
mostly per-layer overhead, so a deep target is several times slower per step than a
one-layer draft, as a large model is slower than a small one on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTBED_DIR = REPO_ROOT / "studies" / "testbed"
MODELS_DIR = TESTBED_DIR / "models"

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>")
CHARACTERS = "0123456789+-=;#:"
MAX_POSITIONS = 192


@dataclass(frozen=True)
class ModelSize:
    """Architecture and training budget of one testbed model."""

    name: str
    role: str  # "target" or "draft"
    hidden_size: int
    num_layers: int
    num_heads: int
    train_steps: int

    @property
    def intermediate_size(self) -> int:
        return 3 * self.hidden_size


FAMILY = (
    ModelSize("tb-draft", "draft", hidden_size=64, num_layers=1, num_heads=2, train_steps=600),
    ModelSize("tb-small", "target", hidden_size=128, num_layers=2, num_heads=4, train_steps=900),
    ModelSize("tb-medium", "target", hidden_size=128, num_layers=4, num_heads=4, train_steps=900),
    ModelSize("tb-large", "target", hidden_size=128, num_layers=12, num_heads=4,
              train_steps=1000),
)


def model_dir(name: str) -> Path:
    """Return the directory holding the weights of testbed model `name`."""
    return MODELS_DIR / name


def vocabulary() -> dict[str, int]:
    """Return the shared token -> id map: special tokens first, then characters."""
    tokens = list(SPECIAL_TOKENS) + list(CHARACTERS)
    return {token: index for index, token in enumerate(tokens)}


def build_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    """Return the shared character-level tokenizer (adds <s> in front of every text)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = vocabulary()
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_max_length=MAX_POSITIONS,
    )
