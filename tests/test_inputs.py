"""Calling conventions and boundary checks: Keras-style input, tuples, and clear errors for bad
input."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, tiny_model

IDS = np.array([[0, 5, 9, 12, 2], [0, 7, 3, 2, 1]])
MASK = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])


def test_keras_style_inputs_dict_list_and_single_array():
    model = tiny_model(task="token-classification", profile="tf")
    ref = model(IDS, attention_mask=MASK).logits
    assert_close(model({"input_ids": IDS, "attention_mask": MASK}).logits, ref, atol=0, what="dict")
    assert_close(model([IDS, MASK]).logits, ref, atol=0, what="list in signature order")
    labels = np.array([[0, 1, 2, 1, 0], [2, 2, 1, 0, -100]])
    from_list = model([IDS, MASK, None, None, None, None, None, None, labels])
    assert_close(
        from_list.loss,
        model(IDS, attention_mask=MASK, labels=labels).loss,
        atol=0,
        what="labels in list",
    )
    with pytest.raises(ValueError, match="given both"):
        model({"input_ids": IDS, "attention_mask": MASK}, attention_mask=MASK)
    with pytest.raises(TypeError, match="unknown input name"):
        model({"input_ids": IDS, "token_type_ids": IDS})


def test_to_tuple_and_return_dict_false():
    model = tiny_model(task="question-answering", num_labels=2)
    out = model(
        IDS,
        start_positions=np.array([1, 2]),
        end_positions=np.array([3, 3]),
        output_hidden_states=True,
    )
    assert [type(x) for x in out.to_tuple()] == [np.ndarray, np.ndarray, np.ndarray, tuple]
    tup = model(
        IDS,
        start_positions=np.array([1, 2]),
        end_positions=np.array([3, 3]),
        output_hidden_states=True,
        return_dict=False,
    )
    assert len(tup) == 4 and tup[0].shape == () and tup[1].shape == (2, 5)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(input_ids=np.array([[0, 5, 40]])), ValueError, "contains 40, outside the vocabulary"),
        (dict(input_ids=np.array([[0, -3, 4]])), ValueError, "contains -3"),
        (dict(input_ids=np.array([[0.0, 5.0]])), TypeError, "input_ids must be integers"),
        (dict(input_ids=np.array([0, 5, 6])), ValueError, "must have 2 dimensions"),
        (
            dict(input_ids=IDS, attention_mask=np.ones((2, 4))),
            ValueError,
            r"attention_mask must have shape \(2, 5\)",
        ),
        (
            dict(input_ids=IDS, attention_mask=np.array([["a"] * 5] * 2)),
            TypeError,
            "attention_mask must be numeric",
        ),
        (
            dict(input_ids=IDS, position_ids=np.array([[0, 1, 2, 3, 99]] * 2)),
            ValueError,
            "position_ids contains 99",
        ),
        (dict(input_ids=IDS, head_mask=np.ones(3)), ValueError, "head_mask must have shape"),
        (dict(input_ids=np.arange(3, 26)[None] % 40), ValueError, "needs position id 24.*24 rows"),
        (dict(), ValueError, "exactly one of input_ids and inputs_embeds"),
        (dict(input_ids=IDS, inputs_embeds=np.zeros((2, 5, 16))), ValueError, "exactly one"),
        (dict(inputs_embeds=np.zeros((2, 5, 8))), ValueError, "inputs_embeds must have shape"),
    ],
)
def test_bad_inputs_name_the_problem(kwargs, error, message):
    with pytest.raises(error, match=message):
        tiny_model()(**kwargs)


def test_bad_labels_name_the_problem():
    cls = tiny_model(task="token-classification")
    with pytest.raises(ValueError, match=r"labels contain 7, outside \[0, 3\)"):
        cls(IDS, labels=np.full((2, 5), 7))
    with pytest.raises(TypeError, match="unexpected input"):
        cls(IDS, start_positions=np.array([0, 1]))
    qa = tiny_model(task="question-answering", profile="tf", num_labels=2)
    with pytest.raises(ValueError, match="start_positions .* value 9 is outside"):
        qa(IDS, start_positions=np.array([9, 0]), end_positions=np.array([1, 1]))
    with pytest.raises(ValueError, match="num_labels == 2"):
        tiny_model(task="question-answering", num_labels=3)


def test_tf_profile_refuses_head_mask_and_3d_masks():
    model = tiny_model(profile="tf")
    with pytest.raises(ValueError, match="head_mask is not supported by the tf profile"):
        model(IDS, head_mask=np.ones(4))
    with pytest.raises(ValueError, match="only a 2D attention_mask"):
        model(IDS, attention_mask=np.ones((2, 5, 5)))


def test_multiple_choice_flattens_choices():
    model = tiny_model(task="multiple-choice")
    choices = np.stack([IDS, IDS[::-1]])  # [B=2, N=2, S=5]
    out = model(choices, labels=np.array([0, 1]))
    assert out.logits.shape == (2, 2) and out.loss.shape == ()
    with pytest.raises(ValueError, match=r"input_ids \[B, N, S\]"):
        model(IDS)


def test_outputs_upstream_does_not_have_are_fields_left_out_of_keys_tuple_and_dict():
    """MPNet token classification's pooled output and MPT's presents on token classification / QA
    are real fields, read by the upstream tuple table, but not part of upstream's output class."""
    from reference.outputs import TokenClassifierOutput, upstream_tuple

    logits, pooled = np.zeros((1, 2, 3)), np.ones((1, 4))
    out = TokenClassifierOutput(None, logits, None, None, pooler_output=pooled)
    assert (
        out.keys() == ["logits"] and list(out.to_dict()) == ["logits"] and len(out.to_tuple()) == 1
    )
    assert upstream_tuple(out, "mpnet", "token-classification", "tf")[1] is pooled
    assert len(upstream_tuple(out, "mpnet", "token-classification", "pt")) == 1
