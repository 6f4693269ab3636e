"""Kubernetes quantity parsing and semantic comparison (plugins/module_utils/quantity.py)."""

from decimal import Decimal

import pytest
from ansible_collections.anvil.cluster.plugins.module_utils.quantity import (
    QuantityError,
    canonical_quantity,
    compare_quantities,
    is_integer_quantity,
    is_quantity,
    parse_quantity,
    quantities_equal,
    quantity_format,
    resource_map_diff,
    resource_maps_equal,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", "0"),
        ("1", "1"),
        ("+1", "1"),
        ("-1", "-1"),
        ("1000m", "1"),
        ("1500m", "1.5"),
        ("0.5", "0.5"),
        (".5", "0.5"),
        ("5.", "5"),
        ("100n", "0.0000001"),
        ("3u", "0.000003"),
        ("2k", "2000"),
        ("1M", "1000000"),
        ("1G", "1000000000"),
        ("1T", "1e12"),
        ("1P", "1e15"),
        ("1E", "1e18"),
        ("1Ki", "1024"),
        ("1Mi", "1048576"),
        ("1Gi", "1073741824"),
        ("1.5Gi", "1610612736"),
        ("1Ti", str(1024**4)),
        ("1Pi", str(1024**5)),
        ("1Ei", str(1024**6)),
        ("1e3", "1000"),
        ("1E3", "1000"),
        ("1e-3", "0.001"),
        ("12e+2", "1200"),
        (" 2Gi ", "2147483648"),
        (3, "3"),
        (0.25, "0.25"),
        (Decimal("7.5"), "7.5"),
        ("123456789012345678901234567890123456789", "123456789012345678901234567890123456789"),
    ],
)
def test_parse_exact(text, value):
    assert parse_quantity(text) == Decimal(value)


def test_precision_beyond_default_decimal_context_is_kept():
    # 30 significant digits times 2^60 would be rounded in Python's default 28-digit context.
    assert parse_quantity("1.23456789012345678901234567891Ei") == Decimal("1.23456789012345678901234567891") * 2**60


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.1n", "1e-9"),  # below nano precision: rounded away from zero, like the server
        ("1.0000000001", "1.000000001"),
        ("-0.1n", "-1e-9"),
        ("1e-12", "1e-9"),
    ],
)
def test_rounds_up_to_nano_like_the_server(text, value):
    assert parse_quantity(text) == Decimal(value)


def test_binary_values_are_capped_at_int64_max():
    assert parse_quantity("100000000Ei") == Decimal(2**63 - 1)
    # decimal values are not capped
    assert parse_quantity("100000E") == Decimal("1e23")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        " ",
        "abc",
        "1K",  # uppercase K is not a suffix (kubernetes.utils.parse_quantity accepts it)
        "1ki",
        "1mi",
        "1Gb",
        "1 Gi",
        "Infinity",
        "NaN",
        "1_000",
        "1.2.3",
        ".",
        "-",
        "1e",
        "1e1.5",
        "1e99999999999",
        "0x10",
        "--1",
        None,
        True,
        [1],
        {"cpu": 1},
        float("nan"),
        float("inf"),
    ],
)
def test_rejects_what_the_server_rejects(bad):
    assert not is_quantity(bad)
    with pytest.raises(QuantityError):
        parse_quantity(bad)


def test_error_is_a_value_error_naming_the_value():
    with pytest.raises(ValueError, match="'12Q'"):
        parse_quantity("12Q")


@pytest.mark.parametrize(
    ("one", "other", "equal"),
    [
        ("1000m", "1", True),
        ("1", 1, True),
        ("0.5", "500m", True),
        ("1Gi", "1073741824", True),
        ("1Gi", "1024Mi", True),
        ("1k", "1Ki", False),
        ("1G", "1Gi", False),
        ("1e3", "1k", True),
        ("100m", 0.1, True),
        ("1", "1001m", False),
    ],
)
def test_semantic_equality(one, other, equal):
    assert quantities_equal(one, other) is equal
    assert quantities_equal(other, one) is equal


def test_compare():
    assert compare_quantities("500m", "1") == -1
    assert compare_quantities("1Ki", "1k") == 1
    assert compare_quantities("2000m", 2) == 0


def test_integer_check():
    assert is_integer_quantity("10")
    assert is_integer_quantity("1k")
    assert is_integer_quantity("2000m")
    assert not is_integer_quantity("1500m")
    assert not is_integer_quantity("0.5")


@pytest.mark.parametrize(
    ("text", "fmt"),
    [("1", "DecimalSI"), ("1m", "DecimalSI"), ("1Ki", "BinarySI"), ("1e3", "DecimalExponent"), ("1E", "DecimalSI")],
)
def test_format(text, fmt):
    assert quantity_format(text) == fmt


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("0", "0"),
        ("0Gi", "0"),
        ("1000m", "1"),
        ("1500m", "1500m"),
        ("1.5", "1500m"),
        ("0.1", "100m"),
        ("100", "100"),
        ("1000", "1k"),
        ("1200", "1200"),
        ("12000", "12k"),
        ("1e3", "1e3"),
        ("1000e0", "1e3"),
        ("10e2", "1e3"),
        ("1.5e3", "1500"),
        ("1Ki", "1Ki"),
        ("1024", "1024"),
        ("2048Mi", "2Gi"),
        ("1536Mi", "1536Mi"),
        ("0.5Gi", "512Mi"),
        ("1.5Ki", "1536"),
        ("512", "512"),
        ("0.5Ki", "512"),
        ("-1Gi", "-1Gi"),
        ("100n", "100n"),
        ("1u", "1u"),
        (2, "2"),
        (0.25, "250m"),
        ("1000E", "1000E"),
    ],
)
def test_canonical_form_matches_the_server(text, canonical):
    assert canonical_quantity(text) == canonical
    # canonical form is a fixed point and equal in value
    assert canonical_quantity(canonical) == canonical
    assert quantities_equal(text, canonical)


def test_resource_maps():
    desired = {"cpu": "1", "memory": "1Gi", "pods": 10}
    actual = {"cpu": "1000m", "memory": "1073741824", "pods": "10"}
    assert resource_maps_equal(desired, actual)
    assert resource_map_diff(desired, dict(actual, cpu="2")) == ["cpu"]
    assert resource_map_diff(desired, {"cpu": "1", "memory": "1Gi"}) == ["pods"]
    assert resource_map_diff({}, {"services": "1"}) == ["services"]
    assert resource_maps_equal(None, {})
