"""tools/bench.py's verdict on the targets, from a run's times (no benchmark is run here)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import bench  # noqa: E402


def rounds_of(times):  # per round, each column's time (one run a column a round)
    return [{c: t[i] for c, t in times.items()} for i in range(len(next(iter(times.values()))))]


def test_encode_is_judged_by_its_time_over_onnx_runtimes_at_most_the_bound():
    times = {"numba": [0.8, 0.9, 1.2], "onnxruntime": [1.0, 1.0, 1.0]}
    [(line, met)] = bench.target_verdicts("encode", times, rounds_of(times), {})
    assert met, line  # 0.9 / 1.0 is the bound itself
    assert "numba 0.900x onnxruntime's time, paired 0.900x (at most 0.9x)" in line
    times["numba"] = [0.85, 0.95, 0.91]
    [(line, met)] = bench.target_verdicts("encode", times, rounds_of(times), {})
    assert not met and "0.910x" in line, line


def test_decode_is_judged_by_speed_in_the_same_storage_and_by_the_read_share():
    times = {
        "numba-fp32": [2.0, 2.0, 2.0],
        "llama.cpp-f32": [2.1, 2.3, 2.2],  # 1.10x
        "numba-bf16": [1.0, 1.2, 1.1],
        "llama.cpp-bf16": [1.2, 1.2, 1.2],  # 1.09x
        "numba-q8": [0.5, 0.5, 0.5],  # no target of its own
    }
    shares = {"numba-fp32": 0.849, "numba-bf16": 0.85}
    got = dict(bench.target_verdicts("decode", times, rounds_of(times), shares))
    assert list(got.values()) == [True, False, False, True], got
    lines = list(got)
    assert "numba-fp32 1.100x llama.cpp-f32's speed, paired 1.100x (at least 1.1x)" in lines[0]
    assert "numba-bf16 1.091x llama.cpp-bf16's speed" in lines[1]
    assert lines[2].startswith("numba-fp32 84.9% of the read (at least 85%)")


@pytest.mark.parametrize("workload", ["decode", "long", "embed"])
def test_a_target_whose_columns_did_not_run_is_left_out(workload):
    times = {"numba-fp32": [1.0], "numba-bf16": [1.0], "llama.cpp-bf16": [1.0]}
    got = bench.target_verdicts(workload, times, rounds_of(times), {})
    judged = [line.split(" ")[0] for line, _ in got]
    assert judged == (["numba-bf16"] if workload == "decode" else []), got


def test_columns_that_never_ran_in_one_round_are_judged_without_a_pairing():
    times = {"numba": [0.8, 0.8], "onnxruntime": [1.0, 1.0]}
    rounds = [{"numba": 0.8}, {"onnxruntime": 1.0}, {"numba": 0.8}, {"onnxruntime": 1.0}]
    [(line, met)] = bench.target_verdicts("encode", times, rounds, {})
    assert met and "0.800x onnxruntime's time, paired - (at most 0.9x)" in line, line


def test_a_resized_decoder_sets_the_bytes_the_buffers_and_the_prompt(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "DECODER", dict(bench.DECODER))
    full = bench.decode_weight_bytes(2)
    assert bench.decoder_name() == "MPT-125M"
    (tmp_path / "mpt").mkdir()
    config = dict(bench.DECODER, n_layers=2, vocab_size=4096, architectures=["MptForCausalLM"])
    (tmp_path / "mpt" / "config.json").write_text(json.dumps(config))
    bench.use_decoder_of(str(tmp_path))
    C = 768
    assert bench.decode_weight_bytes(2) == (2 * 12 * C * C + 4096 * C) * 2 < full
    assert bench.decoder_name() == "MPT of 2 layers, vocab 4096"
    assert bench.prompt_ids(32).max() < 4096  # ids the resized vocabulary holds
    assert "architectures" not in bench.DECODER


def test_a_directory_without_a_decoder_leaves_the_shape_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "DECODER", dict(bench.DECODER))
    before = dict(bench.DECODER)
    bench.use_decoder_of(str(tmp_path))
    assert bench.DECODER == before


def test_every_search_setting_runs_on_our_generate_and_the_report_gives_hfs_time_over_ours(
    capsys, monkeypatch
):
    from test_mpt_properties import tiny_mpt

    model = tiny_mpt(vocab_size=1000)
    monkeypatch.setattr(bench, "TURN", (6, 3, 2))  # the tiny model's max_seq_len is 20
    monkeypatch.setattr(bench, "DECODER", {**bench.DECODER, "vocab_size": 1000})
    runs = bench.next_turn_runs(model, None)  # the next turn on ours alone
    assert sorted(runs) == ["turn cache", "turn whole"]
    for run in runs.values():
        run()
    for label, settings in bench.SEARCHES.items():
        settings = {k: v for k, v in settings.items() if k != "echo"}  # the model to run it on
        out = model.generate(
            np.ones((1, 3), np.int64), max_new_tokens=3, seed=0, use_cache=True, **settings
        )
        assert out.shape == (1, 6), label
    rows = {label: (1.0, [1.0]) for label in bench.SEARCHES}
    rows["hf beam 4"] = (2.5, [2.5])
    rows.update({f"pass {n}": (0.2 * (1 + n / 4), []) for n in bench.PASS_SIZES})  # 20 passes
    rows.update({"turn whole": (2.0, []), "turn cache": (0.5, [])})  # no hf rows: not printed
    bench.report_search(rows)
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split()[:1] == ["ours"] and line.endswith("0.25x the time") for line in lines)
    assert not any(line.split()[:1] == ["hf"] for line in lines)
    assert any(line.split()[:2] == ["beam", "4"] and line.endswith("2.50x") for line in lines)
    assert any(line.split()[:1] == ["greedy"] and line.endswith("-") for line in lines)
    # 8 tokens a pass: 10 ms x (1 + 2) = 30 ms, 2.4x a step of 12.5 ms, 8 / 0.03 tokens/s
    eight = next(line.split() for line in lines if line.split()[:2] == ["8", "tokens"])
    assert eight[2:] == ["30.00", "ms", "2.40x", "steps", "266.7", "tokens/s"], eight
