"""The config schema and the flags generated from it: help text, choices, ranges, no prefix matching."""
from __future__ import annotations

import re

import pytest

from jaxcausal import cli, config as config_lib, evaluate, sweep, train
from jaxcausal.errors import InputError

PARSERS = {"train": train.parser, "sweep": sweep.parser, "evaluate": evaluate.parser}


def help_entries(text: str) -> dict[str, str]:
    """Split argparse --help output into {option string: its description text}."""
    entries: dict[str, str] = {}
    current: list[str] = []
    for line in text.splitlines():
        head = re.match(r"^  (-\S.*?)(?:\s{2,}(.*))?$", line)
        if head:
            current = [s.split()[0] for s in head.group(1).split(", ")]
            for flag in current:
                entries[flag] = head.group(2) or ""
        elif line.startswith("   ") and current:
            for flag in current:
                entries[flag] = (entries[flag] + " " + line.strip()).strip()
        else:
            current = []
    return entries


@pytest.mark.parametrize("name", list(PARSERS))
def test_every_flag_in_help_has_a_description(name, capsys):
    parser = PARSERS[name]()
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--help"])
    assert stop.value.code == 0
    entries = help_entries(capsys.readouterr().out)
    flags = {s for action in parser._actions for s in action.option_strings}
    assert flags and flags == set(entries), flags ^ set(entries)  # every flag listed, nothing misparsed
    for flag, text in entries.items():
        assert len(text.split()) >= 3, (flag, text)


@pytest.mark.parametrize("name", ["train", "sweep"])
def test_config_flags_show_default_and_allowed_values(name, capsys):
    with pytest.raises(SystemExit):
        PARSERS[name]().parse_args(["--help"])
    entries = help_entries(capsys.readouterr().out)
    for leaf, (section, f) in config_lib.schema().items():
        text = entries["--" + leaf.replace("_", "-")]
        shown = config_lib._shown(f.default)
        assert f"(default {shown}" in text, (leaf, text)
        for choice in f.metadata["choices"]:
            assert choice in text, (leaf, choice, text)
        assert ("may change on --resume" in text) == (leaf in config_lib.RESUMABLE), (leaf, text)
    assert "(default 0.005; > 0)" in entries["--lr"]
    assert "one of linear, mlp" in entries["--sem"]
    assert "strictly between 0 and 1" in entries["--val-fraction"]


@pytest.mark.parametrize("name, argv, suggestion", [
    ("train", ["--epoch", "5"], "did you mean --epochs?"),
    ("train", ["--lambda-spars=0.1"], "did you mean --lambda-sparse?"),
    ("sweep", ["--epoch", "5"], "did you mean --epochs?"),
    ("evaluate", ["run", "--trut", "t.npy"], "did you mean --truth?"),
])
def test_flag_prefixes_are_refused_with_a_suggestion(name, argv, suggestion, capsys):
    with pytest.raises(SystemExit) as stop:
        PARSERS[name]().parse_args(argv)
    assert stop.value.code == cli.EXIT_BAD_INPUT
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "unrecognized arguments" in lines[0] and suggestion in lines[0], lines


def test_full_flag_names_still_parse():
    args = train.parser().parse_args(["--epochs", "5", "--lambda-sparse=0.1", "--no-background"])
    cfg = config_lib.from_args(args)
    assert (cfg.train.epochs, cfg.loss.lambda_sparse, cfg.model.background) == (5, 0.1, False)


def test_every_field_carries_its_schema():
    for leaf, (section, f) in config_lib.schema().items():
        meta = f.metadata
        assert meta["help"] and "\n" not in meta["help"], leaf
        assert set(meta["rules"]) <= set(config_lib.RULES), leaf
        assert not meta["choices"] or f.default in meta["choices"], leaf
        for rule in meta["rules"]:
            assert config_lib.RULES[rule][0](f.default), (leaf, rule)  # the defaults obey the schema
    assert set(config_lib.schema()) == set(config_lib.leaf_fields())


def test_derived_views_follow_the_schema():
    fields = config_lib.schema()
    assert config_lib.CHOICES["sem"] == ("linear", "mlp")
    assert {"lr", "epochs"} <= config_lib.POSITIVE and "lambda_sparse" in config_lib.NON_NEGATIVE
    assert config_lib.SEEDS == {"seed", "builtin_seed"}
    assert all(fields[n][1].metadata["resumable"] for n in config_lib.RESUMABLE)
    assert {"epochs", "quiet", "out"} <= config_lib.RESUMABLE and "lr" not in config_lib.RESUMABLE
    assert config_lib.LAMBDA_FIELDS == ("lambda_recon", "lambda_sparse", "lambda_acyclic", "lambda_disen")
    assert sweep.LAMBDA_FIELDS == config_lib.LAMBDA_FIELDS  # the grid's axes come from the schema


def test_resume_accepts_resumable_changes_and_names_the_others():
    from jaxcausal.rundir import check_resumable
    saved = config_lib.Config()
    check_resumable(saved, config_lib.replace(saved, {"epochs": 500, "quiet": True}), "run")
    with pytest.raises(InputError, match=r"run: cannot resume .*lr 0.005 -> 0.01"):
        check_resumable(saved, config_lib.replace(saved, {"lr": 0.01, "epochs": 500}), "run")


@pytest.mark.parametrize("override, message", [
    ({"val_fraction": 1.0}, "'val_fraction' must lie strictly between 0 and 1, got 1.0"),
    ({"rho_growth": 0.5}, "'rho_growth' must be >= 1, got 0.5"),
    ({"mu_factor": 1.5}, "'mu_factor' must lie in [0, 1], got 1.5"),
    ({"plateau_factor": 0}, "'plateau_factor' must be > 0, got 0.0"),
    ({"builtin_seed": 2**31}, "'builtin_seed' must be an integer in [0, 2147483647], got 2147483648"),
    ({"penalty": "l2"}, "'penalty' must be one of trace_power, expm, logdet, got 'l2'"),
    ({"epochs": 2**40}, "'epochs' is too large (1099511627776); the limit is 2147483647"),
    ({"h_tol": float("inf")}, "'h_tol' must be finite, got inf"),
])
def test_schema_rules_reject_with_one_line(override, message):
    with pytest.raises(InputError) as err:
        config_lib.replace(config_lib.Config(), override)
    assert str(err.value) == f"flags: {message}"


def test_csv_column_fields_default_to_empty_and_are_flags():
    cfg = config_lib.Config()
    assert (cfg.data.columns, cfg.data.drop, cfg.data.time_col) == ("", "", "")
    args = train.parser().parse_args(["--columns", "a,b", "--drop", "id", "--time-col", "t"])
    data = config_lib.from_args(args).data
    assert (data.columns, data.drop, data.time_col) == ("a,b", "id", "t")


def test_mechanism_flag_offers_what_the_search_runs(capsys):
    from conftest import run_main
    from jaxcausal import structure
    assert config_lib.CHOICES["mechanism"] == structure.MECHANISMS
    assert config_lib.from_args(train.parser().parse_args(["--mechanism", "mlp"])).search.mechanism == "mlp"
    code, out, err = run_main(train.main, ["--mechanism", "gp"], capsys)
    assert code == cli.EXIT_BAD_INPUT and out == ""
    assert err.splitlines() == ["error: command line: 'mechanism' must be one of auto, linear, mlp, got 'gp'"]


def test_mlp_mechanism_with_a_linear_noise_model_fails_before_training(capsys):
    from conftest import run_main
    code, out, err = run_main(train.main, ["--mechanism", "mlp", "--noise", "laplace"], capsys)
    assert code == cli.EXIT_BAD_INPUT and out == ""
    assert err.splitlines() == ["error: 'mechanism' mlp is searched with gauss_nv noise, but 'noise' is laplace; "
                                "use --noise auto or gauss_nv, or --mechanism linear"]
    for noise in ("auto", "gauss_nv"):
        assert config_lib.replace(config_lib.Config(), {"mechanism": "mlp", "noise": noise}).search.noise == noise


def test_mlp_mechanism_on_a_time_series_fails_before_training(capsys, tmp_path):
    from conftest import run_main
    out_dir = tmp_path / "run"
    code, out, err = run_main(train.main, ["--config", "smoke", "--mechanism", "mlp", "--out", str(out_dir)], capsys)
    assert code == cli.EXIT_BAD_INPUT and "Epoch" not in out
    assert len(err.splitlines()) == 1 and "--mechanism mlp cannot be searched here (time series" in err
    assert not out_dir.exists()  # refused with the data, before any run directory is made
