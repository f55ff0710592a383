"""Prompt text for file-backed tasks: the model's chat template, or plain text."""

from __future__ import annotations

from functools import cache

from storage import UserInputError

DEFAULT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
QUESTION_PLACEHOLDER = "{question}"
PLAIN_TEMPLATE = "Problem:\n{question}\n\nSolution:"  # without a chat template
CHAT_TEMPLATE_MESSAGE = "{question}"  # the user message, with a chat template
MAX_STOP_STRINGS, MAX_STOP_CHARS = 8, 64


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


def check_prompt_template(template: str) -> str:
    """`template` if it holds the ``{question}`` placeholder exactly once."""
    if template.count(QUESTION_PLACEHOLDER) != 1:
        raise UserInputError(f"prompt_template {template[:60]!r} must hold {QUESTION_PLACEHOLDER}"
                             " exactly once, e.g. 'Q: {question}\\nA:'")
    return template


def check_stop(stop: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Stop strings as a tuple: at most MAX_STOP_STRINGS, each 1..MAX_STOP_CHARS long."""
    if len(stop) > MAX_STOP_STRINGS:
        raise UserInputError(f"{len(stop)} stop strings; a task takes at most "
                             f"{MAX_STOP_STRINGS}: keep the ones the model really emits")
    for text in stop:
        if not 0 < len(text) <= MAX_STOP_CHARS:
            raise UserInputError(f"stop string {text[:MAX_STOP_CHARS]!r} must be 1 to "
                                 f"{MAX_STOP_CHARS} characters long")
    return tuple(stop)


class PromptBuilder:
    """Question + instruction put into `prompt_template` at ``{question}``; that text goes
    through `chat_template`'s tokenizer as the user message when given (a model directory
    or hub id), else it is the prompt. Default templates: the bare text in a chat, else
    ``Problem: ... Solution:``. Only ``{question}`` is replaced, so other braces (LaTeX,
    JSON) stay as written."""

    def __init__(self, instruction: str = DEFAULT_INSTRUCTION,
                 chat_template: str | None = None,
                 prompt_template: str | None = None) -> None:
        self.instruction = instruction
        self.chat_template = chat_template
        default = PLAIN_TEMPLATE if chat_template is None else CHAT_TEMPLATE_MESSAGE
        self.prompt_template = check_prompt_template(prompt_template or default)

    def __call__(self, question_text: str) -> str:
        content = f"{question_text}\n\n{self.instruction}" if self.instruction else question_text
        text = self.prompt_template.replace(QUESTION_PLACEHOLDER, content)
        if self.chat_template is None:
            return text
        messages = [{"role": "user", "content": text}]
        return _tokenizer(self.chat_template).apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True)
