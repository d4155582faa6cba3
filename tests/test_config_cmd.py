"""``sealgate config check`` / ``sealgate config defaults`` (SPEC §7), through click."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from sealgate.cli import EXIT_USAGE, main
from sealgate.config import load_config

REPO = Path(__file__).resolve().parents[1]



def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_valid_config_prints_one_line_and_exits_0(site: Path) -> None:
    path = site / "sealgate.toml"
    path.write_text('[policy]\nfile = "policies/compat.toml"\n')
    result = run("config", "check", "--config", str(path))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    [line] = result.stdout.splitlines()
    assert line.startswith(f"{path}: ok:") and "compat.toml" in line


def test_config_errors_are_printed_one_per_line_and_exit_2(site: Path) -> None:
    path = site / "sealgate.toml"
    path.write_text('[directory]\ncache_ttl = "5x"\n[milter]\ntimeout = "soon"\n')
    result = run("config", "check", "--config", str(path))
    assert result.exit_code == EXIT_USAGE
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f'{path}: milter.timeout: "soon" is not a duration (use 30s, 10m, 2h, 90d)',
        f'{path}: directory.cache_ttl: "5x" is not a duration (use 30s, 10m, 2h, 90d)',
    ]


def test_policy_errors_name_the_policy_file_and_key(site: Path) -> None:
    policy = site / "policies" / "strict.toml"
    policy.write_text(policy.read_text().replace('"signer-is-sender",', '"signer-is-sendr",', 1))
    path = site / "sealgate.toml"
    path.write_text("")
    result = run("config", "check", "--config", str(path))
    assert result.exit_code == EXIT_USAGE
    [line] = result.stderr.splitlines()
    assert line.startswith(f'{policy}: rules[1].require[3]: unknown requirement "signer-is-sendr"')


def test_policy_that_lets_mail_fall_through_is_a_warning(site: Path) -> None:
    (site / "policies" / "strict.toml").write_text(
        '[[rules]]\nname = "internal"\ndirection = "internal"\nrequire = ["signed"]\n')
    path = site / "sealgate.toml"
    path.write_text("")
    result = run("config", "check", "--config", str(path))
    assert result.exit_code == 0
    assert [line.split(": ")[1:3] for line in result.stderr.splitlines()] == [
        ["rules", "warning"], ["rules", "warning"]]


def test_missing_config_file_exits_2(site: Path) -> None:
    result = run("config", "check", "--config", str(site / "nope.toml"))
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.startswith(f"{site / 'nope.toml'}: cannot read the file:")


def test_defaults_prints_a_config_that_loads(site: Path) -> None:
    result = run("config", "defaults")
    assert result.exit_code == 0
    path = site / "sealgate.toml"
    path.write_text(result.stdout)
    assert load_config(path).directory.cache_ttl == 300


def test_config_check_has_help() -> None:
    result = run("config", "check", "--help")
    assert result.exit_code == 0 and "--config" in result.stdout
