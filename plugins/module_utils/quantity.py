# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes resource quantities: strict parsing, exact semantic comparison, canonical form.

Why not ``kubernetes.utils.parse_quantity``: it accepts strings the API server rejects
(``1K``, ``Infinity``, ``1_000``, ``NaN``), does not round to nano precision as the server does,
and computes in the default 28-digit decimal context. Modules here must reject bad input before
touching the cluster, with the same verdict the API server would give, and must never report a
change because ``1000m`` was stored as ``1``. This file follows the grammar and rounding rules of
k8s.io/apimachinery/pkg/api/resource (quantity.go):

    <quantity>     ::= <signedNumber><suffix>
    <number>       ::= <digits> | <digits>.<digits> | <digits>. | .<digits>
    <suffix>       ::= <binarySI> | <decimalExponent> | <decimalSI>
    <binarySI>     ::= Ki | Mi | Gi | Ti | Pi | Ei
    <decimalSI>    ::= n | u | m | "" | k | M | G | T | P | E
    <decimalExp.>  ::= "e" <signedNumber> | "E" <signedNumber>

Values finer than 1n are rounded away from zero to 1n; binary-SI values above 2^63-1 are capped,
like the server does. All arithmetic is exact (Decimal with a precision sized to the input).

Pure logic: no Ansible or kubernetes imports, usable from modules, unit tests and other module_utils.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import re
from decimal import ROUND_UP, Decimal, Inexact, localcontext

DECIMAL_SI = "DecimalSI"
BINARY_SI = "BinarySI"
DECIMAL_EXPONENT = "DecimalExponent"

_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_BY_EXP = dict((v, k) for k, v in _DECIMAL_SUFFIXES.items())
_BINARY_BY_EXP = dict((v // 10, k) for k, v in _BINARY_SUFFIXES.items())
_BINARY_BY_EXP[0] = ""

_QUANTITY_RE = re.compile(r"^([+-]?)([0-9]+\.?[0-9]*|\.[0-9]+)(.*)$")
_EXPONENT_RE = re.compile(r"^[eE]([+-]?[0-9]+)$")
_INT32_MAX = 2**31 - 1
_MAX_BINARY = Decimal(2**63 - 1)
_NANO = Decimal("1e-9")

__all__ = [
    "QuantityError",
    "canonical_quantity",
    "compare_quantities",
    "is_integer_quantity",
    "is_quantity",
    "parse_quantity",
    "quantities_equal",
    "quantity_format",
    "resource_map_diff",
    "resource_maps_equal",
]


class QuantityError(ValueError):
    """The value is not a valid Kubernetes quantity."""


def _split(value):
    """Return (sign, number_text, suffix, format) or raise QuantityError."""
    if isinstance(value, bool) or value is None:
        raise QuantityError("%r is not a quantity" % (value,))
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise QuantityError("%r is not a quantity" % (value,))
        # repr() gives the shortest text that round-trips, e.g. 0.1 -> '0.1' (not 0.1000000000000000055...).
        text = repr(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise QuantityError("%r is not a quantity" % (value,))
        text = format(value, "f")
    elif isinstance(value, str):
        # The API server trims surrounding white space when it decodes a quantity from JSON.
        text = value.strip()
    else:
        raise QuantityError("%r (%s) is not a quantity" % (value, type(value).__name__))
    match = _QUANTITY_RE.match(text)
    if not match:
        raise QuantityError(
            "%r is not a quantity: expected a number with an optional suffix, e.g. 500m, 2Gi" % (value,)
        )
    sign, number, suffix = match.groups()
    if suffix in _DECIMAL_SUFFIXES:
        return sign, number, suffix, DECIMAL_SI
    if suffix in _BINARY_SUFFIXES:
        return sign, number, suffix, BINARY_SI
    exp = _EXPONENT_RE.match(suffix)
    if exp and abs(int(exp.group(1))) <= _INT32_MAX:
        return sign, number, suffix, DECIMAL_EXPONENT
    raise QuantityError(
        "%r has an unknown suffix %r: use one of n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or e<exponent>"
        % (value, suffix)
    )


def _parse(value):
    sign, number, suffix, fmt = _split(value)
    if number.endswith("."):
        number = number[:-1]
    digits = len(number) + 40
    with localcontext() as ctx:
        ctx.prec = digits
        ctx.Emax = 999999999
        ctx.Emin = -999999999
        ctx.traps[Inexact] = True
        amount = Decimal(number)
        if fmt == BINARY_SI:
            amount = amount * (Decimal(2) ** _BINARY_SUFFIXES[suffix])
        elif fmt == DECIMAL_SI:
            amount = amount.scaleb(_DECIMAL_SUFFIXES[suffix])
        else:
            amount = amount.scaleb(int(suffix[1:]))
        if sign == "-":
            amount = -amount
        if amount.as_tuple().exponent < -9:
            # The server keeps nano precision at most and rounds away from zero.
            ctx.traps[Inexact] = False
            ctx.prec = max(1, amount.adjusted() + 12)
            amount = amount.quantize(_NANO, rounding=ROUND_UP)
        if fmt == BINARY_SI and amount > _MAX_BINARY:
            amount = _MAX_BINARY
        if amount == 0:
            amount = Decimal(0)
    return amount, fmt


def parse_quantity(value):
    """Parse a quantity (str, int, float or Decimal) to its exact Decimal value.

    >>> parse_quantity("1500m") == parse_quantity("1.5") == parse_quantity(1.5)
    True
    Raises QuantityError (a ValueError) for anything the API server would reject.
    """
    return _parse(value)[0]


def quantity_format(value):
    """The format the server keeps for this quantity: DecimalSI, BinarySI or DecimalExponent."""
    return _split(value)[3]


def is_quantity(value):
    """True if the API server would accept this value as a quantity."""
    try:
        _parse(value)
    except QuantityError:
        return False
    return True


def quantities_equal(left, right):
    """Semantic equality: ``1000m`` == ``1``, ``1Gi`` == ``1073741824``, ``1k`` != ``1Ki``."""
    return parse_quantity(left) == parse_quantity(right)


def compare_quantities(left, right):
    """Return -1, 0 or 1 as left is less than, equal to or greater than right."""
    a, b = parse_quantity(left), parse_quantity(right)
    return (a > b) - (a < b)


def is_integer_quantity(value):
    """True if the quantity is a whole number (the API server requires this for pods, count/*, ...)."""
    amount = parse_quantity(value)
    return amount == amount.to_integral_value()


def _strip_tens(amount):
    """Exact (integer mantissa, base-10 exponent) with trailing zeros of the mantissa removed."""
    sign, digits, exponent = amount.as_tuple()
    mantissa = int("".join(str(d) for d in digits) or "0")
    while mantissa and mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    return (-mantissa if sign else mantissa), exponent


def canonical_quantity(value):
    """The string the API server stores and returns for this quantity.

    ``canonical_quantity("1000m") == "1"``, ``"1536Mi" -> "1536Mi"``, ``"2048Mi" -> "2Gi"``,
    ``"0.5Gi" -> "512Mi"``, ``"1.5Ki" -> "1536"``, ``"0.1" -> "100m"``, ``"1e3" -> "1e3"``.
    """
    amount, fmt = _parse(value)
    if amount == 0:
        return "0"
    if fmt == BINARY_SI:
        if -1024 < amount < 1024 or amount != amount.to_integral_value():
            fmt = DECIMAL_SI
        else:
            mantissa, power = int(amount), 0
            while mantissa % 1024 == 0 and power < 6:
                mantissa //= 1024
                power += 1
            return "%d%s" % (mantissa, _BINARY_BY_EXP[power])
    mantissa, exponent = _strip_tens(amount)
    shift = exponent % 3
    mantissa *= 10**shift
    exponent -= shift
    if fmt == DECIMAL_EXPONENT:
        return "%d%s" % (mantissa, "e%d" % exponent if exponent else "")
    while exponent > 18:
        mantissa *= 1000
        exponent -= 3
    return "%d%s" % (mantissa, _DECIMAL_BY_EXP[exponent])


def resource_maps_equal(left, right):
    """True if two resource maps (e.g. ResourceQuota ``hard``) have the same keys and equal quantities."""
    return not resource_map_diff(left, right)


def resource_map_diff(desired, actual):
    """Keys whose quantities differ between two maps (missing keys count as different), sorted."""
    desired = desired or {}
    actual = actual or {}
    changed = []
    for key in sorted(set(desired) | set(actual)):
        if key not in desired or key not in actual:
            changed.append(key)
            continue
        try:
            same = quantities_equal(desired[key], actual[key])
        except QuantityError:
            same = str(desired[key]) == str(actual[key])
        if not same:
            changed.append(key)
    return changed
