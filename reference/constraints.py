"""Word constraints for constrained beam search, kept as transformers 4.37.2 keeps them
(generate(force_words_ids=...) or generate(constraints=[...])).

A PhrasalConstraint is a run of tokens the output must contain; a DisjunctiveConstraint is a set of
runs of which any one will do, held as a prefix tree. A ConstraintState reads a sequence token by
token, prompt included, and keeps for a list of constraints those completed, the one in progress
(at most one at a time) and those still pending. Its bank, completed runs times the longest run
plus the progress of the run under way, is what constrained beam search ranks beams by before their
scores (choose_beams).

Upstream's quirks, kept because they change which beams win:
- a token that breaks the run in progress is not tried as the start of another, so "a a b" does
  not complete the phrase "a b"; the broken constraint goes to the end of the pending list;
- the prompt's tokens count: a prompt that holds a forced word has met it;
- a stateful copy of a disjunctive constraint shares its prefix list with the original, so two
  alternatives tried one after the other from one state (choose_beams) see the first one's token
  still in place, and the second usually breaks off.
"""

from __future__ import annotations

import numpy as np

from .inputs import is_integer


class Constraint:
    """What constrained beam search asks of a constraint (transformers' Constraint interface).
    seqlen: its longest run of tokens; completed: whether it is met. advance() -> the token (or a
    list of tokens) that takes it further, None when met; does_advance(token); update(token) ->
    (stepped, completed, reset); reset(); remaining() -> tokens still to go; copy(stateful)."""

    seqlen: int
    completed: bool = False


class PhrasalConstraint(Constraint):
    """One run of token ids that must appear, in order and unbroken."""

    def __init__(self, token_ids):
        self.token_ids = _run(token_ids, "a phrasal constraint's token_ids")
        self.seqlen = len(self.token_ids)
        self.matched = 0  # tokens of the run written so far
        self.completed = False

    def advance(self):
        return None if self.completed else self.token_ids[self.matched]

    def does_advance(self, token):
        return not self.completed and token == self.token_ids[self.matched]

    def update(self, token):
        if not self.does_advance(token):
            self.reset()
            return False, False, True
        self.matched += 1
        self.completed = self.matched == self.seqlen
        return True, self.completed, False

    def reset(self):
        self.matched, self.completed = 0, False

    def remaining(self):
        return self.seqlen - self.matched

    def copy(self, stateful=False):
        new = PhrasalConstraint(self.token_ids)
        if stateful:
            new.matched, new.completed = self.matched, self.completed
        return new


class DisjunctiveConstraint(Constraint):
    """Any one of several runs of token ids. No run may be the start of another (nor a
    duplicate): the prefix tree could not tell where it ends."""

    def __init__(self, nested_token_ids):
        what = "a disjunctive constraint's nested_token_ids"
        if not isinstance(nested_token_ids, (list, tuple)) or not nested_token_ids:
            raise ValueError(f"{what} must be a non-empty list of runs, got {nested_token_ids!r}")
        self.token_ids = [_run(run, what) for run in nested_token_ids]
        self.tree = {}  # token -> subtree; an empty subtree ends a run
        for run in self.token_ids:
            node = self.tree
            for token in run:
                node = node.setdefault(token, {})
        if _leaves(self.tree) != len(self.token_ids):
            raise ValueError(
                "a disjunctive constraint's runs may not be the start of one another (nor"
                f" repeat), got {self.token_ids}"
            )
        self.seqlen = max(len(run) for run in self.token_ids)
        self.prefix = []  # the tokens of a run written so far
        self.completed = False

    def _next(self):  # the tokens that continue self.prefix
        node = self.tree
        for token in self.prefix:
            node = node[token]
        return list(node)

    def advance(self):
        return self._next() or None

    def does_advance(self, token):
        return token in self._next()

    def update(self, token):
        stepped = self.does_advance(token)
        if stepped:
            self.prefix.append(token)  # in place: a stateful copy sees it too (upstream's)
        else:
            self.reset()
        self.completed = not self._next()
        return stepped, self.completed, not stepped

    def reset(self):
        self.prefix, self.completed = [], False

    def remaining(self):
        return 0 if self.completed else self.seqlen - len(self.prefix)

    def copy(self, stateful=False):
        new = DisjunctiveConstraint(self.token_ids)
        if stateful:
            new.prefix, new.completed = self.prefix, self.completed  # the same list, as upstream
        return new


def _run(tokens, what):  # a non-empty list of token ids, as Python ints
    if (
        not isinstance(tokens, (list, tuple))
        or not tokens
        or not all(is_integer(t) and t >= 0 for t in tokens)
    ):
        raise ValueError(f"{what} must be a non-empty list of token ids, got {tokens!r}")
    return [int(t) for t in tokens]


def _leaves(tree):
    return sum(_leaves(sub) for sub in tree.values()) if tree else 1


class ConstraintState:
    """Where one sequence stands on a list of constraints (transformers' ConstraintListState)."""

    def __init__(self, constraints):
        self.constraints = constraints
        self.longest = max(c.seqlen for c in constraints)
        self.start()

    def start(self):
        self.complete, self.current, self.completed = [], None, False
        self.pending = [c.copy() for c in self.constraints]

    def bank(self):
        """Progress as constrained beam search ranks it: each completed constraint is worth the
        longest run; the one in progress, the tokens of it written (counted from the longest)."""
        under_way = 0 if self.current is None else self.longest - self.current.remaining()
        return len(self.complete) * self.longest + under_way

    def advance(self):
        """The tokens that would make progress: the next of the run in progress, else the first
        of every pending constraint in order; None when there are none."""
        tokens = []
        for c in [self.current] if self.current is not None else self.pending:
            step = c.advance()
            tokens += step if isinstance(step, list) else [] if step is None else [step]
        return tokens or None

    def read(self, tokens):
        """Starts over and reads ``tokens`` (a whole sequence, prompt included)."""
        self.start()
        for token in tokens:
            self.add(token)
            if self.completed:
                break
        return self

    def add(self, token):
        if self.completed:
            return
        if self.current is not None:  # the run in progress takes the token, or breaks
            _, complete, broke = self.current.update(token)
            if broke:  # to the end of the pending list; the token is not offered to the others
                self.pending.append(self.current.copy())
                self.current = None
            elif complete:
                self.complete.append(self.current)
                self.current = None
                self.completed = not self.pending
            return
        for i, c in enumerate(self.pending):  # the first pending constraint the token starts
            if c.does_advance(token):
                _, complete, _ = c.update(token)
                if complete:
                    self.complete.append(c)
                else:
                    self.current = c
                del self.pending[i]
                self.completed = not self.pending and self.current is None
                return

    def copy(self):  # stateful: its progress too (a disjunctive run's prefix shared, as upstream)
        new = ConstraintState(self.constraints)
        new.complete = [c.copy(stateful=True) for c in self.complete]
        new.current = None if self.current is None else self.current.copy(stateful=True)
        new.pending = [c.copy() for c in self.pending]
        return new


def completes(constraints, tokens):
    """Whether ``tokens`` (a whole sequence) meets every constraint (true where there are
    none)."""
    return not constraints or ConstraintState(constraints).read(tokens).completed


def choose_beams(constraints, rows, vocab_scores, scores, tokens, beams):
    """One prompt's step of constrained beam search (transformers 4.37.2's
    step_sentence_constraint). rows [N, T]: its N beams so far; vocab_scores [N, V]: each beam's
    sum plus each next token's processed log-probability; scores, tokens, beams [N]: the N best
    candidates that plain beam search chose (beams indexing rows).

    Every beam that has not met its constraints also offers each token that would advance them
    (a candidate unless it is a sequence already offered). All candidates are ranked by bank
    * 100 + score (float32, as upstream's), then taken round-robin over the banks in that order:
    the best of each bank, then the second of each, and so on. Returns the N taken, (scores,
    tokens, beams). Where no beam offered anything, the plain choice stands."""
    N = len(rows)
    offered = [rows[b].tolist() + [int(t)] for b, t in zip(beams, tokens)]
    banks = [ConstraintState(constraints).read(seq).bank() for seq in offered]
    more_scores, more_tokens, more_beams, more_states = [], [], [], []
    for b in range(N):
        state = ConstraintState(constraints).read(rows[b].tolist())
        if state.completed:
            continue
        for token in state.advance() or []:  # (a constraint of the caller's may offer none)
            new = state.copy()
            new.add(token)
            seq = rows[b].tolist() + [token]
            if seq not in offered:
                offered.append(seq)
                more_scores.append(vocab_scores[b, token])
                more_tokens.append(token)
                more_beams.append(b)
                more_states.append(new)
    if not more_tokens:
        return scores, tokens, beams
    banks = np.array(banks + [s.bank() for s in more_states], np.int64)  # read after every add
    all_scores = np.concatenate([scores, np.array(more_scores, np.float32)]).astype(np.float32)
    ranked = np.argsort(-((banks * 100).astype(np.float32) + all_scores), kind="stable")
    turn, run, previous = np.empty(len(ranked), np.int64), -1, None
    for i, bank in enumerate(banks[ranked]):  # the candidate's place within its bank's run
        run = run + 1 if bank == previous else 0
        turn[i], previous = run, bank
    taken = ranked[np.argsort(turn, kind="stable")][:N]
    all_tokens = np.concatenate([tokens, np.array(more_tokens, np.int64)])
    all_beams = np.concatenate([beams, np.array(more_beams, np.int64)])
    return all_scores[taken], all_tokens[taken], all_beams[taken]


def constraints_from(force_words_ids, constraints, vocab_size):
    """The constraints a generate() call runs with: ``constraints`` (Constraint objects) first,
    then one for each entry of ``force_words_ids``, a list of token ids (a phrase) or a list of
    such lists (any one of them). Refuses a malformed entry or a token outside the vocabulary."""
    out = []
    if constraints is not None:
        if not isinstance(constraints, (list, tuple)) or not constraints:
            raise ValueError(f"constraints must be a non-empty list, got {constraints!r}")
        for c in constraints:
            if not isinstance(c, Constraint):
                raise TypeError(
                    "constraints must be Constraint objects (PhrasalConstraint,"
                    f" DisjunctiveConstraint from reference.constraints), got {c!r}"
                )
        out += list(constraints)
    if force_words_ids is None:
        return out
    if not isinstance(force_words_ids, (list, tuple)) or not force_words_ids:
        raise ValueError(
            "force_words_ids must be a non-empty list of phrases (each a list of token ids) or of"
            f" lists of alternative phrases, got {force_words_ids!r}"
        )
    what = "each phrase of force_words_ids"
    for word in force_words_ids:
        nested = isinstance(word, (list, tuple)) and word and isinstance(word[0], (list, tuple))
        runs = [_run(run, what) for run in (word if nested else [word])]
        try:
            out.append(DisjunctiveConstraint(runs) if nested else PhrasalConstraint(runs[0]))
        except ValueError as e:
            raise ValueError(f"force_words_ids: {e}") from None
    for c in out:
        for run in getattr(c, "token_ids", []):  # a Constraint of the caller's own may have none
            for t in run if isinstance(run, list) else [run]:
                if t >= vocab_size:
                    raise ValueError(
                        f"force_words_ids or constraints: token {t} is outside the vocabulary"
                        f" [0, {vocab_size})"
                    )
    return out
