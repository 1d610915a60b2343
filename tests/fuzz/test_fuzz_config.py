"""Fuzz the config loader (:func:`eossl.config.load_config`) and the ``key=value`` overrides
(:mod:`eossl.overrides`, also the importer options of ``eossl data import``): random bytes and text
files, YAML of random nested values under the real sections and keys, random override strings. The
only error is a ConfigError (an EosslError) that names the file, the override or each offending key;
never a pydantic ValidationError, a YAML error, TypeError, KeyError, RecursionError, ...
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from eossl.config import EvaluateConfig, PretrainConfig, load_config
from eossl.data.importers import IMPORTERS
from eossl.deploy.finetune import FinetuneConfig
from eossl.errors import ConfigError, EosslError
from eossl.methods.registry import METHODS
from eossl.overrides import parse_overrides, show, validate_options
from tests.fuzz._harness import FUZZ, examples, time_limit
from tests.fuzz._tables import NASTY_TEXT

MODELS = (PretrainConfig, EvaluateConfig, FinetuneConfig)
PLAUSIBLE = (
    *METHODS.names(),
    "adamw",
    "sgd",
    "auto",
    "ddp",
    "fsdp",
    "cpu",
    "gpu",
    "s2",
    "s1",
    "resnet18",
    "vit_small_patch16_224",
    "checkpoint",
    "random",
    "image-stats",
    "single-label",
    "multi-label",
    "linear",
    "knn",
    "early",
    "small",
    "no-maxpool",
)
YAML_SNIPPETS = ("[1,2", "{a: 1", "!!int x", "!!bool y", "!!float 1e", "&a [*a]", "*b", "? [1]\n: 2")
YAML_SNIPPETS += ("[" * 400, "{" * 60, "[" * 99 + "]" * 99, "a: &a [*a, 99999999999999999999999]")
KEY_CHARS = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp"), exclude_characters="'=")
LINE = re.compile(r"^  (?:unknown key )?'([^']+)'")


def _section_keys(model: type[BaseModel]) -> dict[str, list[str]]:
    """Each section of ``model`` (and the top level, ``""``) -> its keys."""
    out: dict[str, list[str]] = {"": list(model.model_fields)}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        options = [annotation, *getattr(annotation, "__args__", ())]
        for option in options:
            if isinstance(option, type) and issubclass(option, BaseModel):
                out[name] = list(option.model_fields)
    out["method"] = sorted({k for m in METHODS.names() for k in METHODS[m].config.model_fields})
    return out


SECTIONS = {model.__name__: _section_keys(model) for model in MODELS}
DOTTED = sorted({f"{s}.{k}" if s else k for keys in SECTIONS.values() for s, ks in keys.items() for k in ks})


def values() -> st.SearchStrategy[Any]:
    """A setting's value: plausible, nasty, of any type and size, nested."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-3, 300),
        st.integers(-(2**80), 2**80),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(PLAUSIBLE),
        st.sampled_from(NASTY_TEXT),
        st.text(max_size=10),
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=6,
    )


@st.composite
def raw_configs(draw, model: type[BaseModel]) -> dict[str, Any]:
    """A config dict under the real sections of ``model``: known keys (and a few unknown ones) with
    random values; ``data.store`` usually set so that validation goes past it."""
    sections = SECTIONS[model.__name__]
    raw: dict[str, Any] = {}
    if draw(st.booleans()) or draw(st.booleans()):
        raw["data"] = {"store": "x"}
    for _ in range(draw(st.integers(0, 5))):
        section = draw(st.sampled_from(sorted(sections)))
        key = draw(st.sampled_from(sections[section]) | st.text(KEY_CHARS, min_size=1, max_size=6))
        value = draw(values())
        if section == "":
            raw[key] = value
        elif isinstance(raw.setdefault(section, {}), dict):
            raw[section][key] = value
    if draw(st.booleans()) and isinstance(raw.get("method"), dict):
        raw["method"]["name"] = draw(st.sampled_from(METHODS.names()))
    return raw


def check_config_error(exc: EosslError, source: str) -> None:
    """A ConfigError naming its source (file or override) or, line by line, each offending key."""
    assert isinstance(exc, ConfigError), f"{type(exc).__name__}: {exc}"
    message = str(exc)
    assert len(message) < 20_000, "the error message is huge"
    first, *problems = message.split("\n")
    if first.startswith("invalid "):
        assert problems, message
        for line in problems:
            assert LINE.match(line), f"a problem line names no key: {line!r} in {message!r}"
    else:
        assert source in first or first.startswith("override '"), f"the error names neither file nor key: {message}"


def load(model: type[BaseModel], path: Path | None, overrides: list[str]) -> Any:
    """load_config, or the ConfigError it raised (any other exception fails the test)."""
    try:
        with time_limit(20):
            return load_config(model, path, overrides)
    except EosslError as exc:
        return exc


@settings(FUZZ, max_examples=examples(40))
@given(
    content=st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200),
        st.lists(st.sampled_from((*YAML_SNIPPETS, *NASTY_TEXT, ":", "- ", "\n", "data:", "  store: x"))).map("".join),
    ),
    model=st.sampled_from(MODELS),
)
@example(content=b"\xff\xfe\x00data: {store: x}", model=PretrainConfig)
@example(content="seed: 2020-13-45\ndata: {store: x}\n", model=PretrainConfig)
@example(content="data: {store: !!int x}\n", model=EvaluateConfig)
@example(content="[" * 2000, model=PretrainConfig)
def test_a_random_config_file_loads_or_is_refused_naming_the_file(content, model):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        result = load(model, path, [])
        if isinstance(result, EosslError):
            check_config_error(result, str(path))


@settings(FUZZ, max_examples=examples(50))
@given(data=st.data(), model=st.sampled_from(MODELS))
def test_random_values_under_the_real_sections_name_each_key(data, model):
    raw = data.draw(raw_configs(model), label="raw")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        result = load(model, path, [])
        if isinstance(result, EosslError):
            check_config_error(result, str(path))
            for line in str(result).split("\n")[1:]:
                key = LINE.match(line).group(1)
                shown = {show(k) for k in raw}  # keys are shown with escapes where not printable
                named = any(key == k or key.startswith(f"{k}.") for k in shown)
                assert named or key in ("data", "data.store", "method.name"), (key, raw)


def overrides() -> st.SearchStrategy[str]:
    """One command-line override: a real or random dotted key, ``=`` (mostly), a random value."""
    keys = st.sampled_from(DOTTED) | st.text(KEY_CHARS, max_size=8) | st.sampled_from(("", ".", "a..b", "data."))
    text_values = st.one_of(
        st.sampled_from(YAML_SNIPPETS),
        st.sampled_from(NASTY_TEXT),
        st.sampled_from(PLAUSIBLE),
        st.text(max_size=12),
        st.integers(-(2**80), 2**80).map(str),
        values().map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...")),
    )
    return st.one_of(
        st.builds(lambda k, v: f"{k}={v}", keys, text_values),
        st.text(max_size=12),
    )


@settings(FUZZ, max_examples=examples(50))
@given(given_overrides=st.lists(overrides(), max_size=4), model=st.sampled_from(MODELS))
@example(given_overrides=["a.b=[1,2"], model=PretrainConfig)
@example(given_overrides=["=x"], model=PretrainConfig)
@example(given_overrides=["trainer.max_steps=-5"], model=PretrainConfig)
@example(given_overrides=["seed=99999999999999999999999"], model=PretrainConfig)
@example(given_overrides=["optim.lr=2020-13-45"], model=PretrainConfig)
@example(given_overrides=["seed=" + "[" * 3000], model=EvaluateConfig)
@example(given_overrides=["optim..lr=1"], model=PretrainConfig)
@example(given_overrides=["torchgeo.weights=x", "torchgeo.foo=1"], model=EvaluateConfig)
def test_random_overrides_are_applied_or_name_the_override_or_key(given_overrides, model):
    result = load(model, None, ["data.store=x", *given_overrides])
    if isinstance(result, EosslError):
        check_config_error(result, "config")


@settings(FUZZ, max_examples=examples(40))
@given(given_overrides=st.lists(overrides(), max_size=4), kind=st.sampled_from(sorted(IMPORTERS.names())))
@example(given_overrides=["patch_size=1e400", "sensor=[1,2"], kind="geotiff-folder")
def test_random_importer_options_are_valid_or_name_the_option(given_overrides, kind):
    importer = IMPORTERS[kind]
    try:
        with time_limit(20):
            validate_options(importer.config, parse_overrides(given_overrides), what=f"{kind} option")
    except EosslError as exc:
        assert isinstance(exc, ConfigError)
        assert "'" in str(exc) and "\n" not in str(exc), str(exc)


@pytest.mark.xfail(raises=TypeError, strict=True, reason="eossl/evaluation/config.py expand_init_argument")
@pytest.mark.parametrize("section", ["5", "[1]"])
def test_an_init_argument_beside_a_section_that_is_no_mapping(section):
    """``inits=[torchgeo:W]`` with ``torchgeo`` not a mapping: ``expand_init_argument`` (in
    ``eossl/evaluation/config.py``, owned elsewhere) does ``{**section, ...}`` and raises TypeError
    where a ConfigError naming ``torchgeo`` is due. Remove the xfail once it does."""
    load_config(EvaluateConfig, None, ["data.store=x", "inits=[torchgeo:W]", f"torchgeo={section}"])
