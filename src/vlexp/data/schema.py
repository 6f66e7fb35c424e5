"""What each record kind (`algo.kind`: sft, dpo, grpo, kto) is made of, in one table that both the
converter (`records.to_example`) and the data check (`fields.structure`) read.

A record comes in one of two forms (after its format's reader, `vlexp.data.formats`):

* prefix: a question (`prefix`/`question`/`problem`) and string targets, e.g. `suffix`;
* conversational: TRL's turn columns (`messages`, `prompt`, `completion`, `chosen`, ...).

For each kind the table says which targets the prefix form needs, which sets of turn columns
the conversational form accepts, and whether the record's other columns go to the rewards.
"""

from __future__ import annotations

from dataclasses import dataclass

from vlexp.config.algo import KINDS

QUESTION_KEYS = ("prefix", "question", "problem")  # the prefix form's question, any one
# Conversational form: per turn column, the roles whose text is a target (boxes in it are
# rescaled with data.boxes.rescale); the prompt's turns are never targets.
TARGET_ROLES = {
    "prompt": (),
    "completion": ("assistant",),
    "messages": ("assistant",),
    "chosen": ("assistant",),
    "rejected": ("assistant",),
}


@dataclass(frozen=True)
class Target:
    """One assistant turn built from a prefix-form record."""

    column: str  # the example's column: completion, chosen, rejected
    sources: tuple[str, ...]  # the record fields holding its text; the first present wins

    def source(self, fields: dict) -> str:
        return next((key for key in self.sources if key in fields), self.sources[-1])


@dataclass(frozen=True)
class Schema:
    targets: tuple[Target, ...]  # prefix form: the prompt, then these turns
    forms: tuple[tuple[str, ...], ...]  # conversational: accepted column sets, first that fits
    rewards: bool  # the other columns are passed on, as the rewards' keyword arguments
    one_form: bool  # a split keeps one form (TRL masks SFT per form: completion or assistant)
    messages_prompt: bool  # a `messages` record's prompt: its turns up to the last user turn
    missing: str  # what to write when no accepted form fits
    # Prefix form of a record with a `label` (KTO: true = desirable, false = undesirable):
    # these targets instead of `targets`, and the label goes with the example.
    labelled: tuple[Target, ...] = ()

    def targets_for(self, fields: dict) -> tuple[Target, ...]:
        return self.labelled if self.labelled and "label" in fields else self.targets

    def form(self, fields: dict) -> tuple[str, ...] | None:
        """The conversational columns this record provides, or None."""
        return next((form for form in self.forms if all(k in fields for k in form)), None)


SCHEMAS = {
    "sft": Schema(
        targets=(Target("completion", ("suffix",)),),
        forms=(("messages",), ("prompt", "completion")),
        rewards=False,
        one_form=True,
        messages_prompt=False,
        missing="SFT needs 'messages' or 'prompt' + 'completion'",
    ),
    "dpo": Schema(
        targets=(Target("chosen", ("chosen", "suffix")), Target("rejected", ("rejected",))),
        forms=(("prompt", "chosen", "rejected"),),
        rewards=False,
        one_form=False,
        messages_prompt=False,
        missing="DPO needs a rejected answer: 'prompt' + 'chosen' + 'rejected' turns (TRL), "
        "or 'messages' + 'rejected_response' (ms-swift)",
    ),
    "kto": Schema(
        targets=(Target("chosen", ("chosen", "suffix")), Target("rejected", ("rejected",))),
        forms=(("prompt", "completion"), ("prompt", "chosen", "rejected")),
        rewards=False,
        one_form=False,
        messages_prompt=False,
        missing="KTO needs 'label' (true/false) with one completion, or a chosen/rejected pair "
        "(split into a desirable and an undesirable row)",
        labelled=(Target("completion", ("completion", "suffix")),),
    ),
    "grpo": Schema(
        targets=(),
        forms=(("prompt",),),
        rewards=True,
        one_form=False,
        messages_prompt=True,
        missing="GRPO needs 'prompt' or 'messages' turns",
    ),
}


def of(kind: str) -> Schema:
    if kind not in SCHEMAS:
        raise ValueError(f"algo.kind must be one of {KINDS}, got {kind!r}")
    return SCHEMAS[kind]
