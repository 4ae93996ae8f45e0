"""Schemathesis hooks for tests/schemathesis.rs: strategies for the identifier formats
of docs/openapi.json.

A pattern holds an identifier's shape but not its check character (nor, for a
resident ID, a real past birth date), so without these a schema-valid subject would be
refused 1 time in 11, 31 or 36 and `positive_data_acceptance` would flag the document.
Each format gets a strategy (what the fuzzing and examples phases draw) and a checker
(what validators judge a value by), both after the rules of connectors/src/ids.rs;
the coverage phase, which draws an identifier from its pattern alone, draws it from the
format's strategy instead.
"""

import datetime
import json
import pathlib
import re

import schemathesis
from hypothesis import strategies as st
from schemathesis.core import jsonschema as core_jsonschema
from schemathesis.specs.openapi.coverage import _schema as coverage

DIGITS = "0123456789"
CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
LICENSE_ALPHABET = DIGITS + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
RESIDENT_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
RESIDENT_CHECK = "10X98765432"
CREDIT_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]


def chars(alphabet, n, max_n=None):
    return st.text(alphabet=alphabet, min_size=n, max_size=max_n or n)


def resident_id(region, born, serial):
    first17 = f"{region}{born:%Y%m%d}{serial}"
    total = sum(int(c) * w for c, w in zip(first17, RESIDENT_WEIGHTS))
    return first17 + RESIDENT_CHECK[total % 11]


def credit_code(first17):
    total = sum(CREDIT_ALPHABET.index(c) * w for c, w in zip(first17, CREDIT_WEIGHTS))
    return first17 + CREDIT_ALPHABET[(31 - total % 31) % 31]


def license_id(license_type, issuer, serial, version):
    # ISO 7064 hybrid MOD 37,36 over the body without dots.
    p = 36
    for c in f"{license_type}{issuer}{serial}{version}":
        s = (p + LICENSE_ALPHABET.index(c)) % 36 or 36
        p = s * 2 % 37
    check = LICENSE_ALPHABET[(37 - p) % 36]
    return f"1.2.156.3005.2.{license_type}.{issuer}.{serial}.{version}.{check}"


# Birth dates well inside the accepted range (1900-01-01 to today in UTC+8).
BORN = st.dates(min_value=datetime.date(1900, 1, 1), max_value=datetime.date(2020, 12, 31))
CREDIT = chars(CREDIT_ALPHABET, 17).map(credit_code)
STRATEGIES = {
    "gb11643": st.builds(resident_id, chars(DIGITS, 6), BORN, chars(DIGITS, 3)),
    "gb32100": CREDIT,
    "gbt36904": st.builds(
        license_id,
        st.builds(lambda code, n: code + n, CREDIT, chars(DIGITS, 3)),
        CREDIT,
        chars(LICENSE_ALPHABET, 1, 40),
        chars(DIGITS, 3),
    ),
}
for name, strategy in STRATEGIES.items():
    schemathesis.openapi.format(name, strategy)


def is_resident_id(s):
    if not re.fullmatch(r"[0-9]{17}[0-9X]", s):
        return False
    try:
        born = datetime.datetime.strptime(s[6:14], "%Y%m%d").date()
    except ValueError:
        return False
    today = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=8)).date()
    return datetime.date(1900, 1, 1) <= born <= today and resident_id(s[:6], born, s[14:17]) == s


def is_credit_code(s):
    return bool(re.fullmatch(r"[0-9A-HJ-NP-RTUWXY]{18}", s)) and credit_code(s[:17]) == s


def is_license_id(s):
    m = re.fullmatch(
        r"1\.2\.156\.3005\.2\.([0-9A-Z]{18})([0-9]{3})\.([0-9A-Z]{18})\.([0-9A-Z]{1,40})\.([0-9]{3})\.[0-9A-Z]",
        s,
    )
    if not m:
        return False
    competent, number, issuer, serial, version = m.groups()
    return (
        is_credit_code(competent)
        and is_credit_code(issuer)
        and license_id(competent + number, issuer, serial, version) == s
    )


CHECKERS = {"gb11643": is_resident_id, "gb32100": is_credit_code, "gbt36904": is_license_id}

# schemathesis 4.32.5 (pinned) builds every validator with the formats this returns;
# adding the three lets the coverage phase tell a valid identifier from one that only
# has the shape.
_supplemental_formats = core_jsonschema.supplemental_formats


def _with_identifier_formats(validator_cls):
    return {**(_supplemental_formats(validator_cls) or {}), **CHECKERS}


core_jsonschema.supplemental_formats = _with_identifier_formats

# The identifier schemas' patterns, as the document has them, each with its format.
_DOCUMENT = json.loads((pathlib.Path(__file__).parent / "../docs/openapi.json").read_text())
_FORMAT_OF_PATTERN = {
    schema["pattern"]: schema["format"]
    for schema in _DOCUMENT["components"]["schemas"].values()
    if schema.get("format") in STRATEGIES
}
_pattern_strategy = coverage._pattern_strategy


def _identifier_pattern_strategy(session, pattern, min_length, max_length, fmt):
    # The coverage phase checks only standard formats against a pattern's matches.
    name = _FORMAT_OF_PATTERN.get(pattern)
    if name is not None:
        return STRATEGIES[name]
    return _pattern_strategy(session, pattern, min_length, max_length, fmt)


coverage._pattern_strategy = _identifier_pattern_strategy


def _moment(value):
    try:
        return datetime.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None


@schemathesis.hook
def map_case(context, case):
    # An agreement's valid_until is not before its valid_from (400 otherwise): a rule
    # between two members, which JSON Schema cannot state, so the pair is put in order.
    body = case.body
    if case.operation.path.startswith("/admin/v1/agreements") and isinstance(body, dict):
        start, end = _moment(body.get("valid_from")), _moment(body.get("valid_until"))
        if start is not None and end is not None and end < start:
            body["valid_from"], body["valid_until"] = body["valid_until"], body["valid_from"]
    return case
