"""Which passwords the store accepts (NIST SP 800-63B, section 5.1.1.2).

The length rules (at least 8 characters counted as code points, up to 128, no composition
rules) live in the request schema. This module refuses what is easy to guess: common and
breached-style passwords, keyboard patterns, repeats, sequences and dates, and anything built
from the account's own e-mail address or name or the store's name. zxcvbn estimates how many
guesses a password needs; a score below :data:`MIN_SCORE` is refused with its reason.
"""

from __future__ import annotations

import threading

from zxcvbn import zxcvbn

MIN_SCORE = 2  # zxcvbn: 0 too guessable, 1 very guessable, 2 somewhat guessable (>= 10^8 guesses)
MAX_LENGTH = 128
CONTEXT_WORDS = ("tierlake",)

# zxcvbn keeps the user inputs in a module-level dictionary while it scores, so two threads
# scoring at once could see each other's inputs: one at a time (a few milliseconds each).
_lock = threading.Lock()


def user_inputs(email: str, name: str = "") -> list[str]:
    """The words an attacker who knows the account would try first."""
    local_part = email.rpartition("@")[0] if "@" in email else email
    words = [email, local_part, name, *name.split(), *CONTEXT_WORDS]
    return [w.lower() for w in words if w.strip()]


def password_problem(password: str, inputs: list[str]) -> str | None:
    """Why ``password`` is refused (a sentence for the person choosing it), or None."""
    with _lock:
        result = zxcvbn(password[:MAX_LENGTH], user_inputs=inputs, max_length=MAX_LENGTH)
    if result["score"] >= MIN_SCORE:
        return None
    if any(m.get("dictionary_name") == "user_inputs" for m in result["sequence"]):
        reason = "it is built from your e-mail address, your name or the store's name"
    else:
        warning = str(result["feedback"].get("warning") or "").rstrip(".")
        reason = warning[:1].lower() + warning[1:] if warning else "it is too easy to guess"
    advice = " ".join(result["feedback"].get("suggestions") or [])
    advice = advice or "Use a longer phrase of several uncommon words."
    return f"Choose a harder password: {reason}. {advice}"
