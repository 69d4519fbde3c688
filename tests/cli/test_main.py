"""The curvsketch command: help, and errors that name the fix (exit status 2)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from curvsketch.cli.main import main


def run(tmp_path, text, *extra):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    return main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", *extra])


def test_help_lists_commands_and_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for word in ("demo", "run", "metrics-study", "results.json", "configs/"):
        assert word in text


def test_missing_data_folder(tmp_path, capsys):
    code = run(tmp_path, '[data]\nname = "cifar10"\n', "--data-root", str(tmp_path / "nowhere"))
    assert code == 2
    err = capsys.readouterr().err
    assert "curvsketch: error:" in err and "cifar-10-batches-py" in err


def test_folder_dataset_without_root(tmp_path, capsys):
    assert run(tmp_path, '[data]\nname = "mnist"\n') == 2
    assert "--data-root" in capsys.readouterr().err


def test_bad_config_key(tmp_path, capsys):
    assert run(tmp_path, "[sketch]\nouter = 10\ninnner = 20\n") == 2
    assert "did you mean 'inner'" in capsys.readouterr().err


def test_unknown_model_name(tmp_path, capsys):
    assert (
        run(tmp_path, '[model]\nname = "vgg16"\n[train]\nsteps = 1\n[hessian]\nsteps = [0]\n') == 2
    )
    err = capsys.readouterr().err
    assert "unknown model name 'vgg16'" in err and "paper_mlp" in err


def test_metrics_study_writes_a_figure(tmp_path):
    assert (
        main(["metrics-study", "--out", str(tmp_path), "--dims", "16", "32", "--samples", "3"]) == 0
    )
    assert (tmp_path / "metrics_study.png").stat().st_size > 5_000


def test_python_dash_m_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "curvsketch", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("curvsketch ")


# --------------------------------------------------------- one error line, before any work

TINY = {  # bundled 8x8 digits, a 460-parameter MLP: valid as it is (see test_preflight)
    "data": 'name = "digits"\nn_test_per_class = 20\nhessian_per_class = 8',
    "model": 'name = "mlp"\nkwargs = { sizes = [64, 6, 10] }',
    "train": "steps = 2\nlr = 0.1\nbatch_size = 64",
    "hessian": 'steps = [0, 2]\nsplits = ["test"]\nexact = "false"',
    "sketch": "outer = 20\ninner = 40\nerror_tests = 3",
    "analysis": "ks = [5, 20]\nmain_k = 20\nrhos = [0.02]\nstability_ks = [5]\n"
    'random_draws = 2\nscores = ["magnitude"]',
}


def tiny_toml(extra: str = "", **keys: str) -> str:
    """TINY with ``section__key = value`` replaced or added, plus ``extra`` TOML."""
    sections = dict(TINY)
    for name, value in keys.items():
        section, key = name.split("__")
        kept = [ln for ln in sections[section].split("\n") if not ln.startswith(f"{key} ")]
        sections[section] = "\n".join([*kept, f"{key} = {value}"])
    return "".join(f"[{s}]\n{body}\n" for s, body in sections.items()) + extra


def one_error_line(capsys) -> str:
    """The command printed exactly one line on stderr, a ``curvsketch: error:`` line."""
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("curvsketch: error: "), lines
    return lines[0]


BAD_CONFIGS = {
    # wrong types: each used to crash with a TypeError, run with a truncated value, or
    # fail after training with a message that named no key
    "steps_string": ({"train__steps": '"40"'}, ["train.steps = '40'", "integer", "quotes"]),
    "lr_string": ({"train__lr": '"fast"'}, ["train.lr = 'fast'", "a number"]),
    "steps_float": ({"train__steps": "1.5"}, ["train.steps = 1.5", "integer"]),
    "batch_size_bool": ({"train__batch_size": "true"}, ["train.batch_size = true", "boolean"]),
    "train_seed_string": ({"train__seed": '"a"'}, ["train.seed"]),
    "outer_string": ({"sketch__outer": '"20"'}, ["sketch.outer = '20'"]),
    "inner_float": ({"sketch__inner": "40.0"}, ["sketch.inner = 40.0", "integer"]),
    "sketch_seed_float": ({"sketch__seed": "1.5"}, ["sketch.seed = 1.5"]),
    "hessian_steps_int": ({"hessian__steps": "2"}, ["hessian.steps = 2", "a list"]),
    "hessian_steps_float": ({"hessian__steps": "[0.5]"}, ["hessian.steps[0] = 0.5"]),
    "splits_string": ({"hessian__splits": '"test"'}, ["hessian.splits = 'test'", "a list"]),
    "max_exact_dim_string": ({"hessian__max_exact_dim": '"big"'}, ["hessian.max_exact_dim"]),
    "ks_int": ({"analysis__ks": "10"}, ["analysis.ks = 10", "a list"]),
    "rhos_string": ({"analysis__rhos": '"0.1"'}, ["analysis.rhos"]),
    "kwargs_string": ({"model__kwargs": '"x"'}, ["model.kwargs = 'x'", "table"]),
    "model_name_int": ({"model__name": "3"}, ["model.name = 3", "string"]),
    "model_seed_string": ({"model__seed": '"x"'}, ["model.seed = 'x'"]),
    "n_test_string": ({"data__n_test_per_class": '"20"'}, ["data.n_test_per_class = '20'"]),
    "input_shape_string": (
        {"data__name": '"synthetic"', "data__input_shape": '"64"'},
        ["data.input_shape"],
    ),
    "root_int": ({"data__root": "3"}, ["data.root = 3"]),
    # ranges that used to fail after training (or never), without naming the key
    "block_size_zero": ({"sketch__block_size": "0"}, ["sketch.block_size = 0", ">= 1"]),
    "power_iters_negative": (
        {"sketch__power_iters": "-1", "sketch__recovery": '"hmt"'},
        ["sketch.power_iters = -1"],
    ),
    "error_tests_zero": ({"sketch__error_tests": "0"}, ["sketch.error_tests = 0"]),
    "micro_batch_zero": ({"hessian__micro_batch_size": "0"}, ["hessian.micro_batch_size = 0"]),
    "engine_unknown": ({"hessian__engine": '"turbo"'}, ["hessian.engine = 'turbo'", "vmap"]),
    "random_draws_zero": ({"analysis__random_draws": "0"}, ["analysis.random_draws = 0"]),
    "ggn_probes_zero": (
        {"analysis__ggn_diag_probes": "0", "analysis__scores": '["ggn_diag"]'},
        ["analysis.ggn_diag_probes = 0"],
    ),
    "hessian_per_class_zero": ({"data__hessian_per_class": "0"}, ["data.hessian_per_class = 0"]),
    "batch_larger_than_data": ({"train__batch_size": "100000"}, ["train.batch_size", "1597"]),
    # sizes that used to be skipped silently after training (exit 0)
    "k_beyond_outer": ({"analysis__ks": "[5, 20, 30]"}, ["analysis.ks", "sketch.outer = 20"]),
    "main_k_not_in_ks": ({"analysis__main_k": "30"}, ["analysis.main_k = 30", "analysis.ks"]),
    "rho_beyond_outer": ({"analysis__rhos": "[0.2]"}, ["analysis.rhos", "k = round(ρ·D) = 92"]),
    "stability_k_beyond_outer": ({"analysis__stability_ks": "[30]"}, ["analysis.stability_ks"]),
    "krylov_blocks_beyond_D": (
        {"sketch__recovery": '"krylov"', "sketch__inner": "460", "sketch__block_size": "64"},
        ["sketch.inner", "sketch.block_size", "D = 460"],
    ),
    # model arguments and the model against the data
    "kwargs_unknown": (
        {"model__kwargs": "{ sizes = [64, 6, 10], foo = 1 }"},
        ["model.kwargs.foo", "sizes, activation"],
    ),
    "kwargs_seed": (
        {"model__kwargs": "{ sizes = [64, 6, 10], seed = 3 }"},
        ["model.kwargs.seed", "model.seed"],
    ),
    "sizes_float": ({"model__kwargs": "{ sizes = [64, 6.5, 10] }"}, ["model.kwargs", "sizes"]),
    "sizes_string": ({"model__kwargs": '{ sizes = "64" }'}, ["model.kwargs", "sizes"]),
    "activation_unknown": (
        {"model__kwargs": '{ sizes = [64, 6, 10], activation = "swish" }'},
        ["model.kwargs", "'swish'", "tanh"],
    ),
    "activation_int": (
        {"model__kwargs": "{ sizes = [64, 6, 10], activation = 3 }"},
        ["model.kwargs", "activation"],
    ),
    "width_float": (
        {"model__name": '"scaled_mlp"', "model__kwargs": "{ width = 2.5, input_dim = 64 }"},
        ["model.kwargs", "width", "2.5"],
    ),
    "width_missing": (
        {"model__name": '"scaled_mlp"', "model__kwargs": "{ input_dim = 64 }"},
        ["model.kwargs.width"],
    ),
    "paper_mlp_depth": (
        {"model__name": '"paper_mlp"', "model__kwargs": "{ depth = 3 }"},
        ["model.kwargs.depth", "scaled_mlp"],
    ),
    "input_width_mismatch": (
        {"model__kwargs": "{ sizes = [256, 6, 10] }"},
        ["data.name = 'digits'", "(64,)", "model.kwargs.sizes to 64"],
    ),
    "cnn_on_flat_inputs": (
        {"model__name": '"deepobs_3c3d"', "model__kwargs": "{}"},
        ["model.name = 'deepobs_3c3d'", "(64,)"],
    ),
    "too_few_outputs": ({"model__kwargs": "{ sizes = [64, 6, 5] }"}, ["5 outputs", "10 classes"]),
    "too_many_outputs": (
        {"model__kwargs": "{ sizes = [64, 6, 12] }"},
        ["12 outputs", "10 classes"],
    ),
    "synthetic_more_classes": (
        {"data__name": '"synthetic"', "data__input_shape": "[64]", "data__num_classes": "20"},
        ["10 outputs", "20 classes", "sizes to 20"],
    ),
    # data settings
    "data_name_unknown": (
        {"data__name": '"mnsit"'},
        ["data.name = 'mnsit'", "did you mean 'mnist'", "mnist16, digits, synthetic"],
    ),
    "hessian_per_class_too_large": (
        {"data__hessian_per_class": "1000"},
        ["data.hessian_per_class = 1000", "20 test samples per class", "at most 20"],
    ),
    "mnist16_hessian_per_class_too_large": (
        {
            "data__name": '"mnist16"',
            "data__n_train_per_class": "20",
            "data__n_test_per_class": "10",
            "data__hessian_per_class": "15",
            "model__kwargs": "{ sizes = [256, 6, 10] }",
        },
        ["data.hessian_per_class = 15", "data.n_test_per_class = 10", "at most 10"],
    ),
    "n_test_too_large": ({"data__n_test_per_class": "1000"}, ["data.n_test_per_class = 1000"]),
    "synthetic_input_shape_zero": (
        {"data__name": '"synthetic"', "data__input_shape": "[0]"},
        ["data.input_shape = [0]"],
    ),
}


@pytest.mark.parametrize(("keys", "words"), BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_config_is_one_error_line_before_training(tmp_path, capsys, keys, words):
    assert run(tmp_path, tiny_toml(**keys)) == 2
    line = one_error_line(capsys)
    for word in words:
        assert word in line
    assert not (tmp_path / "out" / "checkpoints").exists()  # nothing was trained


def test_top_level_name_must_be_a_string(tmp_path, capsys):
    assert run(tmp_path, "name = 3\n" + tiny_toml()) == 2
    assert "name = 3 must be a string" in one_error_line(capsys)


BAD_SWEEPS = {
    "model_not_scaled_mlp": (
        '[model]\nname = "mlp"\nkwargs = { sizes = [64, 6, 10] }\n',
        ["sweep.widths", "model.name = 'mlp'"],
    ),
    "rho_outside": ('[model]\nname = "scaled_mlp"\n', ["sweep.rho = 2.0"]),
    "input_width_mismatch": (
        '[model]\nname = "scaled_mlp"\nkwargs = { input_dim = 256 }\n',
        ["sweep.widths = [2, 3]", "width 2", "(64,)", "model.kwargs.input_dim = 64"],
    ),
    "width_in_kwargs": (
        '[model]\nname = "scaled_mlp"\nkwargs = { width = 3, input_dim = 64 }\n',
        ["model.kwargs.width = 3", "sweep.widths"],
    ),
}


@pytest.mark.parametrize(("model", "words"), BAD_SWEEPS.values(), ids=BAD_SWEEPS.keys())
def test_bad_sweep_is_one_error_line_before_training(tmp_path, capsys, model, words):
    text = tiny_toml().replace('[model]\nname = "mlp"\nkwargs = { sizes = [64, 6, 10] }\n', model)
    rho = "2.0" if "rho" in words[0] else "0.05"
    assert run(tmp_path, text + f"[sweep]\nwidths = [2, 3]\nrho = {rho}\n") == 2
    line = one_error_line(capsys)
    for word in words:
        assert word in line
    assert not (tmp_path / "out").exists()


BAD_FLAGS = {
    "budget_zero": (["recover", "--store", "S", "--memory-budget", "0"], ["--memory-budget 0"]),
    "budget_negative": (
        ["recover", "--store", "S", "--memory-budget", "-5"],
        ["--memory-budget -5", "positive"],
    ),
    "out_is_a_folder": (["recover", "--store", "S", "--out", "."], ["--out", "is a folder"]),
    "out_folder_missing": (
        ["recover", "--store", "S", "--out", "no/such/x.pt"],
        ["--out", "does not exist"],
    ),
    "out_under_a_file": (["recover", "--store", "S", "--out", "f/x.pt"], ["--out", "is a file"]),
    "metrics_dims_too_small": (["metrics-study", "--out", "M", "--dims", "0"], ["--dims 0"]),
    "metrics_samples_too_few": (["metrics-study", "--out", "M", "--samples", "1"], ["--samples 1"]),
    "workers_zero": (["measure", "c.toml", "--store", "S", "--of", "0"], ["--of 0"]),
    "worker_outside": (
        ["measure", "c.toml", "--store", "S", "--worker", "2", "--of", "2"],
        ["--worker 2", "[0, --of = 2)"],
    ),
}


@pytest.mark.parametrize(("argv", "words"), BAD_FLAGS.values(), ids=BAD_FLAGS.keys())
def test_bad_flag_is_one_error_line_before_any_work(tmp_path, capsys, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f").write_text("a file")
    (tmp_path / "c.toml").write_text(tiny_toml())
    assert main(argv) == 2
    line = one_error_line(capsys)
    for word in words:
        assert word in line
    assert not (tmp_path / "S").exists() and not (tmp_path / "M").exists()  # no work began


def test_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["recover", "--store", "S", "--memory-budget", "lots"])
    assert exc.value.code == 2
    line = one_error_line(capsys)
    assert "--memory-budget" in line and "'lots'" in line and "--help" in line


def test_os_errors_are_one_line_naming_the_path(tmp_path, capsys, monkeypatch):
    import errno

    import curvsketch.cli.main as cli

    def full_disk(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "x"))

    monkeypatch.setattr(cli, "_cmd_metrics_study", full_disk)
    assert main(["metrics-study", "--out", str(tmp_path)]) == 2
    line = one_error_line(capsys)
    assert str(tmp_path / "out" / "x") in line and "No space left" in line and "--out" in line
