"""The MPT golden cases: model shapes, inputs and what each case is there to discriminate.

Framework-neutral (NumPy only); tools/golden/make_mpt.py runs them through transformers 4.37.2
(profile hf) and, for the fields HF ignores, through MosaicML llm-foundry (profile mosaic). Cache
cases give the full sequence and a split point P: upstream runs the first P tokens with use_cache,
and the case stores that cache as inputs (past.<layer>.key / .value) with the rest.
"""

from __future__ import annotations

import numpy as np

BASE = dict(d_model=32, n_heads=4, n_layers=2, vocab_size=64, max_seq_len=16)


def case(
    name,
    task,
    purpose,
    inputs,
    config=None,
    profiles=("hf",),
    split=None,
    options=None,
    seed=1,
    source=None,
):
    """source: which upstream makes the case when a profile has several (mosaic: llm-foundry 0.22, or
    0.4 for prefix_lm, which later versions removed)."""
    return dict(
        name=name,
        task=task,
        purpose=purpose,
        inputs=inputs,
        config={**BASE, **(config or {})},
        profiles=profiles,
        split=split,
        options=options or {},
        seed=seed,
        source=source,
    )


def cases():
    rng = np.random.default_rng(20240602)
    ids = lambda B, S, lo=1: rng.integers(lo, 64, size=(B, S)).astype(np.int64)  # noqa: E731
    out = []
    for heads, d in ((1, 24), (3, 24), (6, 24), (12, 48)):
        x = ids(2, 9)
        out.append(
            case(
                f"causal-lm-heads-{heads}",
                "causal-lm",
                f"n_heads={heads}: ALiBi slopes"
                f" {'for a non-power of two ' if heads & (heads - 1) else ''}and the loss",
                dict(input_ids=x, labels=x),
                config=dict(n_heads=heads, d_model=d),
            )
        )
    x, mask = ids(3, 10), np.ones((3, 10), np.int64)
    mask[1, :4], mask[2, :7] = 0, 0
    out.append(
        case(
            "causal-lm-left-padding",
            "causal-lm",
            "left padding: pad query rows attend uniformly to all keys; real rows ignore pads",
            dict(input_ids=x, attention_mask=mask),
        )
    )
    x, mask = ids(2, 10), np.ones((2, 10), np.int64)
    mask[1, 6:] = 0
    out.append(
        case(
            "causal-lm-right-padding",
            "causal-lm",
            "right padding",
            dict(input_ids=x, attention_mask=mask),
        )
    )
    x = ids(2, 9)
    mask = np.ones((2, 9), np.int64)
    mask[1, :3] = 0
    out.append(
        case(
            "cache-decode-one",
            "causal-lm",
            "one new token over a cache of 8 (left-padded row included)",
            dict(input_ids=x, attention_mask=mask),
            split=8,
            options=dict(use_cache=True),
        )
    )
    out.append(
        case(
            "cache-decode-chunk",
            "causal-lm",
            "a chunk of 4 new tokens over a cache of 5: the causal mask covers the past columns",
            dict(input_ids=x, attention_mask=mask),
            split=5,
            options=dict(use_cache=True),
        )
    )
    out.append(
        case(
            "cache-mask-length-1",
            "causal-lm",
            "one new token with a mask of length 1: it broadcasts over every key",
            dict(input_ids=x, attention_mask=mask),
            split=8,
            options=dict(use_cache=True, short_mask=True),
        )
    )
    out.append(
        case(
            "cache-past-without-use-cache",
            "causal-lm",
            "a past with use_cache=False: the past is used, no presents come back",
            dict(input_ids=x),
            split=6,
            options=dict(use_cache=False),
        )
    )
    out.append(
        case(
            "s1",
            "causal-lm",
            "S=1 without a past: no causal mask; the shifted loss is NaN",
            dict(input_ids=ids(2, 1), labels=ids(2, 1)),
        )
    )
    out.append(
        case(
            "max-length",
            "causal-lm",
            "S = max_seq_len, the longest legal input",
            dict(input_ids=ids(1, 16)),
        )
    )
    out.append(
        case("too-long", "causal-lm", "S = max_seq_len + 1 is rejected", dict(input_ids=ids(1, 17)))
    )
    out.append(
        case(
            "past-too-long",
            "causal-lm",
            "P + S = max_seq_len + 1 over a cache is rejected",
            dict(input_ids=ids(1, 17)),
            split=10,
            options=dict(use_cache=True),
        )
    )
    out.append(
        case(
            "past-at-max-length",
            "causal-lm",
            "P + S = max_seq_len over a cache is fine",
            dict(input_ids=ids(1, 16)),
            split=12,
            options=dict(use_cache=True),
        )
    )
    x = ids(2, 7)
    out.append(
        case(
            "mask-4d-all-ones",
            "causal-lm",
            "an all-ones 4D mask: no causal part is added (bidirectional)",
            dict(input_ids=x, attention_mask=np.ones((2, 1, 7, 7), np.float32)),
        )
    )
    m4 = (rng.random((2, 1, 7, 7)) > 0.3).astype(np.float32)
    m4[:, :, np.arange(7), np.arange(7)] = 1
    out.append(
        case(
            "mask-4d-random",
            "causal-lm",
            "a random 4D mask, used as given",
            dict(input_ids=x, attention_mask=m4),
        )
    )
    out.append(
        case(
            "mask-4d-wrong-shape",
            "causal-lm",
            "a 4D mask of the wrong shape is rejected",
            dict(input_ids=x, attention_mask=np.ones((2, 1, 7, 6), np.float32)),
        )
    )
    mask = np.ones((2, 7), np.float32)
    mask[0, 2], mask[1, 4] = 0.5, 2.0
    out.append(
        case(
            "mask-non-binary",
            "causal-lm",
            "mask values 0.5 and 2 mask the key in hf (only exact 1 attends)",
            dict(input_ids=x, attention_mask=mask),
        )
    )
    out.append(
        case(
            "softmax-scale",
            "causal-lm",
            "attn_config.softmax_scale=0.9 (default would be 1/sqrt(8))",
            dict(input_ids=ids(2, 8)),
            config=dict(attn_config=dict(softmax_scale=0.9)),
        )
    )
    out.append(
        case(
            "ignored-fields",
            "causal-lm",
            "clip_qkv, qk_ln, alibi=False, alibi_bias_max, logit_scale, expansion_ratio,"
            " no_bias=False: no effect in 4.37.2",
            dict(input_ids=ids(2, 8)),
            config=dict(
                expansion_ratio=2,
                logit_scale=3.0,
                no_bias=False,
                norm_type="layernorm",
                attn_config=dict(clip_qkv=0.05, qk_ln=True, alibi=False, alibi_bias_max=3),
            ),
        )
    )
    labels = ids(2, 8)
    labels[0, :3], labels[1, 5] = -100, -100
    out.append(
        case(
            "causal-lm-loss-ignore",
            "causal-lm",
            "shifted loss ignoring -100",
            dict(input_ids=ids(2, 8), labels=labels),
        )
    )
    out.append(
        case(
            "causal-lm-all-ignored",
            "causal-lm",
            "every label -100: NaN",
            dict(input_ids=ids(2, 5), labels=np.full((2, 5), -100)),
        )
    )
    x = np.array([[3, 4, 5, 6, 7, 8], [3, 4, 5, 0, 0, 0], [0, 0, 3, 4, 5, 6], [3, 0, 5, 6, 7, 8]])
    out.append(
        case(
            "sequence-classification-pad-rules",
            "sequence-classification",
            "pooling at the token before the first pad: none, right pad, left pad, pad"
            " mid-sequence",
            dict(input_ids=x, labels=np.array([0, 2, 1, 2])),
            config=dict(pad_token_id=0, num_labels=3),
        )
    )
    out.append(
        case(
            "sequence-classification-no-pad-b1",
            "sequence-classification",
            "pad_token_id None with B=1: the last position",
            dict(input_ids=ids(1, 6)),
            config=dict(num_labels=3),
        )
    )
    out.append(
        case(
            "sequence-classification-no-pad-b2",
            "sequence-classification",
            "pad_token_id None with B=2 is rejected",
            dict(input_ids=ids(2, 6)),
            config=dict(num_labels=3),
        )
    )
    out.append(
        case(
            "sequence-classification-regression",
            "sequence-classification",
            "num_labels=1: MSE",
            dict(input_ids=ids(2, 6), labels=np.array([0.5, -1.5], np.float32)),
            config=dict(pad_token_id=0, num_labels=1),
        )
    )
    out.append(
        case(
            "sequence-classification-multi-label",
            "sequence-classification",
            "float labels: BCE",
            dict(input_ids=ids(2, 6), labels=np.array([[1, 0, 1], [0, 1, 1]], np.float32)),
            config=dict(pad_token_id=0, num_labels=3),
        )
    )
    labels = rng.integers(0, 5, (2, 7))
    labels[1, 5:] = -100
    out.append(
        case(
            "token-classification",
            "token-classification",
            "per-token logits with bias; the tuple drops hidden_states (outputs[2:] bug)",
            dict(input_ids=ids(2, 7), labels=labels),
            config=dict(num_labels=5),
        )
    )
    out.append(
        case(
            "token-classification-use-cache",
            "token-classification",
            "use_cache=True: the tuple then drops the presents instead",
            dict(input_ids=ids(2, 7)),
            config=dict(num_labels=5),
            options=dict(use_cache=True),
        )
    )
    x = ids(3, 8)
    out.append(
        case(
            "question-answering",
            "question-answering",
            "span logits and loss, positions in range",
            dict(
                input_ids=x, start_positions=np.array([0, 3, 7]), end_positions=np.array([2, 5, 7])
            ),
        )
    )
    out.append(
        case(
            "question-answering-clamped",
            "question-answering",
            "positions >= S are ignored, negative ones clamp to 0 and count",
            dict(
                input_ids=x,
                start_positions=np.array([8, -100, 3]),
                end_positions=np.array([20, 2, -1]),
            ),
        )
    )
    x, mask = ids(2, 6), np.ones((2, 6), np.int64)
    x[1, :2], mask[1, :2] = 0, 0
    out.append(
        case(
            "generate-greedy-left-padded",
            "causal-lm",
            "greedy decoding of 8 tokens from a left-padded batch (pad id 0)",
            dict(input_ids=x, attention_mask=mask),
            config=dict(pad_token_id=0),
            options=dict(generate=dict(max_new_tokens=8)),
        )
    )
    out.append(
        case(
            "generate-greedy-eos",
            "causal-lm",
            "greedy decoding with an eos id that one row emits early: that row continues with pad",
            dict(input_ids=x, attention_mask=mask),
            config=dict(pad_token_id=0),
            options=dict(generate=dict(max_new_tokens=8, eos_token_id="first-token-of-row-0")),
        )
    )
    def generating(name, purpose, file=None, inputs=None, config=None, generate=None, split=None):
        """generate() on the left-padded batch with keyword arguments ``generate`` and, where
        given, the checkpoint's generation_config.json ``file`` ("row-R-token-I": that greedy
        token, filled in by make_mpt.py). With a ``split`` P, past_key_values too: upstream's
        cache of the prompt's first P tokens (a row for each row decoded), which the case stores
        as inputs (past.<layer>.key / .value) beside the whole prompt."""
        options = dict(generate=generate or {})
        if file is not None:
            options["generation_config"] = file
        return case(
            name,
            "causal-lm",
            purpose,
            inputs or dict(input_ids=x, attention_mask=mask),
            config=dict(pad_token_id=0, **(config or {})),
            options=options,
            split=split,
        )

    one = ids(2, 1)
    lookup_prompt = np.array([[58, 31, 28, 1, 34]])  # found by search: see prompt-lookup-past-eos
    one_token_sampling = dict(  # sampling with its scores, deterministic: one token is left
        max_new_tokens=5,
        do_sample=True,
        top_k=1,
        temperature=0.7,
        repetition_penalty=1.2,
        return_dict_in_generate=True,
        output_scores=True,
    )
    out += [
        generating(
            "generate-generation-config",
            "generate() with no settings passed: eos ids (a list, one that row 0 emits early), pad"
            " and max_new_tokens (over max_length) come from the checkpoint's"
            " generation_config.json",
            dict(eos_token_id=[63, "row-0-token-2"], pad_token_id=5, max_new_tokens=7, max_length=9),
        ),
        generating(
            "generate-generation-config-derived",
            "a generation_config.json marked _from_model_config is ignored when config.json sets a"
            " generation parameter (max_length 10): 4 new tokens, no eos",
            dict(_from_model_config=True, eos_token_id=[63, "row-0-token-2"], max_new_tokens=3),
            config=dict(max_length=10),
        ),
        generating(
            "generate-generation-config-marked-derived",
            "a generation_config.json marked _from_model_config is used as it is when config.json"
            " sets no generation parameter: its eos ids and max_new_tokens 6 apply",
            dict(_from_model_config=True, eos_token_id=["row-0-token-2"], max_new_tokens=6),
        ),
        generating(
            "generate-penalties",
            "logits processors from generation_config.json: repetition_penalty 1.5 over prompt"
            " (padding included) and new tokens, no_repeat_ngram_size 2, min_new_tokens 3 holding"
            " back an eos that row 0 would emit third",
            dict(
                repetition_penalty=1.5,
                no_repeat_ngram_size=2,
                min_new_tokens=3,
                eos_token_id=["row-0-token-2"],
                max_new_tokens=8,
            ),
        ),
        generating(
            "generate-suppress-tokens",
            "suppress_tokens (row 0's first greedy token, never), begin_suppress_tokens (row 1's,"
            " at the first step) and min_length 9 (prompt 6 + 3) holding back row 1's second"
            " token as eos, from generation_config.json",
            dict(
                suppress_tokens=["row-0-token-0"],
                begin_suppress_tokens=["row-1-token-0"],
                min_length=9,
                eos_token_id=["row-1-token-1"],
                max_new_tokens=6,
            ),
        ),
        generating(
            "generate-repetition-penalty-argument",
            "repetition_penalty 1.2 and no_repeat_ngram_size 3 passed to generate() itself",
            generate=dict(max_new_tokens=8, repetition_penalty=1.2, no_repeat_ngram_size=3),
        ),
        generating(
            "generate-max-time",
            "max_time 1e-9 s: generation stops after the first new token (the time is checked"
            " after each token)",
            generate=dict(max_new_tokens=8, max_time=1e-9),
        ),
        generating(
            "generate-num-return-sequences-greedy",
            "num_return_sequences 2 without sampling: upstream refuses (greedy decoding gives one"
            " sequence a prompt)",
            generate=dict(max_new_tokens=4, num_return_sequences=2),
        ),
        generating(
            "generate-beam-search",
            "beam search, 3 beams, 6 new tokens, no eos: the best beam by summed log-probability",
            generate=dict(max_new_tokens=6, num_beams=3),
        ),
        generating(
            "generate-beam-search-eos",
            "beam search from generation_config.json: 4 beams, the best 2 returned, an eos (row 0's"
            " third greedy token) finishing hypotheses, length_penalty 0.5, early_stopping false",
            dict(
                num_beams=4,
                num_return_sequences=2,
                eos_token_id=["row-0-token-2"],
                length_penalty=0.5,
                max_new_tokens=8,
            ),
        ),
        generating(
            "generate-beam-search-early-stopping",
            "beam search, early_stopping true, length_penalty 2.0, two eos ids (each row's second"
            " greedy token), pad 0: prompts stop as soon as 3 hypotheses finish",
            dict(
                num_beams=3,
                early_stopping=True,
                length_penalty=2.0,
                eos_token_id=["row-0-token-1", "row-1-token-1"],
                pad_token_id=0,
                max_new_tokens=8,
            ),
        ),
        generating(
            "generate-beam-search-never",
            'beam search, early_stopping "never" (a pool is done only when no beam could beat it'
            " at full length), repetition_penalty 1.3 on the log-probabilities, eos ids (rows'"
            " third greedy tokens)",
            dict(
                num_beams=2,
                early_stopping="never",
                repetition_penalty=1.3,
                eos_token_id=["row-0-token-2", "row-1-token-2"],
                max_new_tokens=7,
            ),
        ),
        generating(
            "generate-beam-search-too-many-sequences",
            "num_return_sequences 3 with 2 beams: upstream refuses",
            generate=dict(max_new_tokens=4, num_beams=2, num_return_sequences=3),
        ),
        generating(
            "generate-group-beam-search",
            "diverse beam search from generation_config.json: 4 beams in 2 groups, diversity_penalty"
            " 1.0, all 4 hypotheses returned, an eos (row 0's third greedy token)",
            dict(
                num_beams=4,
                num_beam_groups=2,
                diversity_penalty=1.0,
                num_return_sequences=4,
                eos_token_id=["row-0-token-2"],
                max_new_tokens=6,
            ),
        ),
        generating(
            "generate-group-beam-search-argument",
            "diverse beam search passed to generate(): 6 beams in 3 groups, diversity_penalty 0.5,"
            " the best 3 returned",
            generate=dict(
                max_new_tokens=5,
                num_beams=6,
                num_beam_groups=3,
                diversity_penalty=0.5,
                num_return_sequences=3,
            ),
        ),
        generating(
            "generate-group-beam-search-no-diversity",
            "beam groups without a diversity_penalty: upstream refuses",
            generate=dict(max_new_tokens=4, num_beams=4, num_beam_groups=2),
        ),
        generating(
            "generate-scores-greedy",
            "return_dict_in_generate and output_scores: each step's scores after the logits"
            " processors (repetition_penalty 1.3 on the raw logits), an eos (row 0's third greedy"
            " token) after which row 0 goes on with pad",
            generate=dict(
                max_new_tokens=6,
                repetition_penalty=1.3,
                eos_token_id="first-token-of-row-0",
                return_dict_in_generate=True,
                output_scores=True,
            ),
        ),
        generating(
            "generate-scores-sample-top-k-1",
            "output_scores when sampling, made deterministic by top_k 1: each step's scores after"
            " repetition_penalty 1.2 and temperature 0.7, every token but one at -inf",
            generate=one_token_sampling,
        ),
        generating(
            "generate-scores-sample-renormalized",
            "the same with renormalize_logits: upstream's warpers end with log_softmax too, so"
            " the one token left scores 0",
            generate=dict(one_token_sampling, renormalize_logits=True),
        ),
        generating(
            "generate-scores-beam-search",
            "output_scores and return_dict_in_generate from generation_config.json with beam"
            " search (3 beams, the best 2, length_penalty 0.7, an eos: row 0's third greedy"
            " token): the processed log-probabilities of each step, sequences_scores and"
            " beam_indices",
            dict(
                num_beams=3,
                num_return_sequences=2,
                length_penalty=0.7,
                eos_token_id=["row-0-token-2"],
                max_new_tokens=6,
                output_scores=True,
                return_dict_in_generate=True,
            ),
        ),
        generating(
            "generate-scores-contrastive",
            "output_scores with contrastive search (penalty_alpha 0.6, top_k 4, use_cache true):"
            " the processed logits each step",
            generate=dict(
                max_new_tokens=5,
                penalty_alpha=0.6,
                top_k=4,
                use_cache=True,
                return_dict_in_generate=True,
                output_scores=True,
            ),
        ),
        generating(
            "generate-scores-constrained",
            "output_scores with constrained beam search (force_words_ids [[10, 11]], 3 beams):"
            " upstream records each step's scores with every beam's sum added",
            generate=dict(
                max_new_tokens=5,
                num_beams=3,
                force_words_ids=[[10, 11]],
                return_dict_in_generate=True,
                output_scores=True,
            ),
        ),
        generating(
            "generate-scores-group-beam-search",
            "output_scores with diverse beam search (4 beams in 2 groups, diversity_penalty 0.5,"
            " the best 2): each step's processed scores, the diversity penalty included, and"
            " sequences_scores (upstream's beam_indices are left out: inconsistent for groups)",
            generate=dict(
                max_new_tokens=5,
                num_beams=4,
                num_beam_groups=2,
                diversity_penalty=0.5,
                num_return_sequences=2,
                return_dict_in_generate=True,
                output_scores=True,
            ),
        ),
        generating(
            "generate-prompt-lookup",
            "prompt_lookup_num_tokens 3 (assisted generation: guesses copied from earlier in the"
            " text, checked by the model) on one prompt with use_cache true and an eos it does not"
            " write: greedy decoding's tokens, 6 of them (a loop of 26 15 the lookup finds)",
            inputs=dict(input_ids=x[:1], attention_mask=mask[:1]),
            generate=dict(
                max_new_tokens=6, prompt_lookup_num_tokens=3, use_cache=True, eos_token_id=63
            ),
        ),
        generating(
            "generate-prompt-lookup-no-eos",
            "prompt_lookup_num_tokens without an eos_token_id: upstream's assisted decoding fails"
            " (it builds a tensor of the eos ids)",
            inputs=dict(input_ids=x[:1], attention_mask=mask[:1]),
            generate=dict(max_new_tokens=4, prompt_lookup_num_tokens=3, use_cache=True),
        ),
        generating(
            "generate-prompt-lookup-batch",
            "prompt_lookup_num_tokens on a batch of 2: upstream refuses (one prompt only)",
            generate=dict(max_new_tokens=4, prompt_lookup_num_tokens=3, use_cache=True),
        ),
        generating(
            "generate-prompt-lookup-no-cache",
            "prompt_lookup_num_tokens with MPT's use_cache false: upstream refuses",
            inputs=dict(input_ids=x[:1], attention_mask=mask[:1]),
            generate=dict(max_new_tokens=4, prompt_lookup_num_tokens=3),
        ),
        generating(
            "generate-attentions-hidden-states",
            "output_attentions and output_hidden_states, greedy, config.json's use_cache false:"
            " each step runs the whole text again, so its maps cover every query [B, H, T, T] and"
            " its hidden states every token",
            generate=dict(
                max_new_tokens=4,
                return_dict_in_generate=True,
                output_attentions=True,
                output_hidden_states=True,
            ),
        ),
        generating(
            "generate-attentions-hidden-states-cache",
            "output_attentions and output_hidden_states with use_cache true: the prompt's pass,"
            " then one query a step over the cache ([B, H, 1, T] maps, [B, 1, C] states)",
            generate=dict(
                max_new_tokens=4,
                use_cache=True,
                return_dict_in_generate=True,
                output_attentions=True,
                output_hidden_states=True,
            ),
        ),
        generating(
            "generate-attentions-beams",
            "output_attentions and output_scores with beam search (3 beams, 2 returned, eos 28,"
            " use_cache true): each pass's maps for the 6 rows in the order the beams had then",
            generate=dict(
                max_new_tokens=5,
                num_beams=3,
                num_return_sequences=2,
                eos_token_id=[28],
                use_cache=True,
                return_dict_in_generate=True,
                output_attentions=True,
                output_scores=True,
            ),
        ),
        generating(
            "generate-attentions-contrastive",
            "output_attentions and output_hidden_states with contrastive search (penalty_alpha"
            " 0.6, top_k 4): each step records the pass its logits came from, the prompt's, then"
            " the chosen candidate's rows of the candidates' pass",
            generate=dict(
                max_new_tokens=4,
                penalty_alpha=0.6,
                top_k=4,
                use_cache=True,
                return_dict_in_generate=True,
                output_attentions=True,
                output_hidden_states=True,
            ),
        ),
        generating(
            "generate-attentions-prompt-lookup",
            "output_attentions and output_hidden_states with prompt lookup: each pass (the last"
            " token and all the guesses) split into a record a token as upstream splits it; its"
            " first pass keeps 3 guesses, and upstream records prompt rows for them (it indexes"
            " that pass from its start)",
            inputs=dict(
                input_ids=np.array([[18, 18, 18, 18, 26, 41, 35, 6, 18]]),
                attention_mask=np.ones((1, 9), np.int64),
            ),
            generate=dict(
                max_new_tokens=5,
                eos_token_id=63,
                use_cache=True,
                prompt_lookup_num_tokens=3,
                return_dict_in_generate=True,
                output_attentions=True,
                output_hidden_states=True,
                output_scores=True,
            ),
        ),
        generating(
            "generate-hidden-states-sampling",
            "output_hidden_states when sampling, made deterministic by top_k 1, without the cache",
            generate=dict(
                max_new_tokens=4,
                do_sample=True,
                top_k=1,
                return_dict_in_generate=True,
                output_hidden_states=True,
            ),
        ),
        generating(
            "generate-beam-scores-finished-prompt",
            "beam search's scores once a prompt is done (row 1, at its fourth token, eos 28):"
            " upstream sends every beam of a finished prompt on from row 0, the first prompt's"
            " first beam, with its cache but not its attention mask (beam search reorders the"
            " cache only), so those rows' recorded scores read row 0's keys under row 1's padding"
            " (use_cache true: without it upstream recomputes them from row 0's tokens)",
            generate=dict(
                max_new_tokens=8,
                num_beams=4,
                num_return_sequences=4,
                length_penalty=0.5,
                early_stopping=True,
                eos_token_id=[28],
                use_cache=True,
                return_dict_in_generate=True,
                output_scores=True,
            ),
        ),
        generating(
            "generate-past-key-values",
            "past_key_values with use_cache true (greedy, eos 19, which row 1 writes second: it"
            " is then fed pad): the cache at the end, every position but the last token's, keys"
            " and values [B, H, T - 1, D], the left padding's own keys included",
            generate=dict(
                max_new_tokens=6, eos_token_id=19, use_cache=True, return_dict_in_generate=True
            ),
        ),
        generating(
            "generate-past-key-values-beams",
            "past_key_values of beam search (3 beams, 2 returned, eos 28): the 6 live beams' cache"
            " in the order of the last step, which upstream reorders before it stops, so its"
            " rows are not those of sequences",
            generate=dict(
                max_new_tokens=5,
                num_beams=3,
                num_return_sequences=2,
                eos_token_id=[28],
                use_cache=True,
                return_dict_in_generate=True,
            ),
        ),
        generating(
            "generate-past-key-values-beam-groups",
            "past_key_values of diverse beam search (4 beams in 2 groups, diversity_penalty 0.5):"
            " each group's rows reordered by its own choice",
            generate=dict(
                max_new_tokens=4,
                num_beams=4,
                num_beam_groups=2,
                diversity_penalty=0.5,
                use_cache=True,
                return_dict_in_generate=True,
            ),
        ),
        generating(
            "generate-past-key-values-constrained",
            "past_key_values of constrained beam search (force_words_ids [[20, 21]], 3 beams)",
            generate=dict(
                max_new_tokens=5,
                num_beams=3,
                force_words_ids=[[20, 21]],
                use_cache=True,
                return_dict_in_generate=True,
            ),
        ),
        generating(
            "generate-past-key-values-contrastive",
            "past_key_values of contrastive search (penalty_alpha 0.6, top_k 4): the chosen"
            " candidate's cache covers the last token too, and upstream cuts that position off",
            generate=dict(
                max_new_tokens=4,
                penalty_alpha=0.6,
                top_k=4,
                use_cache=True,
                return_dict_in_generate=True,
            ),
        ),
        generating(
            "generate-past-key-values-prompt-lookup",
            "past_key_values of prompt lookup (the past-eos case: 11 new tokens, several kept"
            " guesses a pass): the cache of the kept tokens, cut after each pass",
            inputs=dict(input_ids=lookup_prompt, attention_mask=np.ones_like(lookup_prompt)),
            generate=dict(
                max_new_tokens=11,
                prompt_lookup_num_tokens=3,
                use_cache=True,
                eos_token_id=28,
                return_dict_in_generate=True,
            ),
        ),
        generating(
            "generate-past-key-values-guidance",
            "past_key_values with guidance_scale 1.5: the model's own cache (guidance's"
            " unconditional pass keeps one of its own, not returned)",
            generate=dict(
                max_new_tokens=5,
                guidance_scale=1.5,
                use_cache=True,
                return_dict_in_generate=True,
            ),
        ),
        generating(
            "generate-with-past",
            "past_key_values given to generate(): upstream's cache of the left-padded prompts'"
            " first 4 tokens (row 1's padding inside it); only the last 2 run over it, then greedy"
            " decoding as without it, its scores and the cache at the end included",
            split=4,
            generate=dict(
                max_new_tokens=5,
                use_cache=True,
                return_dict_in_generate=True,
                output_scores=True,
            ),
        ),
        generating(
            "generate-with-past-no-cache",
            "past_key_values with MPT's use_cache false: the first pass runs over the given cache,"
            " each later one the whole text again",
            split=4,
            generate=dict(max_new_tokens=5),
        ),
        generating(
            "generate-with-past-beams",
            "past_key_values with beam search (3 beams, eos 28): a cache row for each beam, as"
            " upstream repeats the prompt but not the cache",
            split=3,
            generate=dict(
                max_new_tokens=5,
                num_beams=3,
                eos_token_id=[28],
                use_cache=True,
                return_dict_in_generate=True,
                output_scores=True,
            ),
        ),
        generating(
            "generate-with-past-sampling",
            "past_key_values with sampling made deterministic and 2 sequences a prompt: a cache row"
            " for each sequence",
            split=5,
            generate=dict(one_token_sampling, num_return_sequences=2, use_cache=True),
        ),
        generating(
            "generate-with-past-attentions",
            "past_key_values with output_attentions and output_hidden_states: the first pass"
            " records the rows of the tokens it ran, after the cache",
            split=4,
            generate=dict(
                max_new_tokens=3,
                use_cache=True,
                return_dict_in_generate=True,
                output_attentions=True,
                output_hidden_states=True,
            ),
        ),
        generating(
            "generate-with-past-prompt-lookup",
            "past_key_values with prompt lookup (the past-eos case, its first 3 tokens cached)",
            inputs=dict(input_ids=lookup_prompt, attention_mask=np.ones_like(lookup_prompt)),
            split=3,
            generate=dict(
                max_new_tokens=11,
                prompt_lookup_num_tokens=3,
                use_cache=True,
                eos_token_id=28,
                return_dict_in_generate=True,
                output_scores=True,
            ),
        ),
        generating(
            "generate-with-past-prompt-lookup-attentions",
            "past_key_values with prompt lookup and output_attentions: the first pass runs the"
            " tokens after the cache and the guesses, and upstream splits it from its start as"
            " ever (its prompt record is that pass's rows, fewer than the prompt's)",
            inputs=dict(
                input_ids=np.array([[18, 18, 18, 18, 26, 41, 35, 6, 18]]),
                attention_mask=np.ones((1, 9), np.int64),
            ),
            split=5,
            generate=dict(
                max_new_tokens=5,
                eos_token_id=63,
                use_cache=True,
                prompt_lookup_num_tokens=3,
                return_dict_in_generate=True,
                output_attentions=True,
            ),
        ),
        generating(
            "generate-with-past-contrastive",
            "past_key_values with contrastive search: upstream fails (it reads the prompt's hidden"
            " states from the pass the cache skips)",
            split=4,
            generate=dict(max_new_tokens=3, penalty_alpha=0.6, top_k=4, use_cache=True),
        ),
        generating(
            "generate-with-past-whole-prompt",
            "past_key_values over the whole prompt: upstream then runs its last token again over a"
            " cache that holds it, and fails on the mask",
            split=6,
            generate=dict(max_new_tokens=3, use_cache=True),
        ),
        generating(
            "generate-prompt-lookup-past-eos",
            "prompt_lookup_num_tokens 3 with eos 28: after 31 the lookup guesses 28 1 34 (what"
            " followed 31 in the prompt); the model keeps 28, an eos, and chooses 33 after it."
            " Upstream checks only the last token kept for an eos, so it writes on past this one"
            " (greedy decoding stops at 31 28)",
            inputs=dict(input_ids=lookup_prompt, attention_mask=np.ones_like(lookup_prompt)),
            generate=dict(
                max_new_tokens=11, prompt_lookup_num_tokens=3, use_cache=True, eos_token_id=28
            ),
        ),
        generating(
            "generate-prompt-lookup-scores",
            "prompt lookup with repetition_penalty 1.3 and output_scores: each kept place's scores"
            " after the processors, which see the guesses before that place (8 new tokens: with"
            " more, upstream's guesses run past max_seq_len 16 and it fails)",
            inputs=dict(input_ids=lookup_prompt, attention_mask=np.ones_like(lookup_prompt)),
            generate=dict(
                max_new_tokens=8,
                prompt_lookup_num_tokens=3,
                use_cache=True,
                eos_token_id=28,
                repetition_penalty=1.3,
                return_dict_in_generate=True,
                output_scores=True,
            ),
        ),
        generating(
            "generate-prompt-lookup-sampling",
            "prompt lookup with sampling made deterministic (top_k 1, temperature 0.7): the scores"
            " recorded after the warpers, a place at a time",
            inputs=dict(input_ids=lookup_prompt, attention_mask=np.ones_like(lookup_prompt)),
            generate=dict(
                one_token_sampling,
                max_new_tokens=8,
                prompt_lookup_num_tokens=3,
                use_cache=True,
                eos_token_id=28,
            ),
        ),
        generating(
            "generate-prompt-lookup-guidance",
            "prompt lookup with guidance_scale 1.5: upstream's guidance processor runs at every"
            " place the pass scores, so its own context takes each guess, kept or not (and the"
            " stand-in guess 0 where the lookup finds none; 7 new tokens: with more, that context"
            " runs past max_seq_len 16 and upstream fails)",
            inputs=dict(input_ids=lookup_prompt, attention_mask=np.ones_like(lookup_prompt)),
            generate=dict(
                max_new_tokens=7,
                prompt_lookup_num_tokens=3,
                use_cache=True,
                eos_token_id=28,
                guidance_scale=1.5,
            ),
        ),
        generating(
            "generate-prompt-lookup-guidance-room",
            "prompt lookup with guidance and scores: on the fourth pass the lookup guesses 4 tokens"
            " with room for 3; upstream scores all 4 places, so guidance's context takes the"
            " fourth too, and the later scores show it (a port that drops guesses past the room"
            " gives the same tokens, other scores)",
            inputs=dict(input_ids=x[:1], attention_mask=mask[:1]),
            generate=dict(
                max_new_tokens=6,
                prompt_lookup_num_tokens=4,
                use_cache=True,
                eos_token_id=[19, 16],
                guidance_scale=1.5,
                return_dict_in_generate=True,
                output_scores=True,
            ),
        ),
        generating(
            "generate-prompt-lookup-no-room",
            "prompt lookup with max_new_tokens 0: upstream's assisted decoding keeps no token"
            " (at most the room left), so the prompt comes back alone",
            inputs=dict(input_ids=x[:1], attention_mask=mask[:1]),
            generate=dict(
                max_new_tokens=0, prompt_lookup_num_tokens=3, use_cache=True, eos_token_id=63
            ),
        ),
        generating(
            "generate-no-room",
            "max_new_tokens 0: transformers still makes one token (it checks the length only after"
            " each), with a warning",
            generate=dict(max_new_tokens=0),
        ),
        generating(
            "generate-max-length-under-prompt",
            "max_length 4 under a prompt of 6 tokens, from generation_config.json: one token, as"
            " with no room at all",
            dict(max_length=4),
        ),
        generating(
            "generate-beam-search-no-room",
            "beam search with max_new_tokens 0: upstream fails (its pool of hypotheses is empty)",
            generate=dict(max_new_tokens=0, num_beams=2),
        ),
        generating(
            "generate-diversity-without-groups",
            "diversity_penalty 0.5 with 3 beams in one group: upstream refuses (its diversity"
            " processor needs num_beam_groups > 1)",
            generate=dict(max_new_tokens=4, num_beams=3, diversity_penalty=0.5),
        ),
        generating(
            "generate-renormalize-logits",
            "renormalize_logits from generation_config.json: beam search, 3 beams, sums the"
            " log-probabilities renormalized after repetition_penalty 3.0 (without it, row 1's"
            " beams differ)",
            dict(num_beams=3, repetition_penalty=3.0, renormalize_logits=True, max_new_tokens=7),
        ),
        generating(
            "generate-constrained-phrase",
            "constrained beam search: force_words_ids [[10, 11]] (a phrase greedy decoding does not"
            " write), 3 beams, 6 new tokens",
            generate=dict(max_new_tokens=6, num_beams=3, force_words_ids=[[10, 11]]),
        ),
        generating(
            "generate-constrained-file",
            "force_words_ids from generation_config.json: a disjunctive word (10 11, or 12, which"
            " ends row 0's prompt: the prompt meets it) and the phrase 20; 4 beams, the best 2"
            " returned, an eos (row 0's second greedy token) that finishes only hypotheses meeting"
            " both",
            dict(
                force_words_ids=[[[10, 11], [12]], [20]],
                num_beams=4,
                num_return_sequences=2,
                eos_token_id=["row-0-token-1"],
                max_new_tokens=7,
            ),
        ),
        generating(
            "generate-constrained-shared-prefix",
            "alternatives 26 32 and 26 5 share a first token: upstream's copies of a beam's state"
            " share the prefix, so trying 32 then 5 after 26 sees 32 still there and 5 breaks off"
            " (early_stopping never, eos 1, 2 beams, 3 new tokens; a port that copies the prefix"
            " returns 26 5 for row 1)",
            generate=dict(
                max_new_tokens=3,
                num_beams=2,
                force_words_ids=[[[26, 32], [38, 49, 32], [26, 5]]],
                eos_token_id=[1],
                early_stopping="never",
            ),
        ),
        generating(
            "generate-constrained-ignores-sampling",
            "force_words_ids with do_sample true: upstream runs constrained beam search, which"
            " does not sample (the tokens of generate-constrained-phrase)",
            generate=dict(
                max_new_tokens=6, num_beams=3, force_words_ids=[[10, 11]], do_sample=True
            ),
        ),
        generating(
            "generate-constrained-one-beam",
            "force_words_ids with one beam: upstream refuses (constrained beam search needs 2)",
            generate=dict(max_new_tokens=4, force_words_ids=[[10, 11]]),
        ),
        generating(
            "generate-contrastive",
            "contrastive search (penalty_alpha 0.6, top_k 4) with config.json's use_cache true:"
            " each step's 4 candidates run through the model, the one least like the context"
            " (padding included) weighed against its probability",
            generate=dict(max_new_tokens=8, penalty_alpha=0.6, top_k=4),
            config=dict(use_cache=True),
        ),
        generating(
            "generate-contrastive-file",
            "contrastive search from generation_config.json (penalty_alpha 0.4, top_k 3, its own"
            " use_cache true) with an eos (row 0's second greedy token), no_repeat_ngram_size 2",
            dict(
                penalty_alpha=0.4,
                top_k=3,
                use_cache=True,
                eos_token_id=["row-0-token-1"],
                pad_token_id=0,
                no_repeat_ngram_size=2,
                max_new_tokens=8,
            ),
        ),
        generating(
            "generate-contrastive-no-cache",
            "contrastive search where config.json's use_cache is false (MPT's default): upstream"
            " refuses",
            generate=dict(max_new_tokens=4, penalty_alpha=0.6, top_k=4),
        ),
        generating(
            "generate-encoder-repetition-penalty",
            "encoder_repetition_penalty 2.0 passed to generate(): the prompt's tokens made likelier"
            " (a positive score doubled, a negative one halved)",
            generate=dict(max_new_tokens=6, encoder_repetition_penalty=2.0),
        ),
        generating(
            "generate-encoder-repetition-penalty-beams",
            "encoder_repetition_penalty 2.0 with 2 beams, from generation_config.json: upstream"
            " gathers with the 2 prompt rows as given, so they meet the first 2 of the 4 beam rows"
            " (batch 0's beams), not every beam of their own prompt",
            dict(encoder_repetition_penalty=2.0, num_beams=2, max_new_tokens=6),
        ),
        generating(
            "generate-guidance",
            "classifier-free guidance, guidance_scale 1.5 passed to generate(): the model also run"
            " on the prompt's last token and the new ones (config.json's use_cache false: the whole"
            " unconditional context again each step)",
            generate=dict(max_new_tokens=6, guidance_scale=1.5),
        ),
        generating(
            "generate-guidance-cache-file",
            "guidance_scale 2.0 from generation_config.json with its use_cache true (the"
            " unconditional context on its own cache) and repetition_penalty 1.2 applied to the"
            " guided log-probabilities",
            dict(guidance_scale=2.0, use_cache=True, repetition_penalty=1.2, max_new_tokens=6),
        ),
        generating(
            "generate-guidance-beams",
            "guidance_scale 1.5 with 2 beams: the unconditional context follows the rows, not the"
            " beams (upstream does not reorder it)",
            generate=dict(max_new_tokens=5, guidance_scale=1.5, num_beams=2),
        ),
        generating(
            "generate-guidance-beam-groups",
            "guidance_scale 1.5 with diverse beam search (4 beams in 2 groups, diversity_penalty"
            " 1.0): guidance scores a group's rows at a time, so its context takes both groups'"
            " tokens in turn, and the diversity penalty comes after it (upstream's order: guidance,"
            " sequence bias, diversity; the other way round gives other beams)",
            generate=dict(
                max_new_tokens=5,
                guidance_scale=1.5,
                num_beams=4,
                num_beam_groups=2,
                diversity_penalty=1.0,
                num_return_sequences=2,
            ),
        ),
        generating(
            "generate-guidance-beam-groups-negative-prompt",
            "diverse beam search with guidance and a negative prompt of one row for each of the"
            " rows a group has (2 prompts x 2 beams: upstream fails with one a beam)",
            inputs=dict(
                input_ids=x,
                attention_mask=mask,
                negative_prompt_ids=np.array([[9, 21], [5, 17], [9, 21], [5, 17]]),
            ),
            generate=dict(
                max_new_tokens=5,
                guidance_scale=1.5,
                num_beams=4,
                num_beam_groups=2,
                diversity_penalty=1.0,
                use_cache=True,
            ),
        ),
        generating(
            "generate-guidance-negative-prompt",
            "guidance_scale 1.5 with negative_prompt_ids (3 tokens a row, row 1's first masked by"
            " negative_prompt_attention_mask): the unconditional context starts from them instead"
            " of the prompt's last token (config.json's use_cache false: all of it again each"
            " step)",
            inputs=dict(
                input_ids=x,
                attention_mask=mask,
                negative_prompt_ids=np.array([[9, 21, 40], [0, 17, 33]]),
                negative_prompt_attention_mask=np.array([[1, 1, 1], [0, 1, 1]]),
            ),
            generate=dict(max_new_tokens=6, guidance_scale=1.5),
        ),
        generating(
            "generate-guidance-negative-prompt-cache",
            "guidance_scale 3.0 and a negative prompt without a mask, use_cache true from"
            " generation_config.json: the negative prompt once, then each new token on its cache",
            dict(guidance_scale=3.0, use_cache=True, max_new_tokens=6),
            inputs=dict(
                input_ids=x, attention_mask=mask, negative_prompt_ids=np.array([[9, 21], [5, 17]])
            ),
        ),
        generating(
            "generate-guidance-negative-prompt-rows",
            "one negative prompt row for a batch of 2: upstream runs the first step (the row"
            " broadcasts) and fails on the second",
            inputs=dict(input_ids=x, attention_mask=mask, negative_prompt_ids=np.array([[9, 21]])),
            generate=dict(max_new_tokens=4, guidance_scale=1.5),
        ),
        generating(
            "generate-forced-decoder-ids",
            "forced_decoder_ids [[7, 11], [9, 3]] from generation_config.json: token 11 where the"
            " sequence is 7 long, 3 where it is 9 (lengths count the prompt of 6); the"
            " begin_suppress_tokens index moves by 9 with them, past the 6 new tokens",
            dict(
                forced_decoder_ids=[[7, 11], [9, 3]],
                begin_suppress_tokens=["row-0-token-0"],
                max_new_tokens=6,
            ),
        ),
        generating(
            "generate-sequence-bias",
            "sequence_bias passed to generate() in its JSON form, [[token ids, bias], ...]: token"
            " 31 lowered by 5 everywhere, 19 lowered by 10 after 52, 16 raised by 3 (the model's"
            " greedy tokens are 31 16 26 ... and 52 19 31 ...)",
            generate=dict(max_new_tokens=6, sequence_bias=[[[31], -5.0], [[52, 19], -10.0], [[16], 3.0]]),
        ),
        generating(
            "generate-bad-words-forced-eos",
            "bad_words_ids (row 0's first greedy token alone; row 1's second after its first),"
            " forced_eos_token_id on the last of 6 new tokens, remove_invalid_values, from"
            " generation_config.json",
            dict(
                bad_words_ids=[["row-0-token-0"], ["row-1-token-0", "row-1-token-1"]],
                forced_eos_token_id=["row-0-token-3"],
                remove_invalid_values=True,
                max_new_tokens=6,
            ),
        ),
        generating(
            "generate-length-penalty-decay",
            "exponential_decay_length_penalty [1, 3.0]: the eos score (row 1's fourth greedy"
            " token) grows after the second new token, from generation_config.json",
            dict(
                exponential_decay_length_penalty=[1, 3.0],
                eos_token_id=["row-1-token-3"],
                pad_token_id=0,
                max_new_tokens=8,
            ),
        ),
        generating(
            "generate-forced-bos",
            "forced_bos_token_id 7 after one-token prompts, and begin_suppress_tokens then"
            " applying to the token after it (row 0's second greedy token), from"
            " generation_config.json",
            dict(forced_bos_token_id=7, begin_suppress_tokens=["row-0-token-1"], max_new_tokens=5),
            inputs=dict(input_ids=one, attention_mask=np.ones_like(one)),
        ),
    ]
    out.extend(mosaic_cases(rng))
    return out


# llm-foundry's defaults differ from HF's: alibi off, biases on, learned positions on.
MOSAIC = dict(attn_config=dict(attn_impl="torch"), no_bias=False, learned_pos_emb=True)


def mosaic_case(name, purpose, inputs, config=None, **kw):
    config = config or {}
    attn = {**MOSAIC["attn_config"], **config.pop("attn_config", {})}
    return case(
        name,
        "causal-lm",
        purpose,
        inputs,
        config={**MOSAIC, **config, "attn_config": attn},
        profiles=("mosaic",),
        **kw,
    )


def mosaic_cases(rng):
    ids = lambda B, S: rng.integers(1, 64, size=(B, S)).astype(np.int64)  # noqa: E731
    x, mask = ids(3, 9), np.ones((3, 9), np.int64)
    mask[1, :3], mask[2, :6] = 0, 0
    labels = x.copy()
    labels[0, :2] = -100
    return [
        mosaic_case(
            "mosaic-defaults-left-padding",
            "llm-foundry defaults: learned positions that skip left pads, "
            "biases everywhere, no ALiBi; shifted loss",
            dict(input_ids=x, attention_mask=mask, labels=labels),
        ),
        mosaic_case(
            "mosaic-alibi-bias-max",
            "alibi with alibi_bias_max=4 and 6 heads, no learned positions",
            dict(input_ids=x, attention_mask=mask),
            config=dict(
                d_model=24,
                n_heads=6,
                learned_pos_emb=False,
                attn_config=dict(alibi=True, alibi_bias_max=4),
            ),
        ),
        mosaic_case(
            "mosaic-alibi-and-learned-positions",
            "alibi together with learned positions (both honoured)",
            dict(input_ids=x, attention_mask=mask),
            config=dict(attn_config=dict(alibi=True)),
        ),
        mosaic_case(
            "mosaic-clip-qkv",
            "clip_qkv=0.5 clamps the fused projection",
            dict(input_ids=ids(2, 8)),
            config=dict(attn_config=dict(clip_qkv=0.5)),
        ),
        mosaic_case(
            "mosaic-qk-ln",
            "qk_ln: LayerNorm (with bias) on q and k over all of d_model",
            dict(input_ids=ids(2, 8)),
            config=dict(attn_config=dict(qk_ln=True)),
        ),
        mosaic_case(
            "mosaic-logit-scale",
            "logit_scale=0.25 multiplies the logits",
            dict(input_ids=ids(2, 8)),
            config=dict(logit_scale=0.25),
        ),
        mosaic_case(
            "mosaic-logit-scale-inv-sqrt",
            "logit_scale='inv_sqrt_d_model'",
            dict(input_ids=ids(2, 8)),
            config=dict(logit_scale="inv_sqrt_d_model"),
        ),
        mosaic_case(
            "mosaic-expansion-ratio",
            "expansion_ratio=3: the MLP is 3 * d_model wide",
            dict(input_ids=ids(2, 8)),
            config=dict(expansion_ratio=3),
        ),
        mosaic_case(
            "mosaic-no-bias",
            "no_bias=True: bias-free Linears and LayerNorms",
            dict(input_ids=ids(2, 8)),
            config=dict(no_bias=True),
        ),
        mosaic_case(
            "mosaic-sequence-id",
            "attn_uses_sequence_id: packed sequences attend only within their id",
            dict(
                input_ids=ids(2, 10), sequence_id=np.array([[0] * 4 + [1] * 6, [0] * 7 + [1] * 3])
            ),
            config=dict(
                attn_config=dict(attn_uses_sequence_id=True, alibi=True), learned_pos_emb=False
            ),
        ),
        mosaic_case(
            "mosaic-mask-non-binary",
            "mask values 0.5 and 2 attend (bool cast); only 0 masks",
            dict(
                input_ids=x,
                attention_mask=np.where(mask == 1, 1.0, 0.0)
                * np.array([[1, 1, 0.5, 1, 2, 1, 1, 1, 1]]),
            ),
        ),
        mosaic_case(
            "mosaic-cache-decode-chunk",
            "a chunk of 3 tokens over a cache of 6, left padding, learned positions",
            dict(input_ids=x, attention_mask=mask),
            split=6,
            options=dict(use_cache=True),
        ),
        mosaic_case(
            "mosaic-prefix-lm-alibi",
            "prefix_lm: prefix keys are visible to every query, symmetric ALiBi "
            "-slope*|i-j|; right padding",
            dict(
                input_ids=x[:2],
                attention_mask=np.array([[1] * 9, [1] * 6 + [0] * 3]),
                prefix_mask=np.array([[1] * 4 + [0] * 5, [1] * 2 + [0] * 7]),
            ),
            config=dict(learned_pos_emb=False, attn_config=dict(prefix_lm=True, alibi=True)),
            source="0.4",
        ),
        mosaic_case(
            "mosaic-prefix-lm-learned-positions",
            "prefix_lm with learned positions and no ALiBi",
            dict(input_ids=x[:2], prefix_mask=np.array([[1] * 5 + [0] * 4, [1] * 9])),
            config=dict(attn_config=dict(prefix_lm=True)),
            source="0.4",
        ),
    ]
