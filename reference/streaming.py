"""Streamers: what generate(streamer=) hands its tokens to as they are made, in transformers'
protocol (BaseStreamer): put() with the prompt [B, S] before the first forward pass, then with
each step's new tokens [B] (prompt lookup: each pass's, [1, n]), and end() once the last is made.

TextStreamer writes one row's text as it comes, the way the command line's ``generate`` prints
it. Anything else with put() and end() works too (a queue for another thread, a progress bar)."""

from __future__ import annotations

import sys

import numpy as np

INCOMPLETE = "\ufffd"  # what a tokenizer decodes the first bytes of a character to, alone
MAX_CHARACTER_TOKENS = 4  # UTF-8 spells a character in at most four bytes


class TextStreamer:
    """Writes a one-row generate() call's text to ``file`` (standard output by default) as its
    tokens come: the prompt with the first new tokens (unless ``skip_prompt``), then each
    token's text, and a newline at the end. ``tokenizer``: a reference.Tokenizer, or anything
    whose decode(ids, skip_special_tokens=) gives text (a transformers tokenizer).

    Each token's text is what it adds to the last few tokens' (the window since the last write):
    spacing comes out as the tokenizer joins the tokens (WordPiece's spaces and merges, BPE's
    leading ones), and a token costs a decode of a few tokens, not of the whole text. With
    skip_prompt the prompt is decoded but not written, so the first word after it is spaced as
    in the whole text. A byte-level vocabulary spells some characters over several tokens, and
    the first of them alone decode to U+FFFD: that waits until its character is whole (or the
    end comes), instead of being written and then replaced. After end() it takes the next
    call's prompt."""

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
        self._reset()

    def _reset(self):
        # tokens[:done] are written (with skip_prompt: the prompt, as if written), and the text
        # of tokens[start:done] is ``before``: a token's text is what it adds to that
        self.start, self.done, self.before = 0, 0, ""

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
            if self.skip_prompt:  # as if written, but for a last character not yet whole
                self.done = len(self.tokens)
                self.before = self._decode(0, self.done)
                for _ in range(MAX_CHARACTER_TOKENS):
                    if self.done == 0 or not self.before.endswith(INCOMPLETE):
                        break
                    self.done -= 1
                    self.before = self._decode(0, self.done)
            return
        self.tokens += value.reshape(-1).tolist()
        self._write(final=False)

    def end(self):
        if self.tokens is not None:
            self._write(final=True)
            self._out().write("\n")
            self._out().flush()
        self.tokens = None
        self._reset()

    def _decode(self, start, stop=None):
        window = self.tokens[start:stop]
        return self.tokenizer.decode(window, skip_special_tokens=self.skip_special_tokens)

    def _out(self):  # looked up at each write, so that a redirected sys.stdout is followed
        return sys.stdout if self.file is None else self.file

    def _write(self, final):
        """Writes what the tokens since ``done`` add to the window's text, unless that ends in
        an unfinished character (and this is not the end). Then the window moves on to start
        at those tokens, unless their text alone is empty (special tokens skipped, a lone
        space a tokenizer strips at the start of a text): a window's first visible token is
        decoded as a text's first, without the space that joins it to what came before."""
        if self.done == len(self.tokens):
            return
        text = self._decode(self.start)
        if text.endswith(INCOMPLETE) and not final:
            return
        if len(text) > len(self.before):
            self._out().write(text[len(self.before) :])
            self._out().flush()
        since = self._decode(self.done)
        if since:
            self.start, self.before = self.done, since
        else:
            self.before = text
        self.done = len(self.tokens)
