"""params.yaml is the only source of values: a missing, unknown or mistyped key is an error naming it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from candidates.deep.config import DeepConfig
from candidates.union import CandidatesConfig
from core import config
from core.dataconfig import DataConfig
from core.guards import ResourcesConfig
from features.base import FeaturesConfig
from pipeline.choose import ChooseConfig
from pipeline.engine import DaskConfig, dask_config, engine
from pipeline.publish import PublishConfig
from pipeline.report import ReportConfig
from pipeline.split import SplitConfig
from pipeline.synthetic import SyntheticConfig
from rankers.lgbm import RankerConfig
from titles.chooser import ChooserConfig
from titles.mt5 import Mt5Config

REPO = Path(__file__).resolve().parents[1]

# every section a stage reads with config.load_section, and its dataclass
SECTIONS = {
    "data": DataConfig, "synthetic": SyntheticConfig, "split": SplitConfig, "deep": DeepConfig,
    "candidates": CandidatesConfig, "features": FeaturesConfig, "resources": ResourcesConfig,
    "ranker": RankerConfig, "task3.chooser": ChooserConfig, "task3.mt5": Mt5Config, "publish": PublishConfig,
    "report": ReportConfig, "dask": DaskConfig, "choose": ChooseConfig,
}


def _params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def _write(tmp_path: Path, params: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _node(params: dict, section: str) -> dict:
    for part in section.split("."):
        params = params[part]
    return params


@pytest.mark.parametrize("section", list(SECTIONS))
def test_every_section_loads_complete(section):
    cfg = config.load_section(SECTIONS[section], section, REPO / "params.yaml")
    assert dataclasses.is_dataclass(cfg)


@pytest.mark.parametrize("section", list(SECTIONS))
def test_a_deleted_key_is_an_error_naming_it(tmp_path, section):
    """No dataclass default stands in for a deleted line (SplitConfig.valid_fraction was 0.1, params 0.25)."""
    for name in [f.name for f in dataclasses.fields(SECTIONS[section])]:
        params = _params()
        del _node(params, section)[name]
        with pytest.raises(config.ParamsError, match=rf"missing key '{name}' \(.*:{section}\.{name}\)"):
            config.load_section(SECTIONS[section], section, _write(tmp_path, params))


@pytest.mark.parametrize("section, key, value, expected", [
    ("split", "valid_fraction", "a quarter", "float"),
    ("split", "max_valid_sessions", 6.5, "int"),
    ("split", "max_valid_sessions", True, "int"),
    ("split", "test_datasets", "task1_phase1", "list"),
    ("ranker", "per_task", "no", "bool"),
    ("ranker", "locale_weights", {"ES": "three"}, "float"),
    ("data", "test_files", ["task1_phase1", 3], "str"),
    ("task3.mt5", "pretrained_dir", 0, "str"),
    ("task3.chooser", "trim_grid", [0, "8"], "int"),
    ("deep", "threads", "all", "int"),
    ("dask", "memory_limit", 4, "str"),
])
def test_a_mistyped_value_is_an_error_naming_the_key(tmp_path, section, key, value, expected):
    params = _params()
    _node(params, section)[key] = value
    with pytest.raises(config.ParamsError, match=rf"{section}\.{key}(\[\d+\]|\.\w+)?: expected .*{expected}"):
        config.load_section(SECTIONS[section], section, _write(tmp_path, params))


def test_an_int_is_a_float_and_lists_become_tuples(tmp_path):
    params = _params()
    params["split"]["valid_fraction"] = 1
    cfg = config.load_section(SplitConfig, "split", _write(tmp_path, params))
    assert cfg.valid_fraction == 1.0 and isinstance(cfg.valid_fraction, float)
    assert isinstance(cfg.test_datasets, tuple)


def test_an_unknown_key_is_an_error_naming_it(tmp_path):
    params = _params()
    params["split"]["valid_fracton"] = 0.2
    with pytest.raises(config.ParamsError, match=r"split: unknown key\(s\) \['valid_fracton'\]"):
        config.load_section(SplitConfig, "split", _write(tmp_path, params))


def test_a_nested_model_key_is_named_with_its_path(tmp_path):
    params = _params()
    del params["deep"]["models"]["sasrec"]["lr"]
    with pytest.raises(config.ParamsError, match=r"deep\.models\.sasrec\.lr"):
        config.load_section(DeepConfig, "deep", _write(tmp_path, params))


def test_top_level_seed_engine_and_dask_are_required(tmp_path):
    for key, read in (("seed", config.seed), ("engine", engine), ("dask", dask_config)):
        params = _params()
        del params[key]
        with pytest.raises(config.ParamsError, match=key):
            read(_write(tmp_path, params))
    params = _params()
    params["seed"] = "42"
    with pytest.raises(config.ParamsError, match="seed: expected int"):
        config.seed(_write(tmp_path, params))


def test_a_dataclass_check_is_a_params_error(tmp_path):
    params = _params()
    params["task3"]["chooser"]["label"] = "bleu"
    with pytest.raises(config.ParamsError, match=r"task3\.chooser: label must be"):
        config.load_section(ChooserConfig, "task3.chooser", _write(tmp_path, params))


def _sources(path: Path) -> None:
    """What stage candidates and stage task3 do with their source entries."""
    from candidates.union import build_sources, load_source_defaults, with_defaults

    params, defaults = config.read_params(path), load_source_defaults(path)
    for where, specs in (("candidates.sources", params["candidates"]["sources"]),
                         ("task3.chooser.sources", params["task3"]["chooser"]["sources"])):
        build_sources(with_defaults(specs, defaults, f"{path}:{where}"), 0, f"{path}:{where}")


def test_every_source_entry_builds_from_its_defaults():
    """Every candidate source type has a complete source_defaults block, and every entry of
    candidates.sources and task3.chooser.sources builds from it."""
    from candidates.registry import SOURCES
    from candidates.union import load_source_defaults

    assert set(load_source_defaults(REPO / "params.yaml")) == set(SOURCES)
    _sources(REPO / "params.yaml")


@pytest.mark.parametrize("kind", ["covisit", "als", "gru4rec", "text"])
def test_a_deleted_source_default_is_an_error_naming_it(tmp_path, kind):
    from candidates.registry import source_class

    for name in [f.name for f in dataclasses.fields(source_class(kind).Config)]:
        params = _params()
        del params["source_defaults"][kind][name]
        named = rf"missing key '{name}' \(.*:source_defaults\.{kind}\.{name}\)"
        with pytest.raises(config.ParamsError, match=named):
            _sources(_write(tmp_path, params))


@pytest.mark.parametrize("path, key, value, expected", [
    ("candidates.sources.covisit_fwd", "windw", 2,
     r"params\.yaml:candidates\.sources\.covisit_fwd: unknown key\(s\) \['windw'\]"),
    ("task3.chooser.sources.covisit", "recency_decy", 0.5, r"task3\.chooser\.sources\.covisit: unknown key"),
    ("source_defaults.sknn", "neighbours", 100, r"source_defaults\.sknn: unknown key\(s\) \['neighbours'\]"),
    ("candidates.sources.covisit_dist", "window", "8",
     r"candidates\.sources\.covisit_dist\.window: expected int"),
    ("source_defaults.covisit", "top_n", 5.5, r"source_defaults\.covisit\.top_n: expected int"),
], ids=["entry typo", "task3 entry typo", "defaults typo", "entry mistyped", "default mistyped"])
def test_a_source_knob_typo_or_mistype_is_an_error_naming_it(tmp_path, path, key, value, expected):
    params = _params()
    _node(params, path)[key] = value
    with pytest.raises(config.ParamsError, match=expected):
        _sources(_write(tmp_path, params))


def test_no_config_has_a_default():
    """params.yaml is the only source of values: no dataclass read from it carries a default."""
    from candidates.deep.config import ModelConfig
    from candidates.registry import SOURCES, source_class

    classes = [*SECTIONS.values(), ModelConfig, *(source_class(kind).Config for kind in SOURCES)]
    for cls in classes:
        with_default = [f.name for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING
                        or f.default_factory is not dataclasses.MISSING]
        assert not with_default, f"{cls.__name__}: defaults for {with_default}"


def test_files_overrides_apply_only_to_the_real_files(tmp_path):
    text = ("data: {source: synthetic}\nranker: {neg_sample_rate: 0.15}\n"
            "candidates: {sources: {co: {type: covisit}}}\n"
            "files_overrides: {ranker.neg_sample_rate: 0.3, candidates.sources.co.hops: 2}\n")
    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert config.read_params(path)["ranker"]["neg_sample_rate"] == 0.15
    path.write_text(text.replace("synthetic", "files"))
    params = config.read_params(path)
    assert params["ranker"]["neg_sample_rate"] == 0.3
    assert params["candidates"]["sources"]["co"] == {"type": "covisit", "hops": 2}  # a knob may be added
    path.write_text(text.replace("synthetic", "files").replace("sources.co.hops", "sourcez.co.hops"))
    with pytest.raises(config.ParamsError, match="no section 'candidates.sourcez'"):
        config.read_params(path)


def test_the_shipped_files_overrides_reach_existing_sections():
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["data"]["source"] = "files"
    config.apply_files_overrides(params)  # raises on a key whose section is gone
