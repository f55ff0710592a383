"""Prompt text for file-backed tasks: the model's chat template, or plain text."""

from __future__ import annotations

from functools import cache

from storage import UserInputError

DEFAULT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


@cache
def _tokenizer(name: str):
    try:
        from transformers import AutoTokenizer
    except ImportError as error:
        raise UserInputError("chat templates need transformers: pip install transformers, "
                             "or drop chat_template= for plain-text prompts") from error
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as error:
        raise UserInputError(f"cannot load the tokenizer of '{name}' ({error}); pass a model "
                             "directory or hub id in chat_template=") from error
    if not getattr(tokenizer, "chat_template", None):
        raise UserInputError(f"the tokenizer of '{name}' has no chat template; pass an "
                             "instruction-tuned model in chat_template= or drop it")
    return tokenizer


class PromptBuilder:
    """Question + instruction, through `chat_template`'s tokenizer when given (a model
    directory or hub id), else as plain text ending in ``Solution:``."""

    def __init__(self, instruction: str = DEFAULT_INSTRUCTION,
                 chat_template: str | None = None) -> None:
        self.instruction = instruction
        self.chat_template = chat_template

    def __call__(self, question_text: str) -> str:
        content = f"{question_text}\n\n{self.instruction}" if self.instruction else question_text
        if self.chat_template is None:
            return f"Problem:\n{content}\n\nSolution:"
        messages = [{"role": "user", "content": content}]
        return _tokenizer(self.chat_template).apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True)
