"""validate_serving reads vllm bench serve's saved JSON, rebuilds the benchmark and compares; bad files exit 2."""
import json

import pytest

from sim.common.paths import DATA_DIR
from sim.fidelity.validate_serving import load_results, main

EXAMPLE = DATA_DIR / "validation" / "example_vllm_bench_serve.json"
BASE = json.loads(EXAMPLE.read_text())


def test_example_file_prints_the_comparison_and_one_json_line(capsys):
    assert main([str(EXAMPLE), "--model", "llama2_70b", "--tp", "4"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert summary["runs"] == 1
    for key in ("ttft_mape_pct", "itl_mape_pct", "tpot_mape_pct", "e2e_mape_pct", "throughput_mape_pct"):
        assert summary[key] is not None and summary[key] >= 0
    assert any("mean_ttft_ms" in line for line in out[:-1])


def test_fields_rebuild_the_benchmark(tmp_path):
    run = load_results(EXAMPLE)[0]
    assert (run.concurrency, run.request_rate, run.num_prompts) == (8, None, 64)
    assert (run.mean_input_tokens, run.mean_output_tokens) == (1024, 128)
    detailed = dict(BASE, request_rate=2.5, max_concurrency=None, completed=3, input_lens=[100, 200, 50, 70],
                    output_lens=[10, 20, 0, 5])
    path = tmp_path / "d.json"
    path.write_text(json.dumps(detailed))
    run = load_results(path)[0]
    # the failed request (output 0) is not replayed
    assert run.input_lens == (100, 200, 70) and run.output_lens == (10, 20, 5) and run.num_prompts == 3
    assert run.request_rate == 2.5 and run.concurrency is None


def test_appended_results_are_one_run_per_line(tmp_path, capsys):
    path = tmp_path / "sweep.jsonl"
    lines = [dict(BASE, max_concurrency=c, num_prompts=16, completed=16, total_input_tokens=16 * 512,
                  total_output_tokens=16 * 32) for c in (1, 4)]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    assert [r.concurrency for r in load_results(path)] == [1, 4]
    assert main([str(path), "--model", "llama3_8b"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["runs"] == 2


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ("", "empty file"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({k: v for k, v in BASE.items() if k != "completed"}), "missing field"),
    (json.dumps(dict(BASE, max_concurrency=0)), "max_concurrency"),
    (json.dumps(dict(BASE, request_rate=-1)), "request_rate"),
    (json.dumps(dict(BASE, input_lens=[1, 2], output_lens=[3])), "input_lens"),
    (json.dumps(dict(BASE, completed=0)), "completed"),
])
def test_bad_files_are_one_line_errors_with_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(SystemExit) as exc:
        main([str(path), "--model", "llama2_70b", "--tp", "4"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_missing_file_and_unknown_model_exit_2(tmp_path, capsys):
    for argv in ([str(tmp_path / "nope.json"), "--model", "llama2_70b"], [str(EXAMPLE), "--model", "gpt5"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2


def test_prompts_longer_than_the_context_are_an_error_not_nan_metrics(tmp_path, capsys):
    """llama3_8b takes 8192 tokens: a benchmark of 9000-token prompts has nothing to predict (once: NaN JSON, exit 0)."""
    from sim.fidelity import serving

    path = tmp_path / "long.json"
    path.write_text(json.dumps(dict(BASE, num_prompts=4, completed=4, total_input_tokens=4 * 9000,
                                    total_output_tokens=4 * 16)))
    for module, argv in ((main, [str(path), "--model", "llama3_8b"]),
                         (serving.main, ["--model", "llama3_8b", "--input-tokens", "9000", "--output-tokens", "16",
                                         "--num-prompts", "4"])):
        with pytest.raises(SystemExit) as exc:
            module(argv)
        captured = capsys.readouterr()
        assert exc.value.code == 2 and "NaN" not in captured.out
        err = captured.err.strip()
        assert err.startswith("error: ") and "4 of 4 requests" in err and "9000" in err and "\n" not in err
