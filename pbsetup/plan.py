"""An install as a list of described actions: printed for ``--dry-run``, carried out otherwise.

Every change to the machine goes through a ``Plan`` step, so a dry run shows all of them and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional


def log(msg: str) -> None:
    print(f"[install] {msg}", flush=True)


@dataclass
class Step:
    text: str
    action: Optional[Callable[[], None]] = None


@dataclass
class Plan:
    """Steps in order; ``run`` prints each (prefixed ``would:`` in a dry run) and runs it unless dry."""

    dry_run: bool = False
    steps: List[Step] = field(default_factory=list)

    def add(self, text: str, action: Optional[Callable[[], None]] = None) -> None:
        self.steps.append(Step(text, action))

    def run(self) -> None:
        for step in self.steps:
            log(("would: " if self.dry_run else "") + step.text)
            if not self.dry_run and step.action is not None:
                step.action()
        self.steps.clear()
