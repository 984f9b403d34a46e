"""Streamers: what generate(streamer=) hands its tokens to as they are made, in transformers'
protocol (BaseStreamer): put() with the prompt [B, S] before the first forward pass, then with
each step's new tokens [B] (prompt lookup: each pass's, [1, n]), and end() once the last is made.

TextStreamer writes one row's text as it comes, the way the command line's ``generate`` prints
it. Anything else with put() and end() works too (a queue for another thread, a progress bar)."""

from __future__ import annotations

import sys

import numpy as np

INCOMPLETE = "\ufffd"  # what a tokenizer decodes the first bytes of a character to, alone


class TextStreamer:
    """Writes a one-row generate() call's text to ``file`` (standard output by default) as its
    tokens come: the prompt with the first new tokens (unless ``skip_prompt``), then each
    token's text, and a newline at the end. ``tokenizer``: a reference.Tokenizer, or anything
    whose decode(ids, skip_special_tokens=) gives text (a transformers tokenizer).

    It decodes the whole text so far and writes what is new, so that spacing comes out as the
    tokenizer joins the tokens (WordPiece's spaces, BPE's leading ones); with skip_prompt the
    prompt is decoded but not written, so the first word after it is spaced as in the whole
    text. A byte-level vocabulary spells some characters over several tokens, and the first of
    them alone decode to U+FFFD: that waits until its character is whole (or the end comes),
    instead of being written and then replaced. After end() it takes the next call's prompt."""

    def __init__(self, tokenizer, skip_prompt=False, file=None, skip_special_tokens=True):
        if not callable(getattr(tokenizer, "decode", None)):
            raise TypeError(
                f"tokenizer must have a decode(ids) method, got {type(tokenizer).__name__}"
            )
        self.tokenizer = tokenizer
        self.skip_prompt = skip_prompt
        self.file = file
        self.skip_special_tokens = skip_special_tokens
        self.tokens = None  # the prompt's and the new tokens, from the prompt's put() on
        self.shown = ""  # the text written so far (with skip_prompt: the prompt's, as if written)

    def put(self, value):
        value = np.asarray(value)
        if value.ndim == 2:  # the prompt [B, S], or a prompt lookup pass's tokens [1, n]
            rows = value.shape[0]
        else:  # a step's tokens [B], one a row (a prompt given as one row of ids too)
            rows = 1 if value.ndim == 1 and self.tokens is None else len(value.reshape(-1))
        if value.ndim not in (1, 2) or rows != 1:
            raise ValueError(
                f"TextStreamer writes one row's text; got tokens of shape {value.shape} (generate()"
                " a prompt at a time, with num_return_sequences 1)"
            )
        if self.tokens is None:  # the prompt: written with the first new tokens
            self.tokens = value.reshape(-1).tolist()
            if self.skip_prompt:
                self.shown = self._text().rstrip(INCOMPLETE)
            return
        self.tokens += value.reshape(-1).tolist()
        self._write(self._text().rstrip(INCOMPLETE))

    def end(self):
        if self.tokens is not None:
            self._write(self._text())
            self._out().write("\n")
            self._out().flush()
        self.tokens, self.shown = None, ""

    def _text(self):
        return self.tokenizer.decode(self.tokens, skip_special_tokens=self.skip_special_tokens)

    def _out(self):  # looked up at each write, so that a redirected sys.stdout is followed
        return sys.stdout if self.file is None else self.file

    def _write(self, text):
        if len(text) > len(self.shown):
            self._out().write(text[len(self.shown) :])
            self._out().flush()
            self.shown = text
