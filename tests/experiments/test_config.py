"""Study configurations: defaults, TOML files, and errors that name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from curvsketch.experiments.config import ConfigError, StudyConfig, config_from_dict, load_config
from curvsketch.experiments.presets import preset

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_defaults_are_the_paper_mnist_setting():
    c = StudyConfig().validate()
    assert (c.model.name, c.train.lr, c.train.batch_size) == ("paper_mlp", 0.3, 500)
    assert (c.sketch.outer, c.sketch.inner) == (355, 710)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_bundled_configs_load(path):
    assert load_config(path).name == path.stem


def test_presets():
    assert preset("demo").hessian.steps == (0, 100, 250, 500, 1000)
    assert preset("quick").hessian.exact == "false"
    with pytest.raises(KeyError, match="known"):
        preset("nope")


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown key sketch\.'outr'; did you mean 'outer'"):
        config_from_dict({"sketch": {"outr": 3}})
    with pytest.raises(ConfigError, match=r"did you mean \[train\]"):
        config_from_dict({"trian": {}})


def test_bad_values_name_the_fix():
    with pytest.raises(ConfigError, match=r"hessian\.kind"):
        config_from_dict({"hessian": {"kind": "fisher"}})
    with pytest.raises(ConfigError, match=r"raise train\.steps"):
        config_from_dict({"train": {"steps": 10}, "hessian": {"steps": [0, 20]}})
    with pytest.raises(ConfigError, match="inner >= outer"):
        config_from_dict({"sketch": {"outer": 10, "inner": 5}})
    with pytest.raises(ConfigError, match=r"sketch\.recovery = 'lanczos' is not valid.*krylov"):
        config_from_dict({"sketch": {"recovery": "lanczos"}})
    with pytest.raises(ConfigError, match=r"needs sketch\.recovery = 'hmt'"):
        config_from_dict({"sketch": {"recovery": "krylov", "power_iters": 1}})
    assert config_from_dict({"sketch": {"recovery": "krylov"}}).sketch.recovery == "krylov"


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(FileNotFoundError, match="configs/"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\nname=")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"train": {"steps": "40"}}, r"train\.steps = '40' \(a string: drop the quotes\)"),
        ({"train": {"lr": "fast"}}, r"train\.lr = 'fast'.*a number"),
        ({"train": {"steps": 1.5}}, r"train\.steps = 1\.5 must be an integer"),
        ({"train": {"batch_size": True}}, r"train\.batch_size = true \(a boolean\)"),
        ({"hessian": {"steps": [0, 0.5]}}, r"hessian\.steps\[1\] = 0\.5 must be an integer"),
        ({"analysis": {"scores": "magnitude"}}, r"analysis\.scores = 'magnitude' must be a list"),
        ({"model": {"kwargs": []}}, r"model\.kwargs = \[\] must be a table"),
        ({"name": ["a"]}, r"name = \['a'\] must be a string"),
    ],
)
def test_wrong_types_name_the_key(raw, words):
    with pytest.raises(ConfigError, match=words):
        config_from_dict(raw)


def test_types_are_checked_for_configs_built_in_python():
    from dataclasses import replace

    from curvsketch.experiments.config import TrainConfig

    with pytest.raises(ConfigError, match=r"train\.steps = '40'"):
        StudyConfig(train=TrainConfig(steps="40")).validate()
    with pytest.raises(ConfigError, match=r"sketch\.block_size = 0"):
        replace(StudyConfig(), sketch=replace(StudyConfig().sketch, block_size=0)).validate()


def test_integers_for_numbers_become_floats_and_are_range_checked():
    assert config_from_dict({"train": {"lr": 1}}).train.lr == 1.0
    with pytest.raises(ConfigError, match=r"analysis\.rhos = \[0\.5, 1\.0\]: every ρ"):
        config_from_dict({"analysis": {"rhos": [0.5, 1]}})
    with pytest.raises(ConfigError, match=r"sweep\.rho = 1\.0 must lie in \(0, 1\)"):
        config_from_dict({"sweep": {"rho": 1}})


def test_values_checked_at_load_time():
    cases = [
        ({"sketch": {"block_size": 0}}, r"sketch\.block_size = 0 must be >= 1"),
        ({"hessian": {"engine": "turbo"}}, r"hessian\.engine = 'turbo'.*graph, graph_batched"),
        ({"hessian": {"kind": "ggn", "engine": "graph_batched"}}, r"kind = 'ggn'; use one of"),
        ({"hessian": {"splits": ["train", "train"]}}, r"names a split twice"),
        ({"analysis": {"main_k": 35}}, r"analysis\.main_k = 35 must be one of analysis\.ks"),
        ({"train": {"lr": float("nan")}}, r"train\.lr = nan must be a finite number"),
        ({"data": {"name": "cifar"}}, r"data\.name = 'cifar' is not a known data set"),
        ({"model": {"name": "mlp"}}, r"model\.name = 'mlp' needs model\.kwargs\.sizes"),
        ({"model": {"kwargs": {"width": 3}}}, r"model\.kwargs\.width is not an argument of"),
        ({"sweep": {"widths": [20, 20]}}, r"sweep\.widths = \[20, 20\] must be distinct"),
    ]
    for raw, words in cases:
        with pytest.raises(ConfigError, match=words):
            config_from_dict(raw)
    # folder names as the loader reads them: case, '-' and '_' ignored
    assert config_from_dict({"data": {"name": "Fashion_MNIST"}}).data.name == "Fashion_MNIST"


def test_the_sweep_takes_scaled_mlp_arguments():
    c = config_from_dict({"model": {"kwargs": {"depth": 5}}, "sweep": {"widths": [20, 40]}})
    assert c.model.kwargs == {"depth": 5}
    with pytest.raises(ConfigError, match=r"model\.kwargs\.depth is not an argument of paper_mlp"):
        config_from_dict({"model": {"kwargs": {"depth": 5}}})


def test_a_binary_file_is_named(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(b"\xff\xfe[data]")
    with pytest.raises(ConfigError, match=r"c\.toml: not a UTF-8 text file"):
        load_config(path)


def test_trace_and_density_keys():
    a = StudyConfig().analysis
    assert (a.trace_products, a.trace_method, a.density_probes, a.density_steps) == (
        60,
        "xtrace",
        8,
        40,
    )
    off = config_from_dict({"analysis": {"trace_products": 0, "density_probes": 0}}).analysis
    assert (off.trace_products, off.density_probes) == (0, 0)
    c = config_from_dict({"analysis": {"trace_method": "hutchinson", "trace_products": 1}})
    assert c.analysis.trace_products == 1
    bad = {
        "trace_products": (
            {"trace_products": 1},
            r"analysis\.trace_products = 1 must be 0 \(no trace estimate\) or >= 2 .*'xtrace'",
        ),
        "trace_products_hutchpp": (
            {"trace_products": 2, "trace_method": "hutch++"},
            r"trace_products = 2 must be 0 .* or >= 3",
        ),
        "trace_products_negative": ({"trace_products": -5}, r"trace_products = -5"),
        "trace_method": (
            {"trace_method": "xtrce"},
            r"analysis\.trace_method = 'xtrce' is not valid; did you mean 'xtrace'",
        ),
        "density_probes": ({"density_probes": -1}, r"analysis\.density_probes = -1 must be >= 0"),
        "density_steps": ({"density_steps": -2}, r"analysis\.density_steps = -2 must be >= 0"),
        "string": (
            {"trace_products": "60"},
            r"trace_products = '60' \(a string: drop the quotes\) must be an integer",
        ),
        "bool": ({"density_probes": True}, r"density_probes = true \(a boolean\)"),
        "float": ({"density_steps": 4.5}, r"density_steps = 4\.5 must be an integer"),
    }
    for keys, match in bad.values():
        with pytest.raises(ConfigError, match=match):
            config_from_dict({"analysis": keys})
