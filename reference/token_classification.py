"""Named entities from a token-classification model, as transformers 4.37.2's token-classification
("ner") pipeline finds them with a fast tokenizer.

1. The text is tokenized (cut at ``model_max_length`` tokens where one is given; with ``stride``,
   read in windows of that many tokens, each sharing ``stride`` tokens with the one before) and
   each window runs through the model alone.
2. Each token that is not a special token gets a softmax over the labels. A token continues a
   word when its vocabulary marks continuations (WordPiece's "##") and its text is shorter than
   the token, or, without such a mark, when neither it nor the character before it is a space;
   an unknown token ([UNK]) starts a word and is shown as its text.
3. ``aggregation``:
   - "none": every token with its best label and that label's probability (and its index);
   - "simple": those tokens, then grouped;
   - "first", "max", "average": the tokens of a word take one label first (the first token's
     best; the best of the token with the highest probability; the best of the mean
     probabilities), then words are grouped.
   Grouping joins neighbours of the same tag (B-PER, I-PER and PER are tag PER) unless the later
   one says B-; a group scores the mean of its members' scores.
4. Entities labelled with ``ignore_labels`` (default "O") are dropped. Where windows overlap,
   entities that overlap are settled by length, then by score.

Each entity is a dict: "entity" (aggregation "none") or "entity_group", "score", "word" (the
tokenizer's decoder joining its tokens), "start" and "end" (character offsets in the text), and
"index" (aggregation "none": the token's position in its window)."""

from __future__ import annotations

import numpy as np

from .question_answering import truncate

AGGREGATIONS = ("none", "simple", "first", "average", "max")


def find_entities(
    model,
    tokenizer,
    text,
    aggregation="none",
    ignore_labels=("O",),
    stride=None,
    model_max_length=None,
    labels=None,
):
    """The entities of ``text`` (see the module's description), in the order of the text.

    ``model``: a token-classification model (logits [1, S, labels]); ``tokenizer``: a
    reference.Tokenizer; ``labels``: the label names by id (default: the model's config.id2label,
    else LABEL_i); ``model_max_length``: tokens a window (tokenizer_config.json's; None: the
    whole text at once)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    if aggregation not in AGGREGATIONS:
        raise ValueError(
            f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}"
        )
    if stride is not None:
        if aggregation == "none":
            raise ValueError(
                "stride reads the text in windows, whose overlapping tokens only an aggregation"
                " can settle: choose simple, first, average or max"
            )
        if model_max_length is None:
            raise ValueError("stride needs model_max_length: the window it strides over")
        if not (isinstance(stride, (int, np.integer)) and 0 <= stride < model_max_length):
            raise ValueError(
                f"stride must be an integer in [0, model_max_length {model_max_length}), got"
                f" {stride!r}"
            )
    labels = label_names(model.config, labels)
    backend = tokenizer.backend
    windows = _windows(tokenizer, text, model_max_length, stride)
    entities = []
    for window in windows:
        ids = np.array([window.ids], dtype=np.int64)
        logits = np.asarray(model(ids, attention_mask=np.ones_like(ids)).logits[0], np.float32)
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        scores = shifted / shifted.sum(axis=-1, keepdims=True)
        tokens = _tokens(tokenizer, text, window, scores)
        if aggregation in ("none", "simple"):
            found = [_token_entity(t, labels) for t in tokens]
        else:
            found = [_word_entity(backend, word, aggregation, labels) for word in _words(tokens)]
        if aggregation != "none":
            found = _groups(backend, found)
        entities += [
            e for e in found if e.get("entity", e.get("entity_group")) not in ignore_labels
        ]
    return _settle_overlaps(entities) if len(windows) > 1 else entities


def label_names(config, labels=None):
    """The label names by id: ``labels`` where given, else config.id2label, else LABEL_i."""
    if labels is not None:
        return {int(k): v for k, v in dict(labels).items()}
    names = {int(k): v for k, v in (getattr(config, "id2label", None) or {}).items()}
    count = getattr(config, "num_labels", None) or len(names)
    return {i: names.get(i, f"LABEL_{i}") for i in range(count)}


def _windows(tokenizer, text, model_max_length, stride):
    """The text's encodings: the first window, and with a stride the overflowing ones."""
    with tokenizer.bare() as backend:
        if model_max_length is not None:
            specials = backend.num_special_tokens_to_add(False)
            room = model_max_length - specials
            given = len(backend.encode(text, add_special_tokens=False).ids)
            if stride is not None and given + specials > model_max_length and room <= stride:
                raise ValueError(  # tokenizers would panic
                    f"a window of {model_max_length} tokens leaves {max(room, 0)} after its special"
                    f" tokens, which must be more than stride ({stride})"
                )
            truncate(backend, model_max_length, stride or 0)
        first = backend.encode(text)
    return [first] + (list(first.overflowing) if stride is not None else [])


def _tokens(tokenizer, text, window, scores):
    """The window's tokens other than special ones: dicts of word (the token's string), scores,
    start, end, index and whether it continues the word before."""
    backend = tokenizer.backend
    marked = getattr(backend.model, "continuing_subword_prefix", None)
    model_unknown = getattr(backend.model, "unk_token", None)
    unknown = tokenizer.special_token_id("unk_token", *[model_unknown] * bool(model_unknown))
    tokens = []
    for index, (token_id, special) in enumerate(zip(window.ids, window.special_tokens_mask)):
        if special:
            continue
        start, end = window.offsets[index]
        word, ref = backend.id_to_token(token_id), text[start:end]
        if marked:
            continues = len(word) != len(ref)
        else:
            continues = start > 0 and " " not in text[start - 1 : start + 1]
        if token_id == unknown:
            word, continues = ref, False
        tokens.append(
            {
                "word": word,
                "scores": scores[index],
                "start": start,
                "end": end,
                "index": index,
                "continues": continues,
            }
        )
    return tokens


def _token_entity(token, labels):
    best = int(token["scores"].argmax())
    return {
        "entity": labels[best],
        "score": token["scores"][best],
        "index": token["index"],
        "word": token["word"],
        "start": token["start"],
        "end": token["end"],
    }


def _words(tokens):  # tokens -> lists of the tokens of a word
    words = []
    for token in tokens:
        if words and token["continues"]:
            words[-1].append(token)
        else:
            words.append([token])
    return words


def _word_entity(backend, tokens, aggregation, labels):
    if aggregation == "first":
        scores = tokens[0]["scores"]
    elif aggregation == "max":  # the first token of the highest probability
        scores = max(tokens, key=lambda t: t["scores"].max())["scores"]
    else:  # average
        scores = np.nanmean(np.stack([t["scores"] for t in tokens]), axis=0)
    best = int(scores.argmax())
    return {
        "entity": labels[best],
        "score": scores[best],
        "word": backend.decoder.decode([t["word"] for t in tokens]),
        "start": tokens[0]["start"],
        "end": tokens[-1]["end"],
    }


def _tag(label):  # -> ("B" or "I", the entity type): "B-PER" -> B, PER; "PER" -> I, PER
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _groups(backend, entities):
    """Neighbours of one tag joined, a B- starting a new group."""
    groups = []
    for entity in entities:
        bi, tag = _tag(entity["entity"])
        if groups and bi != "B" and _tag(groups[-1][-1]["entity"])[1] == tag:
            groups[-1].append(entity)
        else:
            groups.append([entity])
    return [
        {
            "entity_group": group[0]["entity"].split("-", 1)[-1],
            "score": np.mean(np.nanmean([e["score"] for e in group])),
            "word": backend.decoder.decode([e["word"] for e in group]),
            "start": group[0]["start"],
            "end": group[-1]["end"],
        }
        for group in groups
    ]


def _settle_overlaps(entities):
    """Entities of overlapping windows, by start: of two that overlap the longer stays, or at
    equal length the higher score (the earlier at equal scores)."""
    if not entities:
        return entities
    entities = sorted(entities, key=lambda e: e["start"])
    kept, current = [], entities[0]
    for entity in entities:
        if current["start"] <= entity["start"] < current["end"]:
            length, current_length = (
                entity["end"] - entity["start"],
                current["end"] - current["start"],
            )
            if length > current_length or (
                length == current_length and entity["score"] > current["score"]
            ):
                current = entity
        else:
            kept.append(current)
            current = entity
    kept.append(current)
    return kept
