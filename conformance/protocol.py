"""The implementation protocol: what the conformance suite calls on an implementation under test."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Unsupported(Exception):
    """Raised by an implementation for a feature it declares it does not support: reported as
    skipped."""


class PortError(Exception):
    """An error a port reported by name (an outputs folder's error.json): judged by that class
    name."""

    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type


class Implementation(Protocol):
    name: str
    version: str

    def run(
        self,
        family: str,
        task: str,
        config: dict,
        weights: dict[str, np.ndarray],
        inputs: dict[str, np.ndarray],
        options: dict,
    ) -> dict[str, np.ndarray]:
        """Run one forward pass.

        config is the HF config.json dict; weights are HF-named float arrays (the checkpoint as
        saved); inputs are named arrays (input_ids, attention_mask, position_ids, head_mask,
        inputs_embeds, labels, start_positions, end_positions, ...); options carry
        output_hidden_states, output_attentions, profile, return_tuple, use_cache, generate (keyword
        arguments for a generate() call, whose result is returned as "sequences"; sequence_bias
        comes as a list of [token ids, bias] pairs, JSON having no tuple keys), generation_config
        (with generate, where the checkpoint has a generation_config.json: that file's dict, whose
        settings generate() starts from, as transformers' from_pretrained does) and, for golden
        cases, case_id (which the outputs adapter uses to find a file). Past key/values arrive as
        inputs named past.<layer>.key and past.<layer>.value, [B, H, P, D]. Returns named outputs:
        logits, loss, start_logits, end_logits, last_hidden_state, pooler_output, hidden_states.N,
        attentions.N. With options["return_tuple"], returns {"tuple": <the upstream
        return_dict=False tuple>}. Raises Unsupported for what it does not implement; any other
        exception is an error result.
        """
        ...

    # Optional: ``capabilities``, a conformance.capabilities.Capabilities (or the same dict as
    # capabilities.json) saying which outputs, tasks, profiles, inputs and compute dtype it
    # provides;
    # only those are requested and compared, and the rest is reported per case as not checked.
    # Optional: ``target``, {"kind": "cpu" | "gpu", "device": ...}, for the report.
    # Optional: ``check_available()`` raises ValueError (with what is missing) when the
    # implementation
    # cannot run on this machine; the runner calls it once, before any check, and prints that error.
