"""gpu-propagation: the article's numbers with the article's own W1 and W2, the per-sample loop, the shape
error, the same-shape GEMM peak, the pure helpers and the CLI (numpy is in the controller venv)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy
import pytest
from gpu_stack_validation import plotting
from gpu_stack_validation.propagation import cli, core, timing

prop = SimpleNamespace()
for _mod in (core, timing, cli):
    prop.__dict__.update({k: v for k, v in vars(_mod).items() if not k.startswith("__")})


def _matvec(w, v):
    return [sum(a * b for a, b in zip(row, v, strict=True)) for row in w]


# --- pure ------------------------------------------------------------------------------------
def test_the_articles_weights_reproduce_its_numbers_in_plain_python():
    assert prop.ARTICLE_W1 == ((3, 8, 5), (4, 9, 7), (4, 1, 3), (8, 8, 4), (3, 1, 9))
    assert prop.ARTICLE_W2 == ((2, 2, 1, 2, 2), (2, 2, 2, 2, 1))
    assert len(prop.ARTICLE_W1) == 5 and all(len(r) == 3 for r in prop.ARTICLE_W1)
    assert len(prop.ARTICLE_W2) == 2 and all(len(r) == 5 for r in prop.ARTICLE_W2)
    a2 = _matvec(prop.ARTICLE_W1, prop.ARTICLE_INPUT_ROW)
    assert a2 == [39, 50, 18, 40, 41] == list(prop.ARTICLE_A2_COLUMN)
    assert _matvec(prop.ARTICLE_W2, a2) == [358, 335] == list(prop.ARTICLE_A3_COLUMN)


def test_flops_and_rates():
    assert prop.propagation_flops(10, [3, 5, 2]) == 2 * 10 * (3 * 5 + 5 * 2)
    assert prop.propagation_flops(8192, [1024] * 3) == 2 * 8192 * 2 * 1024 * 1024
    assert prop.gemm_flops(2, 3, 4) == 48
    assert prop.rate_gflops(2e9, 0.5) == 4.0
    assert prop.rate_gflops(1, 0) is None and prop.rate_gflops(1, None) is None
    assert prop.percent_of(40.0, 50.0) == 80.0
    assert prop.percent_of(None, 50.0) is None and prop.percent_of(1.0, 0) is None


def test_parse_int_list():
    assert prop.parse_int_list("1, 8,64") == [1, 8, 64]
    for bad in ("", "0", "3,-2", "x"):
        with pytest.raises(ValueError):
            prop.parse_int_list(bad)


def test_blas_from_numpy_config_dicts():
    config = {
        "Build Dependencies": {
            "blas": {
                "name": "scipy-openblas",
                "found": True,
                "version": "0.3.31.188.0",
                "openblas configuration": "OpenBLAS 0.3.31 DYNAMIC_ARCH Haswell MAX_THREADS=64",
            },
            "lapack": {"name": "scipy-openblas", "version": "0.3.31.188.0"},
        }
    }
    info = prop.blas_from_config(config)
    assert info["blas"] == "scipy-openblas" and info["blas_version"] == "0.3.31.188.0"
    assert info["lapack"] == "scipy-openblas" and "Haswell" in info["blas_configuration"]
    assert prop.blas_from_config({})["blas"] is None


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("blas_mkl_info:\n    libraries = ['mkl_rt']\n", "mkl"),
        ("openblas64__info:\n    libraries = ['openblas64_']\n", "openblas"),
        ("blas_opt_info:\n  NOT AVAILABLE\n", None),
    ],
)
def test_blas_from_old_show_config_text(text, name):
    assert prop.blas_from_text(text)["blas"] == name


def test_main_without_numpy_exits_2(monkeypatch, capsys):
    monkeypatch.setattr(cli, "import_numpy", lambda: None)
    assert prop.main(["--no-timing"]) == 2
    assert "numpy is not importable" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["--nodes", "a,b"],
        ["--nodes", "5"],
        ["--batches", "0"],
        ["--loop-cap", "0"],
        ["--dtype", "float16"],
        ["--threads", "0"],
    ],
)
def test_usage_errors_exit_2(argv):
    assert prop.main(argv) == 2


# --- numpy -----------------------------------------------------------------------------------
@pytest.fixture
def np():
    return numpy


def test_article_example(np):
    ex = prop.article_example(np)
    assert ex["ok"] and ex["A2_matches"] and ex["A3_matches"] and ex["loop_matches"]
    assert ex["A1_shape"] == [10, 3] and ex["A1_row"] == [1.0, 2.0, 4.0]
    assert ex["A2_shape"] == [5, 10] and ex["A2_column"] == [39, 50, 18, 40, 41]
    assert ex["A3_shape"] == [2, 10] and ex["A3_column"] == [358, 335]
    a1, w1, w2 = prop.article_inputs(np)
    a3 = prop.propagate(np, [w1, w2], a1)
    assert (a3 == np.array([[358.0], [335.0]])).all()  # every column


def test_the_articles_shape_error_without_the_transpose(np):
    demo = prop.shape_error_demo(np)
    assert demo["raised"] is True
    assert "(5,3)" in demo["message"] and "(10,3)" in demo["message"]
    assert "not aligned" in demo["message"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batched_equals_the_per_sample_loop(np, dtype):
    check = prop.loop_check(np, [7, 11, 5, 3], 13, dtype, seed=1)
    assert check["ok"] and check["output_shape"] == [3, 13]


def test_wrong_weights_are_caught(np, monkeypatch):
    monkeypatch.setattr(core, "ARTICLE_W2", ((2, 2, 1, 2, 2), (2, 2, 2, 2, 2)))
    assert prop.main(["--no-timing", "--quiet"]) == 1


def test_run_propagation_small_timing(np):
    report = prop.run_propagation(
        nodes=[32, 32, 32], batches=[1, 16, 64], gpu="none", loop_cap=16, peak_size=64, repeat=1
    )
    assert report["ok"] and report["failures"] == []
    rows = report["numpy"]["rows"]
    assert [r["batch"] for r in rows] == [1, 16, 64]
    assert rows[-1]["loop_extrapolated"] and rows[-1]["loop_samples_timed"] == 16
    for row in rows:
        assert row["batched_gflops"] > 0 and row["loop_gflops"] > 0 and row["speedup"] > 0
        assert row["batched_pct_of_peak"] > 0
    assert report["goal"]["batch"] == 64 and report["goal"]["value_pct"] == rows[-1]["batched_pct_of_peak"]
    assert isinstance(report["goal"]["met"], bool)
    assert report["gpu"] is None and "no GPU timing" in report["notes"][0]
    assert report["numpy"]["gemm_peak_gflops"] > 0 and report["blas"]["numpy_version"]
    # the peak of the layers' own shapes at the largest batch, the square one beside it
    assert report["numpy"]["peak_shapes"] == [[32, 32, 64], [32, 32, 64]]
    assert report["numpy"]["square_peak_shape"] == [64, 64, 64] and report["numpy"]["square_peak_gflops"] > 0
    assert all(r["batched_pct_of_square_peak"] > 0 for r in rows)
    # the largest batch and its same-shape peak were also timed alternately; the peak is the best seen
    interleaved = report["numpy"]["gemm_peak_gflops_interleaved"]
    assert len(interleaved) == 2 and report["numpy"]["gemm_peak_gflops"] >= max(interleaved)
    json.dumps(report)
    text = prop.render_table(report)
    assert "358, 335" in text and "not aligned" in text and "Goal:" in text


def test_main_json_and_plot(np, tmp_path, capsys):
    out, png = tmp_path / "p.json", tmp_path / "p.png"
    argv = [
        "--nodes",
        "16,16",
        "--batches",
        "1,8",
        "--peak-size",
        "32",
        "--repeat",
        "1",
        "--gpu",
        "none",
        "--json",
        "--quiet",
        "--output",
        str(out),
        "--plot",
        str(png),
    ]
    assert prop.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    for key in (
        "ok",
        "failures",
        "notes",
        "blas",
        "article_example",
        "shape_error",
        "loop_check",
        "numpy",
        "gpu",
        "goal",
        "config",
        "plot",
        "load_average",
    ):
        assert key in printed
    assert set(printed["load_average"]) == {"start", "end"}
    assert printed["plot"] == str(png) and png.read_bytes()[:4] == b"\x89PNG"
    assert printed["article_example"]["weights_source"] == "the article's W1 and W2"


def test_unwritable_output_exits_2_before_any_work(tmp_path, capsys):
    assert prop.main(["--no-timing", "--output", str(tmp_path / "absent" / "p.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_plot_module_draws_both_peaks(np, tmp_path):
    report = prop.run_propagation(
        nodes=[16, 16], batches=[1, 8], gpu="none", loop_cap=4, peak_size=32, repeat=1
    )
    assert plotting.propagation_plot(report, str(tmp_path / "p.png")) is None
