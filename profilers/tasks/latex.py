"""LaTeX answers: the last ``\\boxed{...}`` of a completion, and math-verify equivalence.

math-verify bounds parsing and verification with SIGALRM, which only works in the main
thread; elsewhere (a profiling thread, a server handler) it is called without timeouts.
"""

from __future__ import annotations

import re
import threading

from storage import UserInputError

_BOX_COMMANDS = re.compile(r"\\(?:boxed|fbox)\s*")


def _braced(text: str, open_index: int) -> str | None:
    """The contents of the brace group opening at `open_index`, or None if unbalanced."""
    depth = 0
    for index in range(open_index, len(text)):
        if text[index] == "{" and text[index - 1 : index] != "\\":
            depth += 1
        elif text[index] == "}" and text[index - 1 : index] != "\\":
            depth -= 1
            if depth == 0:
                return text[open_index + 1 : index]
    return None


def last_boxed(text: str) -> str | None:
    """The contents of the last ``\\boxed{...}`` (or ``\\fbox``) in `text`, braces balanced.

    ``\\boxed 5`` (no braces) yields the token after the space. Returns None when there is
    no complete box.
    """
    for match in reversed(list(_BOX_COMMANDS.finditer(text))):
        end = match.end()
        if text[end : end + 1] == "{":
            contents = _braced(text, end)
        elif match.group(0).endswith(" "):
            contents = re.split(r"[\s$]", text[end:], maxsplit=1)[0] or None
        else:
            contents = None
        if contents is not None and contents.strip():
            return contents.strip()
    return None


# Whitespace between two letters is kept: it may separate words (``\\text{Monday morning}``).
_SPACING = re.compile(r"\\[,;:! ]|\\(?:left|right|displaystyle)(?![A-Za-z])"
                      r"|\s+(?![A-Za-z])|(?<![A-Za-z])\s+")
_FRACTIONS = re.compile(r"\\[dt]frac")


def canonical_latex(answer: str | None) -> str | None:
    """A light canonical spelling, so that majority votes count ``\\dfrac{1}{2}`` and
    ``\\frac {1}{2}`` as one answer: no spacing commands, ``\\left``/``\\right`` or
    whitespace next to a non-letter, ``\\dfrac``/``\\tfrac`` as ``\\frac``, no trailing
    period. Grading still uses math-verify, which also equates forms this leaves apart
    (``0.5``)."""
    if answer is None:
        return None
    canonical = _FRACTIONS.sub(r"\\frac", _SPACING.sub("", answer)).rstrip(".")
    return canonical or None


def _math_verify():
    try:
        import math_verify
    except ImportError as error:
        raise UserInputError("grading LaTeX answers needs math-verify: "
                             "pip install 'math-verify>=0.8'") from error
    return math_verify


def _timeouts() -> tuple[int | None, int | None]:
    """(parsing, verification) timeouts in seconds: math-verify's defaults in the main
    thread, None elsewhere (SIGALRM cannot be set outside it)."""
    if threading.current_thread() is threading.main_thread():
        return 5, 5
    return None, None


def math_equal(gold: str, answer: str | None) -> bool:
    """Whether `answer` is mathematically equivalent to `gold` (both LaTeX, no delimiters).

    Gold first: math-verify's comparison is not symmetric.
    """
    if answer is None or not answer.strip():
        return False
    math_verify = _math_verify()
    parsing_s, verify_s = _timeouts()
    gold_parsed = math_verify.parse(f"${gold}$", parsing_timeout=parsing_s)
    if not gold_parsed:
        gold_parsed = math_verify.parse(f"\\boxed{{{gold}}}", parsing_timeout=parsing_s)
    answer_parsed = math_verify.parse(f"\\boxed{{{answer}}}", parsing_timeout=parsing_s)
    if not gold_parsed or not answer_parsed:
        return _normalise(gold) == _normalise(answer)
    return bool(math_verify.verify(gold_parsed, answer_parsed, timeout_seconds=verify_s))


def _normalise(text: str) -> str:
    return re.sub(r"\s+", "", text)
