"""Coercion of command-line strings (and preset values) by field annotation."""

from __future__ import annotations

from typing import Literal

import pytest

from gpart.configs.coerce import coerce
from gpart.configs.errors import ConfigError


@pytest.mark.parametrize("text", ["true", "True", "TRUE", "1", "yes", "Yes", "YES"])
def test_bool_true_spellings(text):
    assert coerce(text, bool, "k") is True


@pytest.mark.parametrize("text", ["false", "False", "FALSE", "0", "no", "No", "NO"])
def test_bool_false_spellings(text):
    assert coerce(text, bool, "k") is False


@pytest.mark.parametrize("text", ["maybe", "2", "", "t", "y", "none"])
def test_bool_rejects_anything_else(text):
    with pytest.raises(ConfigError, match=r"^adapter\.isometric: expected a boolean"):
        coerce(text, bool, "adapter.isometric")


def test_int():
    assert coerce("16384", int, "k") == 16384
    assert coerce(" 7 ", int, "k") == 7
    assert coerce("-3", int, "k") == -3
    assert type(coerce("23040", int, "k")) is int


@pytest.mark.parametrize("text", ["1.5", "1e3", "abc", ""])
def test_int_rejects(text):
    with pytest.raises(ConfigError, match=r"adapter\.d: expected an integer"):
        coerce(text, int, "adapter.d")


def test_int_rejects_bool_value_from_python():
    # True is an int subclass; a preset writing True for an int field is a bug.
    with pytest.raises(ConfigError):
        coerce(True, int, "adapter.d")


@pytest.mark.parametrize(
    ("text", "value"),
    [("1e-3", 1e-3), ("0.001", 0.001), ("5E-4", 5e-4), ("2", 2.0), ("-0.1", -0.1)],
)
def test_float(text, value):
    out = coerce(text, float, "training.lr")
    assert out == value and type(out) is float


def test_float_widens_python_int_only():
    assert coerce(3, float, "k") == 3.0 and type(coerce(3, float, "k")) is float
    with pytest.raises(ConfigError):
        coerce("fast", float, "training.lr")
    with pytest.raises(ConfigError):
        coerce(False, float, "training.lr")


@pytest.mark.parametrize("text", ["none", "None", "NONE", "null"])
def test_optional_none(text):
    assert coerce(text, float | None, "training.max_grad_norm") is None
    assert coerce(text, list[str] | None, "adapter.target_modules") is None


def test_optional_value_still_parsed():
    assert coerce("0.5", float | None, "k") == 0.5
    with pytest.raises(ConfigError, match="or none"):
        coerce("x", float | None, "k")


def test_none_rejected_when_not_optional():
    with pytest.raises(ConfigError):
        coerce("none", int, "training.epochs")
    with pytest.raises(ConfigError):
        coerce(None, int, "training.epochs")


def test_list_comma_and_json():
    assert coerce("query,value", list[str], "k") == ["query", "value"]
    assert coerce("query, value", list[str], "k") == ["query", "value"]
    assert coerce('["query","value"]', list[str], "k") == ["query", "value"]
    assert coerce("query", list[str], "k") == ["query"]
    assert coerce("0,1,2", list[int], "k") == [0, 1, 2]
    assert coerce("[0, 1]", list[int], "k") == [0, 1]
    assert coerce(("a", "b"), list[str], "k") == ["a", "b"]  # preset tuples become lists


def test_empty_list_from_the_command_line_is_an_error_naming_none():
    for text in ("", "  ", "[]"):
        with pytest.raises(ConfigError, match="empty; write `none`"):
            coerce(text, list[str] | None, "adapter.target_modules")


def test_non_finite_floats_rejected():
    for text in ("inf", "-inf", "nan", "NaN"):
        with pytest.raises(ConfigError, match="finite"):
            coerce(text, float, "training.lr")
    with pytest.raises(ConfigError, match="finite"):
        coerce(float("nan"), float | None, "training.max_grad_norm")


def test_list_errors():
    with pytest.raises(ConfigError, match="invalid JSON"):
        coerce('["query",', list[str], "adapter.target_modules")
    with pytest.raises(ConfigError, match="list of integers"):
        coerce("0,x", list[int], "adapter.layers_to_transform")
    with pytest.raises(ConfigError, match="list of strings"):
        coerce("[1, 2]", list[str], "adapter.target_modules")  # JSON numbers for strings


def test_literal_validated_with_suggestion():
    tp = Literal["fp32", "bf16", "fp16"]
    assert coerce("bf16", tp, "training.precision") == "bf16"
    with pytest.raises(ConfigError) as err:
        coerce("BF16", tp, "training.precision")
    msg = str(err.value)
    assert msg.startswith("training.precision: expected one of fp32, bf16, fp16")
    assert "did you mean 'bf16'" in msg
    with pytest.raises(ConfigError, match="one of linear, cosine"):
        coerce("constant", Literal["linear", "cosine"], "training.scheduler")


def test_literal_int_choices_parse_from_string():
    assert coerce("3", Literal[1, 3], "k") == 3


def test_error_is_one_line_and_a_value_error():
    with pytest.raises(ValueError) as err:
        coerce("x", int, "adapter.d")
    assert "\n" not in str(err.value)
