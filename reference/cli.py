"""Command line: ``python -m reference <command> --model PATH ...`` (also installed as
``mpnet-mpt``).

    inspect   config, parameter count, dtypes and the profile features that are on
    embed     sentence embeddings of texts or of a file of them (--input, --output .npy): batched by
              length, mean pooling and L2 normalisation, or what the checkpoint's
              sentence-transformers files say
    ner       named entities as transformers' token-classification pipeline: grouped by B-/I- tags,
              with scores and character offsets (--aggregation, --stride for a long text)
    fill-mask the likeliest tokens for each <mask> of a text, with the filled-in text
    classify  a text's (or a pair's) labels with their scores (sequence classification), or an NLI
              model's zero-shot scores for --candidate-labels
    qa        extractive question answering as transformers' pipeline: the best spans, their scores
              and character offsets; a long context is read in overlapping windows
    generate  MPT text generation, streamed (greedy unless --sample or the checkpoint says so)
    chat      an MPT conversation: a turn a line on stdin, each reply streamed; every call goes on
              from the cache the last one returned, so only a turn's own tokens run again
    explain   PNG pictures: MPNet's bucket map, MPT's ALiBi bias per head, an attention map

Every command takes --model, --backend numpy|numba|cuda, --profile and --json. Errors are one line
on stderr (exit status 2) unless --debug is given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from .checkpoint import read_config, read_generation_config, read_safetensors_header
from .generation import changed_settings, eos_list, generation_settings
from .progress import Progress
from .streaming import TextStreamer

DEFAULT_NEW_TOKENS = 32  # generate's --max-new-tokens where the checkpoint sets none


class CliError(Exception):
    """A problem the user can fix; printed as one line."""


def progress(message):
    """Status for long steps, on stderr so that --json output stays clean."""
    print(message, file=sys.stderr, flush=True)


def load(args, task):
    """from_pretrained, with a progress bar over the tensors as they are read."""
    from . import from_pretrained

    if args.backend == "numba":
        from .backends.numba_cpu import tune_process

        # process-wide settings for the numba kernels (its docstring says which)
        tune_process("decode" if task == "causal-lm" else "encode")
    started = time.perf_counter()
    with Progress(
        len(read_safetensors_header(args.model)),
        f"loading {os.path.basename(args.model.rstrip('/'))}",
    ) as bar:
        options = {  # the MPT-only options, passed only where they differ from the default
            name: getattr(args, name)
            for name in ("weight_storage", "kv_cache")
            if getattr(args, name, "fp32") != "fp32"
        }
        model = from_pretrained(
            args.model,
            task=task,
            profile=args.profile,
            backend=args.backend,
            on_tensor=bar.update,
            **options,
        )
    progress(
        f"loaded {args.model} ({task}, backend {args.backend}) in"
        f" {time.perf_counter() - started:.1f}s"
    )
    return model


def tokenizer(args):
    from .tokenizer import Tokenizer

    return Tokenizer(args.model)


# ------------------------------------------------------------------------------------- commands


def cmd_inspect(args):
    config = read_config(args.model)
    header = read_safetensors_header(args.model)
    dtypes = sorted({entry["dtype"] for entry in header.values()})
    count = sum(int(np.prod(entry["shape"], dtype=np.int64)) for entry in header.values())
    family = config.get("model_type")
    info = {
        "model_type": family,
        "architectures": config.get("architectures"),
        "parameters": count,
        "tensors": len(header),
        "dtypes": dtypes,
    }
    if family == "mpt":
        from .mpt_model import MPTConfig, resolve_features
        from .profiles import get_profile

        profile = get_profile("mpt", args.profile)
        c = MPTConfig.from_dict(config, profile)
        f = resolve_features(c, profile)
        from .loading import MATRIX_BYTES, weight_bytes
        from .mpt_model import param_shapes

        shapes = param_shapes(c, "causal-lm", profile.name)
        info.update(
            profile=profile.name,
            d_model=c.d_model,
            n_heads=c.n_heads,
            n_layers=c.n_layers,
            vocab_size=c.vocab_size,
            max_seq_len=c.max_seq_len,
            features={k: v for k, v in vars(f).items()},
            # what loading it for generation takes, by --weight-storage (the memory check's count)
            weight_bytes={storage: int(weight_bytes(shapes, storage)) for storage in MATRIX_BYTES},
            # what generate() starts from where it is not told: the settings away from the defaults
            generation=changed_settings(
                generation_settings(
                    config,
                    read_generation_config(args.model),
                    os.path.join(args.model, "generation_config.json"),
                    model_config=c,
                )
            ),
        )
    elif family == "mpnet":
        from .mpnet_model import MPNetConfig
        from .profiles import get_profile

        profile = get_profile("mpnet", args.profile)
        c = MPNetConfig.from_dict(config)
        info.update(
            profile=profile.name,
            hidden_size=c.hidden_size,
            num_heads=c.num_attention_heads,
            num_layers=c.num_hidden_layers,
            vocab_size=c.vocab_size,
            max_position_embeddings=c.max_position_embeddings,
            hidden_act=c.hidden_act,
            relative_buckets_used=profile.num_buckets(c),
            labels=c.id2label or None,
        )
    shown = dict(info)
    if "weight_bytes" in shown:  # bytes in the JSON, GiB on screen
        shown["weight_bytes"] = ", ".join(
            f"{storage} {byte_size(size)}" for storage, size in shown["weight_bytes"].items()
        )
    emit(args, info, "\n".join(f"{k}: {v}" for k, v in shown.items()))


def cmd_embed(args):
    from .embedding import (
        embed_tokens,
        iter_texts,
        line_count,
        lower_cases,
        max_seq_length,
        npy_rows,
        pad_id,
        pooling_rules,
        token_ids,
    )

    if bool(args.texts) == bool(args.input):
        raise CliError("embed takes texts on the command line or --input FILE, not both or neither")
    if args.input and not args.output:
        raise CliError("embed --input needs --output FILE.npy")
    if args.input and not os.path.exists(args.input):
        raise CliError(f"{args.input}: no such file")
    if args.input and not os.path.isfile(args.input):  # a pipe could not be read twice
        raise CliError(
            f"{args.input}: not a regular file (embed reads it twice: to count its texts, then to"
            " embed them)"
        )
    lines = line_count(args.input) if args.input else len(args.texts)  # a bound on the texts
    if not lines:
        raise CliError(f"{args.input}: no texts")
    model, tok = load(args, "base"), tokenizer(args)
    mode, normalise = pooling_rules(args.model)
    positions = getattr(model.config, "max_position_embeddings", None)  # MPNet; MPT has max_seq_len
    positions = positions if positions is not None else model.config.max_seq_len + 2
    max_length = args.max_length
    if max_length is None:
        max_length = max_seq_length(args.model, positions)
    width = getattr(model.config, "hidden_size", None) or model.config.d_model
    started = time.perf_counter()
    # a file's texts are read and tokenized a chunk at a time, and only their ids are kept
    texts = iter_texts(args.input, args.field) if args.input else args.texts
    with Progress(lines, "tokenizing", force=False) as bar:
        ids, starts = token_ids(tok.backend, texts, max_length, bar.update, lower_cases(args.model))
    count = len(starts) - 1
    if not count:
        raise CliError(f"{args.input}: no texts (every line blank)")
    with (
        Progress(count, "embedding", force=False) as bar,
        npy_rows(args.output, (count, width)) as (out, written),
    ):
        vectors = embed_tokens(
            model,
            ids,
            starts,
            pad_id(tok.backend),
            args.batch_size,
            mode,
            normalise,
            bar.update,
            out,
        )
    seconds = time.perf_counter() - started
    if args.output:
        info = {
            "written": written,
            "texts": count,
            "dims": width,
            "pooling": mode,
            "normalized": normalise,
            "max_length": max_length,
            "sentences_per_second": count / seconds,
        }
        emit(
            args,
            info,
            f"wrote {count} x {width} embeddings to {written} ({mode}"
            f" pooling{', L2-normalised' if normalise else ''}; {count / seconds:.1f}"
            " sentences/s)",
        )
        return
    data = {"pooling": mode, "normalized": normalise, "embeddings": vectors.tolist()}
    text = "\n".join(
        f"{t!r}: [{', '.join(f'{v:.4f}' for v in vec[:6])}, ...] ({len(vec)} dims)"
        for t, vec in zip(args.texts, vectors)
    )
    emit(args, data, text)


def token_limit(model, tok):
    """Tokens the model takes at once: its positions (MPNet's start at 2), or the checkpoint's
    tokenizer_config.json model_max_length (Tokenizer.model_max_length) where smaller."""
    positions = getattr(model.config, "max_position_embeddings", None)  # MPNet; MPT has max_seq_len
    limit = positions - 2 if positions is not None else model.config.max_seq_len
    return limit if tok.model_max_length is None else min(limit, tok.model_max_length)


def cmd_ner(args):
    from .token_classification import find_entities

    model, tok = load(args, "token-classification"), tokenizer(args)
    limit = token_limit(model, tok)
    if args.stride is None:
        count = len(tok.backend.encode(args.text).ids)
        if count > limit:
            raise CliError(
                f"the text is {count} tokens, more than the {limit} the model takes: give --stride"
                " N to read it in windows that share N tokens (transformers' pipeline would drop"
                " the rest)"
            )
    try:
        entities = find_entities(
            model,
            tok,
            args.text,
            aggregation=args.aggregation,
            ignore_labels=tuple(args.ignore_labels),
            stride=args.stride,
            model_max_length=limit,
        )
    except (TypeError, ValueError) as e:
        raise CliError(str(e)) from None
    entities = [{k: v.item() if hasattr(v, "item") else v for k, v in e.items()} for e in entities]
    lines = [
        f"{e['word']}\t{e.get('entity_group', e.get('entity'))}\t{e['score']:.3f}" for e in entities
    ]
    emit(args, {"entities": entities}, "\n".join(lines))


def cmd_fill_mask(args):
    from .mask_filling import fill_mask

    model, tok = load(args, "masked-lm"), tokenizer(args)
    try:
        rows = fill_mask(model, tok, args.text, top_k=args.top_k, targets=args.targets)
    except (TypeError, ValueError) as e:
        raise CliError(str(e)) from None
    lines = []
    for k, row in enumerate(rows):
        if len(rows) > 1:
            lines.append(f"mask {k + 1}:")
        lines += [f"{p['sequence']}\t{p['token_str']}\t{p['score']:.3f}" for p in row]
    emit(args, {"masks": rows}, "\n".join(lines))


def cmd_classify(args):
    from .text_classification import classify_text
    from .zero_shot_classification import classify_zero_shot

    model, tok = load(args, "sequence-classification"), tokenizer(args)
    try:
        if args.candidate_labels is not None:  # zero-shot, with an NLI model
            result = classify_zero_shot(
                model,
                tok,
                args.text,
                args.candidate_labels,
                hypothesis_template=args.template,
                multi_label=args.multi_label,
            )
            ranked = [{"label": k, "score": v} for k, v in zip(result["labels"], result["scores"])]
        else:
            ranked = classify_text(
                model,
                tok,
                args.text,
                args.pair,
                top_k=None if args.top_k == 0 else args.top_k,
                function_to_apply=args.function,
                model_max_length=token_limit(model, tok) if args.truncate else None,
            )
    except (TypeError, ValueError) as e:
        raise CliError(str(e)) from None
    emit(args, {"labels": ranked}, "\n".join(f"{r['label']}\t{r['score']:.4f}" for r in ranked))


def cmd_qa(args):
    from .question_answering import answer_question, window_settings

    settings = (args.top_k, args.max_seq_len, args.doc_stride, args.max_answer_len)
    try:  # before the model loads
        window_settings(*settings)
    except ValueError as e:
        raise CliError(str(e)) from None
    context = args.context
    if args.context_file is not None:
        try:
            with open(args.context_file, encoding="utf-8") as f:
                context = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise CliError(f"{args.context_file}: cannot be read as UTF-8 text ({e})") from None
    model, tok = load(args, "question-answering"), tokenizer(args)
    limit = token_limit(model, tok)
    try:
        answers = answer_question(
            model,
            tok,
            args.question,
            context,
            top_k=args.top_k,
            max_seq_len=args.max_seq_len,
            doc_stride=args.doc_stride,
            max_answer_len=args.max_answer_len,
            handle_impossible_answer=args.allow_no_answer,
            align_to_words=not args.token_offsets,
            model_max_length=limit,
        )
    except (TypeError, ValueError) as e:
        raise CliError(str(e)) from None
    lines = [
        f"{a['answer']!r} (score {a['score']:.3f}, characters {a['start']}-{a['end']})"
        for a in answers
    ]
    emit(args, {**answers[0], "answers": answers}, "\n".join(lines))


def decoding_options(args, model):
    """generate()'s keyword arguments from the command line's decoding flags (generate and chat),
    those not given left to the checkpoint's generation settings."""
    new = args.max_new_tokens
    if new is None:  # the checkpoint's max_new_tokens, else 32 (its max_length is not used here)
        new = model.generation_config.get("max_new_tokens")
        new = DEFAULT_NEW_TOKENS if new is None else new
    given = dict(  # what is not given on the command line comes from the checkpoint
        do_sample=args.sample,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        eos_token_id=args.eos_token_id,
        repetition_penalty=args.repetition_penalty,
        no_repeat_ngram_size=args.no_repeat_ngram_size,
        min_new_tokens=args.min_new_tokens,
        num_beams=getattr(args, "num_beams", None),
        guidance_scale=getattr(args, "guidance_scale", None),
        prompt_lookup_num_tokens=args.prompt_lookup,
    )
    if args.prompt_lookup is not None:
        given["use_cache"] = True  # prompt lookup runs over the cache (MPT's config leaves it off)
    return dict(
        max_new_tokens=new,
        seed=args.seed,
        num_return_sequences=1,  # one text is printed, whatever the checkpoint asks for
        **{name: value for name, value in given.items() if value is not None},
    )


def encoded(tok, text, what):  # -> the ids of text [1, N], without special tokens added
    ids = np.array([tok.backend.encode(text, add_special_tokens=False).ids], np.int64)
    if ids.shape[1] == 0:
        raise CliError(f"{what} produced no tokens")
    return ids


def cmd_generate(args):
    model, tok = load(args, "causal-lm"), tokenizer(args)
    ids = encoded(tok, args.prompt, "the prompt")
    options = decoding_options(args, model)
    new = options["max_new_tokens"]
    prompt = ids[0].tolist()
    if new == 0:  # the prompt alone (generate() itself, as transformers, would make one token)
        print(
            json.dumps({"prompt": args.prompt, "tokens": [], "text": ""})
            if args.json
            else tok.decode(prompt)
        )
        return
    beams = options.get("num_beams", model.generation_config["num_beams"])
    if args.force_word:
        if beams < 2:
            raise CliError("--force-word needs beam search: pass --num-beams 2 or more")
        options["force_words_ids"] = [spellings(tok, word) for word in args.force_word]
    if args.negative_prompt is not None:  # a row for each beam
        negative = encoded(tok, args.negative_prompt, "the negative prompt")
        options["negative_prompt_ids"] = np.repeat(negative, beams, axis=0)
    if beams > 1:  # beam search settles its text at the end: nothing to stream
        tokens = model.generate(ids, **options)[0, len(prompt) :].tolist()
        if not args.json:
            print(tok.decode(prompt + tokens))
    else:  # the text as it comes (with --json, a progress bar on stderr instead)
        streamer = TokenProgress(new) if args.json else TextStreamer(tok)
        tokens = model.generate(ids, streamer=streamer, **options)[0, len(prompt) :].tolist()
    if args.json:
        print(json.dumps({"prompt": args.prompt, "tokens": tokens, "text": tok.decode(tokens)}))


CHATML = ("<|im_start|>", "<|im_end|>")  # the turn markers of MPT-7B-chat's template (ChatML)


def chat_template(args, tok):  # -> "chatml" or "plain"
    """--template, else ChatML where the tokenizer has its markers as tokens, else plain."""
    has_markers = all(tok.backend.token_to_id(marker) is not None for marker in CHATML)
    template = args.template or ("chatml" if has_markers else "plain")
    if template == "chatml" and not has_markers:
        raise CliError(
            f"--template chatml needs the tokens {CHATML[0]} and {CHATML[1]}, which this"
            " tokenizer does not have"
        )
    if args.system is not None and template != "chatml":
        raise CliError("--system needs the chatml template (a system message in its markers)")
    return template


def turn_text(template, turn, first, closed, system=None):
    """The text a user's turn adds to the conversation: with ChatML, the turn in its markers and
    the assistant's opening (after the system message on the first turn, and after closing a
    reply that --max-new-tokens cut off); plain, the turn on a line of its own."""
    if template == "plain":
        return ("" if first else "\n") + turn + "\n"
    start, end = CHATML
    if first:
        head = "" if system is None else f"{start}system\n{system}{end}\n"
    else:
        head = ("" if closed else end) + "\n"
    return f"{head}{start}user\n{turn}{end}\n{start}assistant\n"


def chat_turns(stream, interactive):  # -> each line with text on it, as the user types it
    while True:
        if interactive:
            sys.stderr.write("> ")
            sys.stderr.flush()
        line = stream.readline()
        if not line:
            return
        line = line.rstrip("\r\n")
        if line.strip():
            yield line


def cmd_chat(args):
    model, tok = load(args, "causal-lm"), tokenizer(args)
    template = chat_template(args, tok)
    options = decoding_options(args, model)
    if options["max_new_tokens"] < 1:
        raise CliError("chat needs --max-new-tokens of 1 or more")
    eos_ids = eos_list(options.get("eos_token_id", model.generation_config.get("eos_token_id")))
    if template == "chatml":  # a reply ends at its closing marker
        eos_ids.append(tok.backend.token_to_id(CHATML[1]))
        options["eos_token_id"] = eos_ids
    seed = options.pop("seed")
    options.update(use_cache=True, return_dict_in_generate=True)  # the cache goes on to the next
    sequence, past, closed = np.zeros((1, 0), np.int64), None, True
    for index, turn in enumerate(chat_turns(sys.stdin, sys.stdin.isatty())):
        first = sequence.shape[1] == 0
        added = encoded(tok, turn_text(template, turn, first, closed, args.system), "the turn")
        text = np.concatenate([sequence, added], axis=1)
        limit = model.config.max_seq_len
        if text.shape[1] + options["max_new_tokens"] > limit:
            raise CliError(
                f"the conversation has grown to {text.shape[1]} tokens: with"
                f" {options['max_new_tokens']} new ones the text would pass the model's"
                f" max_seq_len {limit} (start again, or lower --max-new-tokens)"
            )
        out = model.generate(
            text,
            attention_mask=np.ones_like(text),  # every token is real (pad may be a real one)
            past_key_values=past,  # what the last turn's call cached: only the new tokens run
            seed=None if seed is None else seed + index,  # each turn draws anew
            streamer=(
                TokenProgress(options["max_new_tokens"])
                if args.json
                else TextStreamer(tok, skip_prompt=True)
            ),
            **options,
        )
        sequence, past = out.sequences, out.past_key_values
        reply = sequence[0, text.shape[1] :]
        closed = reply.size > 0 and int(reply[-1]) in eos_ids
        if args.json:
            record = {"turn": turn, "tokens": reply.tolist(), "text": tok.decode(reply)}
            print(json.dumps(record), flush=True)


def spellings(tok, word):
    """A word's token ids as force_words_ids takes them: as written and, unless it starts with a
    space, after one (a BPE vocabulary spells a word apart from the text's start with its space),
    any one of the two; one run where they coincide or one starts the other."""
    runs = [tok.backend.encode(w, add_special_tokens=False).ids for w in (word, " " + word)]
    if not runs[0]:
        raise CliError(f"--force-word {word!r} produced no tokens")
    a, b = runs
    if word.startswith(" ") or a == b[: len(a)] or b == a[: len(b)]:
        return a
    return [a, b]


class TokenProgress:
    """generate(streamer=) for --json, where the text is not streamed: a progress bar of the new
    tokens on stderr (drawn on a terminal only)."""

    def __init__(self, total):
        self.total, self.bar = total, None

    def put(self, tokens):
        if self.bar is None:  # the prompt comes first
            self.bar = Progress(self.total, "generating")
        else:
            self.bar.update(np.asarray(tokens).size)

    def end(self):
        if self.bar is not None:
            self.bar.close()


def cmd_explain(args):
    from . import explain

    for name in ("length", "heads"):
        if getattr(args, name) < 1:
            raise CliError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.what == "buckets":
        explain.bucket_map(args.out, args.length, args.num_buckets)
    elif args.what == "alibi":
        heads = args.heads
        if args.model:
            from .mpt_model import MPTConfig

            heads = MPTConfig.from_dict(read_config(args.model)).n_heads
        explain.alibi_map(args.out, heads, args.length)
    else:
        if not (args.model and args.text):
            raise CliError("explain attention needs --model and --text")
        family = read_config(args.model).get("model_type")
        model, tok = load(args, "base"), tokenizer(args)
        enc = tok.backend.encode(args.text, add_special_tokens=family == "mpnet")
        out = model(np.array([enc.ids]), output_attentions=True)
        if not 0 <= args.layer < len(out.attentions):
            raise CliError(f"--layer {args.layer} is outside 0..{len(out.attentions) - 1}")
        probs = out.attentions[args.layer][0]
        if not 0 <= args.head < probs.shape[0]:
            raise CliError(f"--head {args.head} is outside 0..{probs.shape[0] - 1}")
        explain.attention_map(args.out, probs, enc.tokens, args.layer, args.head)
    emit(args, {"written": args.out}, f"wrote {args.out}")


def byte_size(n):  # 1536 -> "1.50 KiB"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def emit(args, data, text):
    print(json.dumps(data) if args.json else text)


# ------------------------------------------------------------------------------------ the parser


def decoding_arguments(c):  # the decoding flags generate and chat share (decoding_options)
    c.add_argument(
        "--max-new-tokens",
        type=int,
        help=f"default: the checkpoint's max_new_tokens, else {DEFAULT_NEW_TOKENS}",
    )
    c.add_argument(
        "--sample",
        action=argparse.BooleanOptionalAction,
        help="sample instead of greedy decoding (default: the checkpoint's do_sample, else no)",
    )
    c.add_argument("--temperature", type=float, help="default: the checkpoint's, else 1.0")
    c.add_argument("--top-k", type=int, help="default: the checkpoint's, else 50 (0: off)")
    c.add_argument("--top-p", type=float, help="default: the checkpoint's, else 1.0")
    c.add_argument("--seed", type=int)
    c.add_argument(
        "--repetition-penalty",
        type=float,
        help="divide a seen token's positive score by this, multiply a negative one (transformers'"
        " rule; default: the checkpoint's, else 1.0: off)",
    )
    c.add_argument(
        "--no-repeat-ngram-size",
        type=int,
        help="no n-gram of this size twice (default: the checkpoint's, else 0: off)",
    )
    c.add_argument(
        "--prompt-lookup",
        type=int,
        metavar="N",
        help="prompt lookup decoding: guess the next N tokens from where the text's last two"
        " tokens appeared before, and keep those the model would write (the same text, several"
        " tokens a forward pass where it repeats itself; needs an eos id and no beams)",
    )
    c.add_argument(
        "--min-new-tokens",
        type=int,
        help="no eos before this many new tokens (default: the checkpoint's, else none)",
    )
    c.add_argument(
        "--eos-token-id", type=int, help="default: the checkpoint's eos_token_id (or ids)"
    )
    c.add_argument(
        "--weight-storage",
        choices=["fp32", "bf16", "q8"],
        default="fp32",
        help="with --backend numba: keep the matrices as bf16, or as q8 (int8 in blocks of 32)",
    )
    c.add_argument(
        "--kv-cache",
        choices=["fp32", "bf16"],
        default="fp32",
        help="keep keys and values as bf16 between tokens (numpy or numba): half the cache bytes",
    )


def parser():
    p = argparse.ArgumentParser(
        prog="python -m reference",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)

    def command(name, func, help_):
        c = sub.add_parser(name, help=help_)
        c.add_argument(
            "--model",
            required=True,
            help="a Hugging Face model directory (config.json, model.safetensors)",
        )
        c.add_argument("--backend", choices=["numpy", "numba", "cuda"], default="numpy")
        c.add_argument("--profile", help="semantics profile: pt or tf (MPNet), hf or mosaic (MPT)")
        c.add_argument("--json", action="store_true", help="machine-readable output")
        c.add_argument("--debug", action="store_true", help="show tracebacks")
        c.set_defaults(func=func)
        return c

    command("inspect", cmd_inspect, "describe a checkpoint")
    emb = command(
        "embed",
        cmd_embed,
        "sentence embeddings of texts, or of a file of them (one per line or JSONL)",
    )
    emb.add_argument("texts", nargs="*")
    emb.add_argument(
        "--input", help="a file of texts: one per line, or .jsonl (strings or objects with --field)"
    )
    emb.add_argument(
        "--field", default="text", help="the JSONL field holding the text (default: text)"
    )
    emb.add_argument(
        "--output",
        help="where --input's embeddings go: a .npy file, one row per text, in input order",
    )
    emb.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="at most this many texts per forward, batched by length (default 32)",
    )
    emb.add_argument(
        "--max-length",
        type=int,
        help=(
            "tokens per text, <s> and </s> included (default: sentence_bert_config.json, else the "
            "position table)"
        ),
    )
    ner = command("ner", cmd_ner, "find the named entities of a text")
    ner.add_argument("text")
    ner.add_argument(
        "--aggregation",
        choices=["none", "simple", "first", "average", "max"],
        default="simple",
        help="none: each token; simple: tokens grouped into entities; first, average, max: a word"
        " labelled by its first token, mean probabilities or most sure token, then grouped"
        " (default simple)",
    )
    ner.add_argument(
        "--ignore-labels",
        nargs="*",
        default=["O"],
        metavar="LABEL",
        help="labels left out (default O; none given: keep every label)",
    )
    ner.add_argument(
        "--stride",
        type=int,
        help="read a text longer than the model takes in windows sharing this many tokens",
    )
    qa = command("qa", cmd_qa, "answer a question from a context")
    qa.add_argument("--question", required=True)
    where = qa.add_mutually_exclusive_group(required=True)
    where.add_argument("--context", help="the text the answer is found in")
    where.add_argument("--context-file", help="a UTF-8 file holding it (a document of any length)")
    qa.add_argument(
        "--top-k", type=int, default=1, help="this many answers, best first (default 1)"
    )
    qa.add_argument(
        "--max-answer-len",
        "--max-answer-tokens",
        type=int,
        default=15,
        help="answers of at most this many tokens (default 15, as transformers' pipeline)",
    )
    qa.add_argument(
        "--max-seq-len",
        type=int,
        help="tokens a window, question included: a longer context is read in overlapping"
        " windows (default 384, or the model's limit where smaller)",
    )
    qa.add_argument(
        "--doc-stride",
        type=int,
        help="context tokens a window shares with the one before (default half a window, at"
        " most 128)",
    )
    qa.add_argument(
        "--allow-no-answer",
        action="store_true",
        help="the empty answer competes too, scored by the first token (SQuAD 2.0 models)",
    )
    qa.add_argument(
        "--token-offsets",
        action="store_true",
        help="an answer's characters are its tokens', not its words' (default: whole words)",
    )
    fill = command("fill-mask", cmd_fill_mask, "the likeliest tokens for the <mask>s of a text")
    fill.add_argument("text")
    fill.add_argument("--top-k", type=int, default=5, help="tokens a mask (default 5)")
    fill.add_argument("--targets", nargs="+", help="only these words (their first token)")
    cls = command("classify", cmd_classify, "the labels of a text, or of a pair of texts")
    cls.add_argument("text")
    cls.add_argument("--pair", help="the second text of a pair")
    cls.add_argument("--top-k", type=int, default=1, help="labels shown, best first (0: all)")
    cls.add_argument(
        "--function",
        choices=["sigmoid", "softmax", "none"],
        help="scores from the logits (default: sigmoid for multi-label or one label, else softmax)",
    )
    cls.add_argument(
        "--truncate", action="store_true", help="cut the text at the tokens the model takes"
    )
    cls.add_argument(
        "--candidate-labels",
        help="zero-shot with an NLI model: labels separated by commas, each scored by entailment",
    )
    cls.add_argument(
        "--template",
        default="This example is {}.",
        help="zero-shot: the hypothesis, {} standing for a label (default: This example is {}.)",
    )
    cls.add_argument(
        "--multi-label",
        action="store_true",
        help="zero-shot: each label scored alone (entailment against contradiction)",
    )
    gen = command("generate", cmd_generate, "generate text from a prompt (MPT)")
    gen.add_argument("--prompt", required=True)
    decoding_arguments(gen)
    gen.add_argument(
        "--num-beams",
        type=int,
        help="beam search with this many beams, printed when done (default: the checkpoint's,"
        " else 1: no beam search)",
    )
    gen.add_argument(
        "--guidance-scale",
        type=float,
        help="classifier-free guidance: how far to move away from the unconditional context"
        " (default: the checkpoint's, else none; 1: none)",
    )
    gen.add_argument(
        "--negative-prompt",
        metavar="TEXT",
        help="the unconditional context of --guidance-scale (default: the prompt's last token)",
    )
    gen.add_argument(
        "--force-word",
        action="append",
        metavar="TEXT",
        help="text the output must contain, at the start or after a space (repeatable;"
        " constrained beam search, so with --num-beams 2 or more)",
    )
    chat = command(
        "chat",
        cmd_chat,
        "a conversation (MPT): a turn a line on stdin, each reply streamed, the cache kept",
    )
    decoding_arguments(chat)
    chat.add_argument(
        "--template",
        choices=["chatml", "plain"],
        help="how a turn is written into the text: chatml (MPT-7B-chat's markers; the default"
        " where the tokenizer has them) or plain (the turn on a line of its own)",
    )
    chat.add_argument("--system", metavar="TEXT", help="a system message (chatml)")
    ex = sub.add_parser(
        "explain", help="save a picture: buckets, alibi, or attention (needs matplotlib)"
    )
    ex.add_argument("what", choices=["buckets", "alibi", "attention"])
    ex.add_argument("--out", required=True, help="PNG file to write")
    ex.add_argument(
        "--model", help="a model directory (attention; alibi takes its head count from it)"
    )
    ex.add_argument("--backend", choices=["numpy", "numba", "cuda"], default="numpy")
    ex.add_argument("--profile")
    ex.add_argument("--text", help="input for the attention map")
    ex.add_argument("--layer", type=int, default=0)
    ex.add_argument("--head", type=int, default=0)
    ex.add_argument("--length", type=int, default=160, help="positions shown (buckets, alibi)")
    ex.add_argument("--num-buckets", type=int, default=32)
    ex.add_argument("--heads", type=int, default=12)
    ex.add_argument("--json", action="store_true")
    ex.add_argument("--debug", action="store_true")
    ex.set_defaults(func=cmd_explain)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        if getattr(args, "backend", "numpy") == "numpy":
            args.func(args)
        else:  # the first run compiles the kernels: say so instead of sitting silent
            from .backends.compile_notice import CompileNotice

            with CompileNotice():
                args.func(args)
    except (CliError, ValueError, TypeError, OSError) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
