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


# --- through the real command line: refused before any run directory exists -----------------------


def train_main(argv, capsys):
    from jaxcausal import train
    return run_main(train.main, argv, capsys)


CLI_CASES = {
    "required cycle": ("--require", "cause,effect\nx0,x1\nx1,x2\nx2,x0\n", "form a cycle"),
    "unknown name": ("--forbid", "cause,effect\nx0,nope\n", "unknown variable 'nope'"),
    "lag on static data": ("--forbid", "cause,effect,lag\nx0,x1,1\n", "the model has no lags"),
    "self-loop": ("--require", "cause,effect\nx3,x3\n", "self-loop"),
    "bad header": ("--require", "source,target\nx0,x1\n", "header"),
    "tiers as lists": ("--tiers", "x0,x1\nx2\n", "header 'variable,tier'"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_refuses_bad_priors_with_one_line_and_exit_2(tmp_path, capsys, static_npz, case):
    flag, text, phrase = CLI_CASES[case]
    path = write(tmp_path / "prior.csv", text)
    out = str(tmp_path / "run")
    code, _, err = train_main(["--config", "smoke", "--data", static_npz, "--out", out, "--quiet", flag, path],
                              capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert path in lines[0] and phrase in lines[0], lines[0]
    assert not os.path.exists(out)  # bad prior files never create a run directory


@pytest.mark.parametrize("conflict", ["required and forbidden", "required against tiers"])
def test_cli_refuses_contradicting_files(tmp_path, capsys, static_npz, conflict):
    require = write(tmp_path / "require.csv", "cause,effect\nx1,x0\n")
    if conflict == "required and forbidden":
        other = ["--forbid", write(tmp_path / "forbid.csv", "cause,effect,lag\nx1,x0,0\n")]
    else:
        other = ["--tiers", write(tmp_path / "tiers.csv", "variable,tier\nx0,0\nx1,1\n")]
    code, _, err = train_main(["--config", "smoke", "--data", static_npz, "--out", str(tmp_path / "run"),
                               "--quiet", "--require", require, *other], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert require in lines[0] and other[1] in lines[0]


# --- enforced in training and in the search ------------------------------------------------------


def read_rows(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def contains(rows: list[dict], cause: str, effect: str, lag: int | None = None) -> bool:
    """Whether graph rows hold cause -> effect (an undirected cause -- effect counts as holding it)."""
    for r in rows:
        if lag is not None:
            if (r["cause"], r["effect"], int(r["lag"])) == (cause, effect, lag):
                return True
        elif (r["cause"], r["effect"]) == (cause, effect) or (
                r.get("orientation") == "undirected" and (r["effect"], r["cause"]) == (cause, effect)):
            return True
    return False


def choose_priors(truth_DxD: np.ndarray):
    """Priors that cut into the true graph: forbid one true edge, put another against the tiers
    (its effect in tier 0, its cause in tier 1), require a pair the truth leaves unconnected."""
    true = [(int(i), int(j)) for i, j in zip(*np.nonzero(truth_DxD))]
    forbidden, (cause, effect) = true[0], true[-1]
    tiers = {effect: 0, cause: 1}
    adjacent = truth_DxD | truth_DxD.T
    d = truth_DxD.shape[0]
    required = next((i, j) for i in range(d) for j in range(d) if i != j and not adjacent[i, j]
                    and not (tiers.get(i, -1) > tiers.get(j, 99)))
    return forbidden, (cause, effect), tiers, required


def write_priors(tmp_path, names, forbidden, tiers, required, lagged=None):
    """CSV files for the choices (plus one forbidden and one required lagged edge if given)."""
    forbid = [f"{names[forbidden[0]]},{names[forbidden[1]]},0"]
    require = [f"{names[required[0]]},{names[required[1]]},"]
    if lagged:
        forbid.append(f"{names[lagged[0][0]]},{names[lagged[0][1]]},1")
        require.append(f"{names[lagged[1][0]]},{names[lagged[1][1]]},1")
    return ["--forbid", write(tmp_path / "forbid.csv", "cause,effect,lag\n" + "\n".join(forbid) + "\n"),
            "--require", write(tmp_path / "require.csv", "cause,effect,lag\n" + "\n".join(require) + "\n"),
            "--tiers", write(tmp_path / "tiers.csv", "variable,tier\n"
                             + "".join(f"{names[k]},{t}\n" for k, t in tiers.items()))]


def assert_enforced(run, names, forbidden, tier_edge, tiers, required):
    rows = read_rows(os.path.join(run, "graph.csv"))
    weights = np.load(os.path.join(run, "weights.npy"))
    assert not contains(rows, names[forbidden[0]], names[forbidden[1]])
    assert weights[forbidden] == 0.0  # exactly: the mask, not a small weight
    later = [(i, j) for i, ti in tiers.items() for j, tj in tiers.items() if ti > tj]
    assert tier_edge in later
    for i, j in later:
        assert not contains(rows, names[i], names[j]) and weights[i, j] == 0.0
    assert any((r["cause"], r["effect"], r["orientation"]) == (names[required[0]], names[required[1]], "directed")
               for r in rows), rows
    # The true edges nothing forbids are still learned: the masks close only their own slots.
    assert np.count_nonzero(weights) > 0


@pytest.mark.parametrize("noise", ["auto", "gauss_nv"])  # gauss_nv: the export is a CPDAG
def test_static_run_honours_forbidden_required_and_tiers(tmp_path, capsys, noise):
    data = write_static_npz(tmp_path / "static.npz")
    truth = np.load(data)["adjacency"]
    names = [f"x{k}" for k in range(truth.shape[0])]
    forbidden, tier_edge, tiers, required = choose_priors(truth)
    run = str(tmp_path / "run")
    code, _, err = train_main(["--config", "smoke", "--data", data, "--out", run, "--quiet", "--noise", noise,
                               *write_priors(tmp_path, names, forbidden, tiers, required)], capsys)
    assert code == 0, err[-3000:]
    assert_enforced(run, names, forbidden, tier_edge, tiers, required)


def test_time_series_run_honours_priors_on_contemporaneous_and_lagged_edges(tmp_path, capsys):
    from jaxcausal.data import simulate
    ds = simulate(seed=3, d=4, n_edges=3, noise="laplace", n_windows=96, window=12)
    data = str(tmp_path / "series.npz")
    np.savez(data, X=ds.x, adjacency=ds.truth)
    names = list(ds.names)
    forbidden, tier_edge, tiers, required = choose_priors(ds.truth)
    true_lag = ds.truth_lagged[0]
    lag_forbidden = next((int(i), int(j)) for i, j in zip(*np.nonzero(true_lag)) if i != j)
    lag_required = next((i, j) for i in range(4) for j in range(4) if i != j and not true_lag[i, j])
    run = str(tmp_path / "run")
    code, _, err = train_main(["--config", "smoke", "--data", data, "--out", run, "--quiet",
                               *write_priors(tmp_path, names, forbidden, tiers, required,
                                             lagged=(lag_forbidden, lag_required))], capsys)
    assert code == 0, err[-3000:]
    assert_enforced(run, names, forbidden, tier_edge, tiers, required)
    lag_rows = read_rows(os.path.join(run, "graph_lagged.csv"))
    lag_weights = np.load(os.path.join(run, "weights_lagged.npy"))
    assert not contains(lag_rows, names[lag_forbidden[0]], names[lag_forbidden[1]], lag=1)
    assert lag_weights[(0, *lag_forbidden)] == 0.0
    assert contains(lag_rows, names[lag_required[0]], names[lag_required[1]], lag=1)
    assert np.count_nonzero(lag_weights) > 0


def test_require_needs_the_order_search(tmp_path, capsys, static_npz):
    require = write(tmp_path / "require.csv", "cause,effect\nx0,x1\n")
    code, _, err = train_main(["--config", "smoke", "--data", static_npz, "--out", str(tmp_path / "run"),
                               "--quiet", "--require", require, "--graph-search", "threshold"], capsys)
    assert code == 2 and require in err and "--graph-search order" in err


# --- from Python: fit() takes files or lists ---------------------------------------------------------


def test_fit_takes_priors_as_lists(tmp_path):
    from jaxcausal.api import fit
    data = np.load(write_static_npz(tmp_path / "static.npz"))
    truth, x = data["adjacency"], data["X"]
    names = ["a", "b", "c", "d", "e"]
    forbidden, _, tiers, required = choose_priors(truth)
    result = fit(x, names=names, config="smoke", forbid=[(names[forbidden[0]], names[forbidden[1]])],
                 require=[(names[required[0]], names[required[1]], 0)],
                 tiers={names[k]: t for k, t in tiers.items()})
    edges = {(e["cause"], e["effect"]) for e in result.edges if e["lag"] == 0}
    undirected = {(e["effect"], e["cause"]) for e in result.edges if e["orientation"] == "undirected"}
    assert (names[forbidden[0]], names[forbidden[1]]) not in edges | undirected
    assert (names[required[0]], names[required[1]]) in edges
    later, earlier = (names[k] for k in sorted(tiers, key=tiers.get, reverse=True))
    assert (later, earlier) not in edges | undirected
    with pytest.raises(InputError, match=r"^forbid= list: line 2: unknown variable 'zz'"):
        fit(x, names=names, config="smoke", forbid=[("a", "zz")])
    with pytest.raises(InputError, match="list of \\(cause, effect\\)"):
        fit(x, names=names, config="smoke", require=[("a",)])


def test_equivalence_class_export_keeps_prior_orientations():
    from jaxcausal import structure
    rng = np.random.default_rng(0)
    a = rng.normal(size=2000)
    x = np.stack([a, 0.8 * a + 0.5 * rng.normal(size=2000), 2.0 * rng.normal(size=2000)], axis=1)[:, None, :]
    allowed = ~np.eye(3, dtype=bool)
    allowed[1, 0] = False  # b -> a forbidden
    required = np.zeros((3, 3), bool)
    required[0, 2] = True  # a -> c required
    chosen = structure.choose_graph(x, np.ones_like(x), n_lags=0, noise="gauss_nv", allowed=allowed,
                                    required=required)
    pdag = chosen["orientation"]
    assert pdag[1, 0] == 0 and pdag[0, 1] == 1  # a -> b, never a -- b
    assert pdag[0, 2] == 1 and pdag[2, 0] == 0  # a -> c, as required


def test_resume_refuses_a_prior_file_edited_since_the_run_started(tmp_path, capsys):
    """The files are fingerprinted by what they enforce: same path, new content -> one line, exit 2."""
    data = write_static_npz(tmp_path / "static.npz")
    forbid = write(tmp_path / "forbid.csv", "cause,effect\nx0,x1\n")
    run = str(tmp_path / "run")
    code, _, err = train_main(["--config", "smoke", "--data", data, "--out", run, "--quiet", "--forbid", forbid,
                               "--epochs", "2"], capsys)
    assert code == 0, err[-3000:]
    write(tmp_path / "forbid.csv", "cause,effect\nx1,x0\n")
    code, _, err = train_main(["--resume", run, "--epochs", "3", "--quiet"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and "prior knowledge differs" in lines[-1] and "Traceback" not in err, err
    # The original content resumes.
    write(tmp_path / "forbid.csv", "cause,effect\nx0,x1\n")
    code, _, err = train_main(["--resume", run, "--epochs", "3", "--quiet"], capsys)
    assert code == 0, err[-3000:]
