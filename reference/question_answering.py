"""Extractive question answering over a context of any length, as transformers 4.37.2's
question-answering pipeline does it with a fast tokenizer (question first, padding on the right).

A context longer than a window is cut into windows of at most ``max_seq_len`` tokens, question
included, each overlapping the one before by ``doc_stride`` tokens (the tokenizers library's
truncation with a stride, what the pipeline asks of it). Each window runs through the model alone
and is scored alone:

1. tokens that cannot be part of an answer (the question's, special tokens, padding) get the start
   and end logit -10000, all but the first token (<s> / [CLS], which a model trained on SQuAD 2.0
   points at when there is no answer);
2. a softmax over the window gives start and end probabilities; the first token's pair is the
   window's "no answer" score, and then its probabilities are set to 0;
3. a span (s, e) with s <= e < s + max_answer_len scores p_start[s] * p_end[e]; the window's
   top_k spans are kept where both ends are context tokens.

The answers of all windows are ranked by score (earlier windows first among equal scores), with
the lowest "no answer" score over the windows as an answer "" where ``handle_impossible_answer``,
and the best top_k returned. Scores are probabilities within one window, not over the whole
context: two windows' answers are compared by them all the same, as upstream does.

An answer's characters are those of the words its first and last tokens fall in
(``align_to_words``), or of the tokens alone. Upstream unmasks every token that is the first
token's id, so a "<s>" typed into the question can be answered, with the question's character
offsets (the answer then is the context's slice there, often ""); this follows it."""

from __future__ import annotations

import numpy as np

MASKED_LOGIT = np.float32(-10000.0)  # what tokens outside the context score before the softmax
UPSTREAM_MAX_SEQ_LEN = 384  # the pipeline's window, unless the tokenizer's limit is smaller


def answer_question(
    model,
    tokenizer,
    question,
    context,
    top_k=1,
    max_seq_len=None,
    doc_stride=None,
    max_answer_len=15,
    handle_impossible_answer=False,
    align_to_words=True,
    model_max_length=None,
):
    """The ``top_k`` best answers to ``question`` in ``context``, best first: dicts of "score"
    (float), "start" and "end" (character offsets in context) and "answer" (the text between).

    ``model``: a question-answering model (start_logits and end_logits); ``tokenizer``: a
    reference.Tokenizer whose pair encoding is question then context. ``max_seq_len`` defaults to
    384, or ``model_max_length`` (the tokenizer's limit, tokenizer_config.json's) where smaller;
    ``doc_stride`` to half of max_seq_len, at most 128."""
    _check_text(question, "question")
    _check_text(context, "context")
    max_seq_len, doc_stride = window_settings(
        top_k, max_seq_len, doc_stride, max_answer_len, model_max_length
    )
    windows = context_windows(tokenizer, question, context, max_seq_len, doc_stride)
    if "cls_token" in tokenizer.special_tokens:  # the config's, as upstream's cls_token_id
        cls_id = tokenizer.special_token_id("cls_token")
    else:  # no config: the template's first token where it is a special one (<s>, [CLS])
        cls_id = windows[0].ids[0] if windows[0].special_tokens_mask[0] else None
    answers, no_answer = [], 1e6
    for window, (start_logits, end_logits) in zip(windows, _span_logits(model, windows)):
        allowed = np.array([s == 1 for s in window.sequence_ids])
        if cls_id is not None:
            allowed |= np.array(window.ids) == cls_id
        p_start = _probabilities(start_logits, allowed)
        p_end = _probabilities(end_logits, allowed)
        no_answer = min(no_answer, float(p_start[0] * p_end[0]))
        p_start[0] = p_end[0] = 0.0
        for s, e, score in best_spans(p_start, p_end, allowed, top_k, max_answer_len):
            first, last = _characters(window, s, e, align_to_words)
            answers.append(
                {"score": float(score), "start": first, "end": last, "answer": context[first:last]}
            )
    if handle_impossible_answer:
        answers.append({"score": no_answer, "start": 0, "end": 0, "answer": ""})
    return sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]


def window_settings(top_k, max_seq_len, doc_stride, max_answer_len, model_max_length=None):
    """answer_question's settings checked, and its window and stride with their defaults."""
    if max_seq_len is None:
        max_seq_len = min(model_max_length or UPSTREAM_MAX_SEQ_LEN, UPSTREAM_MAX_SEQ_LEN)
    if doc_stride is None and _is_count(max_seq_len, 1):
        doc_stride = min(max_seq_len // 2, 128)
    for name, value, least in (
        ("top_k", top_k, 1),
        ("max_answer_len", max_answer_len, 1),
        ("max_seq_len", max_seq_len, 1),
        ("doc_stride", doc_stride, 0),
    ):
        if not _is_count(value, least):
            raise ValueError(f"{name} must be an integer of at least {least}, got {value!r}")
    if doc_stride > max_seq_len:
        raise ValueError(f"doc_stride ({doc_stride}) is larger than max_seq_len ({max_seq_len})")
    return max_seq_len, doc_stride


def context_windows(tokenizer, question, context, max_seq_len, doc_stride):
    """The encodings (tokenizers.Encoding) of question with each window of context: the first and
    then the overflowing ones, ``doc_stride`` context tokens shared by neighbours."""
    with tokenizer.bare() as backend:
        # tokenizers cannot cut a context into windows with room for fewer context tokens than
        # the stride: it raises, returns too long a window, or panics; refused here instead
        asked = len(backend.encode(question, add_special_tokens=False).ids)
        given = len(backend.encode(context, add_special_tokens=False).ids)
        specials = backend.num_special_tokens_to_add(True)
        room = max_seq_len - asked - specials
        if asked + given + specials > max_seq_len and room <= doc_stride:
            raise ValueError(
                f"a window of {max_seq_len} tokens holds the question's {asked} and {specials}"
                f" special tokens, which leaves {max(room, 0)} for the context: it must leave more"
                f" than doc_stride ({doc_stride}); raise max_seq_len, lower doc_stride or shorten"
                " the question"
            )
        truncate(backend, max_seq_len, doc_stride, strategy="only_second")
        first = backend.encode(question, context)
    return [first] + list(first.overflowing)


def truncate(backend, max_length, stride, **options):
    """The backend's truncation set, its own refusal (a stride too close to the window) given
    as a ValueError that says so."""
    try:
        backend.enable_truncation(max_length, stride=stride, **options)
    except Exception as e:  # noqa: BLE001 - tokenizers raises bare Exception types
        raise ValueError(
            f"a stride of {stride} tokens is too large for windows of {max_length}: {e}"
        ) from None


def _span_logits(model, windows):  # -> each window's (start_logits, end_logits), [S] float32
    """Windows of one length run as a batch (all but the last are max_seq_len long); none is
    padded, as upstream runs each alone."""
    logits = [None] * len(windows)
    for length in sorted({len(w.ids) for w in windows}):
        rows = [i for i, w in enumerate(windows) if len(w.ids) == length]
        ids = np.array([windows[i].ids for i in rows], dtype=np.int64)
        out = model(ids, attention_mask=np.ones_like(ids))
        for k, i in enumerate(rows):
            logits[i] = (np.asarray(out.start_logits[k]), np.asarray(out.end_logits[k]))
    return logits


def _probabilities(logits, allowed):  # [S] logits, [S] bool -> [S] float32
    masked = np.where(allowed, logits.astype(np.float32), MASKED_LOGIT)
    e = np.exp(masked - masked.max())
    return e / e.sum()


def best_spans(p_start, p_end, allowed, top_k, max_answer_len):
    """The ``top_k`` spans (s, e, score) of one window by p_start[s] * p_end[e], over
    s <= e < s + max_answer_len, best first, then those whose both ends may be in an answer
    (upstream counts position 0 among those whatever it is: a quirk of how it lists them).
    Spans of score 0 fill the top_k where fewer score more, in numpy's partition order."""
    scores = np.tril(np.triu(np.outer(p_start, p_end)), max_answer_len - 1)
    flat = scores.reshape(-1)
    if top_k == 1:
        order = np.array([np.argmax(flat)])
    elif flat.size < top_k:
        order = np.argsort(-flat)
    else:
        candidates = np.argpartition(-flat, top_k)[:top_k]
        order = candidates[np.argsort(-flat[candidates])]
    starts, ends = np.unravel_index(order, scores.shape)
    ok = allowed.copy()
    ok[0] = True
    keep = ok[starts] & ok[ends]
    return [(int(s), int(e), scores[s, e]) for s, e in zip(starts[keep], ends[keep])]


def _characters(window, s, e, align_to_words):  # -> the answer's [first, last) in context
    if align_to_words:
        words = window.token_to_word(s), window.token_to_word(e)
        if None not in words:
            first = window.word_to_chars(words[0], sequence_index=1)
            last = window.word_to_chars(words[1], sequence_index=1)
            if first is not None and last is not None:
                return first[0], last[1]
    return window.offsets[s][0], window.offsets[e][1]


def _is_count(value, least):
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= least


def _check_text(value, name):
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} is empty")
