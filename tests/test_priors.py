"""Prior knowledge (--forbid, --require, --tiers): parsing, contradictions, and exact enforcement.

The run tests train the smoke preset on static and on time-series Laplace data and read the run
directory back: a forbidden edge is never in graph.csv / graph_lagged.csv and its trained weight
is exactly zero, a required edge is always there, and no edge goes against the tiers.
"""
from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from conftest import run_main, write_static_npz
from jaxcausal import priors
from jaxcausal.errors import InputError

NAMES = ("a", "b", "c", "d")


def write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


# --- parsing -------------------------------------------------------------------------------------


def test_masks_put_each_edge_at_its_design_column(tmp_path):
    forbid = write(tmp_path / "f.csv", "cause,effect,lag\na,b,0\nc,d,\nd,a,2\nb,b,1\n")
    require = write(tmp_path / "r.csv", "Cause,Effect\nb,c\n")
    p = priors.build(NAMES, 2, forbid=forbid, require=require)
    d = len(NAMES)
    assert p.allowed.shape == p.required.shape == (d + 2 * d, d)
    closed = {(int(i), int(j)) for i, j in zip(*np.nonzero(~p.allowed))}
    # Self-loops at lag 0, plus a -> b, c -> d (lag 0), d(t-2) -> a and b(t-1) -> b.
    expected = {(k, k) for k in range(d)} | {(0, 1), (2, 3), (2 * d + 3, 0), (d + 1, 1)}
    assert closed == expected
    assert {(int(i), int(j)) for i, j in zip(*np.nonzero(p.required))} == {(1, 2)}
    assert (p.n_forbidden, p.n_required, p.n_tiers) == (4, 1, 0)


def test_tiers_close_edges_from_later_to_earlier_tiers_only_at_lag_zero(tmp_path):
    tiers = write(tmp_path / "t.csv", "variable,tier\na,0\nb,1\nc,1\n")  # d is not listed: free
    p = priors.build(NAMES, 1, tiers=tiers)
    contemporaneous, lagged = priors.lag_masks(p.allowed)
    assert not contemporaneous[1, 0] and not contemporaneous[2, 0]  # tier 1 -> tier 0 closed
    assert contemporaneous[0, 1] and contemporaneous[1, 2] and contemporaneous[2, 1]  # forward, same tier
    assert contemporaneous[3].sum() == 3 and contemporaneous[:, 3].sum() == 3  # d: free (no self-loop)
    assert lagged.all()  # lagged edges point forward in time: tiers never close them
    assert p.n_tiers == 2


def test_no_files_means_no_priors():
    assert priors.build(NAMES, 1) is None


def test_describe_counts(tmp_path):
    forbid = write(tmp_path / "f.csv", "cause,effect\na,b\n")
    line = priors.build(NAMES, 0, forbid=forbid).describe()
    assert "1 forbidden" in line and "1 parent slot(s) closed" in line


# --- contradictions and bad files: one line naming the file ----------------------------------------

CASES = {
    "unknown name": ("forbid", "cause,effect\na,zz\n", "unknown variable 'zz'"),
    "bad header": ("forbid", "from,to\na,b\n", "header 'cause,effect'"),
    "empty file": ("require", "", "an empty file"),
    "lag too large": ("require", "cause,effect,lag\na,b,3\n", "larger than the model's max lag"),
    "negative lag": ("forbid", "cause,effect,lag\na,b,-1\n", "not a whole number"),
    "self-loop": ("require", "cause,effect\nc,c\n", "self-loop"),
    "short row": ("forbid", "cause,effect,lag\na\n", "has 1 cells"),
    "tiers as lists": ("tiers", "a,b\nc,d\n", "header 'variable,tier'"),
    "tier not a number": ("tiers", "variable,tier\na,first\n", "not a whole number"),
    "tier twice": ("tiers", "variable,tier\na,0\na,1\n", "listed in tiers 0 and 1"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_file_is_one_line_naming_it(tmp_path, case):
    flag, text, phrase = CASES[case]
    path = write(tmp_path / f"{flag}.csv", text)
    with pytest.raises(InputError) as err:
        priors.build(NAMES, 1, **{flag: path})
    message = str(err.value)
    assert path in message and phrase in message and "\n" not in message


def test_required_and_forbidden_names_both_files(tmp_path):
    forbid = write(tmp_path / "f.csv", "cause,effect,lag\nb,a,1\n")
    require = write(tmp_path / "r.csv", "cause,effect,lag\nb,a,1\n")
    with pytest.raises(InputError, match="b -> a at lag 1 is required") as err:
        priors.build(NAMES, 1, forbid=forbid, require=require)
    assert forbid in str(err.value) and require in str(err.value)
    # The same pair at another lag is no contradiction.
    other = write(tmp_path / "r0.csv", "cause,effect\nb,a\n")
    assert priors.build(NAMES, 1, forbid=forbid, require=other).required[1, 0]


def test_required_cycle_and_required_against_tiers(tmp_path):
    cycle = write(tmp_path / "cycle.csv", "cause,effect\na,b\nb,c\nc,a\n")
    with pytest.raises(InputError, match=r"cycle \(a -> b -> c -> a\)"):
        priors.build(NAMES, 1, require=cycle)
    # Lagged edges never close a cycle.
    lagged = write(tmp_path / "lagged.csv", "cause,effect,lag\na,b,0\nb,a,1\n")
    assert priors.build(NAMES, 1, require=lagged).n_required == 2
    tiers = write(tmp_path / "t.csv", "variable,tier\nb,0\na,1\n")
    with pytest.raises(InputError, match="tier 1, after b in tier 0"):
        priors.build(NAMES, 1, require=lagged, tiers=tiers)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="--forbid file not found"):
        priors.build(NAMES, 0, forbid=str(tmp_path / "nope.csv"))
