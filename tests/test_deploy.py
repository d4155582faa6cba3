"""Every file under deploy/ (and the Dockerfile) is checked by the tool that reads it.

- Postfix snippets: loaded by a throwaway Postfix (postconf/postfix check), and
  used by every test in test_postfix_e2e.py;
- systemd unit: ``systemd-analyze verify`` and ``security --offline``;
- compose file: ``docker compose config`` (or ``docker-compose config``);
- alert rules: ``promtool check rules`` and ``promtool test rules``; the
  Prometheus config: ``promtool check config``;
- Grafana dashboard: JSON, and every query parsed by promtool as a rule;
- Dockerfile: static checks only (building needs a Docker daemon and network).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from need import need_binary
from postfix_fixtures import DEPLOY_POSTFIX, require_postfix

from sealgate.config import load_config
from sealgate.devpki import TestPKI
from sealgate.devpostfix import DevPostfix

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
SPEC_METRICS = {"sealgate_messages_total", "sealgate_violations_total", "sealgate_message_seconds",
                "sealgate_directory_seconds", "sealgate_directory_lookups_total",
                "sealgate_crl_next_update_timestamp_seconds", "sealgate_quarantine_messages",
                "sealgate_errors_total"}


def tool(name: str, hint: str) -> str:
    """The path of a command-line tool; missing: fail in CI, skip elsewhere."""
    return need_binary(name, hint)


def run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


def metric_names(expr: str) -> set[str]:
    """sealgate_* series named in a PromQL expression, histogram suffixes folded."""
    names = set(re.findall(r"\bsealgate_[a-z_]+", expr))
    return {re.sub(r"_(bucket|count|sum)$", "", n) if re.search(r"_seconds_(bucket|count|sum)$", n)
            else n for n in names}


# ---------------------------------------------------------------- Postfix


def test_postfix_snippets_load_without_warnings():
    require_postfix()
    mta = DevPostfix(main_snippets=[DEPLOY_POSTFIX / "main.cf"],
                     master_snippets=[DEPLOY_POSTFIX / "master.cf"])
    try:
        mta.start()
        main = run(["postconf", "-c", str(mta.etc), "-n"])
        master = run(["postconf", "-c", str(mta.etc), "-M"])
        services = run(["postconf", "-c", str(mta.etc), "-P"])
    finally:
        mta.stop()
    assert main.returncode == 0 and master.returncode == 0, main.stderr + master.stderr
    assert "warning" not in main.stderr + master.stderr + services.stderr  # e.g. unused parameter
    settings = dict(line.split(" = ", 1) for line in main.stdout.splitlines() if " = " in line)
    assert settings["smtpd_milters"] == "unix:sealgate/sealgate.sock"
    assert settings["milter_default_action"] == "tempfail"
    assert settings["milter_protocol"] == "6"
    assert "i" in settings["milter_end_of_data_macros"].split()
    release = f"127.0.0.1:{mta.reinject_port}/inet"
    options = {}
    for line in services.stdout.splitlines():  # "127.0.0.1:PORT/inet/NAME = VALUE"
        match = re.fullmatch(r"(\S+)/(\S+) =(?: (.*))?", line)
        if match and match.group(1) == release:
            options[match.group(2)] = match.group(3) or ""
    assert options["smtpd_milters"] == ""
    assert options["receive_override_options"] == "no_milters"
    assert options["mynetworks"] == "127.0.0.0/8"


# ---------------------------------------------------------------- systemd


SERVICES = ("sealgate.service", "sealgate-purge.service")


def unit_for_here(tmp_path: Path, name: str = "sealgate.service") -> Path:
    """A shipped unit with /usr/bin/sealgate pointing at this checkout's sealgate."""
    sealgate = Path(sys.executable).with_name("sealgate")
    assert sealgate.exists(), f"{sealgate} missing: pip install -e ."
    unit = tmp_path / name
    unit.write_text((DEPLOY / "systemd" / name).read_text()
                    .replace("/usr/bin/sealgate", str(sealgate)))
    return unit


@pytest.mark.parametrize("name", [*SERVICES, "sealgate-purge.timer"])
def test_systemd_units_verify(tmp_path, name):
    analyze = tool("systemd-analyze", "Debian package systemd")
    for service in SERVICES:  # a timer is verified with the service it starts beside it
        unit_for_here(tmp_path, service)
    if name.endswith(".timer"):
        (tmp_path / name).write_text((DEPLOY / "systemd" / name).read_text())
    proc = run([analyze, "verify", str(tmp_path / name)])
    # verify exits 0 even for an unparsable value: its warnings count as failure here.
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


def test_systemd_unit_is_hardened(tmp_path):
    analyze = tool("systemd-analyze", "Debian package systemd")
    text = (DEPLOY / "systemd" / "sealgate.service").read_text()
    for directive in ("User=sealgate", "ProtectSystem=strict", "NoNewPrivileges=yes",
                      "StateDirectory=sealgate", "RuntimeDirectory=sealgate", "CapabilityBoundingSet=\n",
                      "ReadWritePaths=/var/spool/postfix/sealgate", "ExecReload=/bin/kill -HUP $MAINPID"):
        assert directive in text, directive
    for name in SERVICES:
        proc = run([analyze, "security", "--offline=true", str(unit_for_here(tmp_path, name))])
        match = re.search(rf"Overall exposure level for {re.escape(name)}: (\d+\.\d+)", proc.stdout)
        assert match, proc.stdout[-500:] + proc.stderr
        assert float(match.group(1)) <= 2.0  # systemd's scale: 0 (locked down) .. 10 (exposed)


@pytest.mark.parametrize("name", SERVICES)
def test_systemd_commands_exist(name):
    sealgate = Path(sys.executable).with_name("sealgate")
    text = (DEPLOY / "systemd" / name).read_text()
    for line in re.findall(r"^Exec(?:Start|StartPre)=/usr/bin/sealgate (.*)$", text, re.M):
        words = line.split()
        command = words[:words.index("--config")]
        proc = run([str(sealgate), *command, "--help"])
        assert proc.returncode == 0, (line, proc.stderr)
        for option in re.findall(r"--[a-z-]+", line):
            assert option in proc.stdout, (line, option)


# ---------------------------------------------------------------- compose


def compose_command() -> list[str]:
    docker = shutil.which("docker")
    if docker and run([docker, "compose", "version"]).returncode == 0:
        return [docker, "compose"]
    return [tool("docker-compose", "Debian package docker-compose")]


def test_compose_file_parses_with_the_four_services():
    compose = compose_command()
    path = str(DEPLOY / "docker-compose.yml")
    proc = run([*compose, "-f", path, "config", "-q"], cwd=DEPLOY)
    assert proc.returncode == 0, proc.stderr
    services = run([*compose, "-f", path, "config", "--services"], cwd=DEPLOY)
    assert set(services.stdout.split()) == {"sealgate", "postfix", "openldap", "prometheus"}


def test_compose_sealgate_config_is_a_valid_config(pki: TestPKI, tmp_path):
    site = tmp_path / "etc"
    shutil.copytree(DEPLOY / "compose" / "sealgate", site)
    shutil.copy(pki.ca.cert_path, site / "pki" / "ca.pem")
    shutil.copy(pki.crl_path, site / "pki" / "ca.crl")
    config = site / "sealgate.toml"
    # The compose file mounts ../policies there.
    config.write_text(config.read_text().replace("/etc/sealgate-policies/", f"{REPO}/policies/"))
    loaded = load_config(config)
    assert loaded.metrics.listen == "0.0.0.0:9489"
    assert loaded.directory.backend == "ldap"


def test_compose_postfix_entrypoint_is_valid_sh():
    proc = run(["sh", "-n", str(DEPLOY / "compose" / "postfix" / "entrypoint.sh")])
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- Prometheus


def test_alert_rules_check_and_their_unit_tests_pass():
    promtool = tool("promtool", "Debian package prometheus")
    rules = DEPLOY / "prometheus" / "sealgate-alerts.yml"
    proc = run([promtool, "check", "rules", str(rules)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run([promtool, "test", "rules", "sealgate-alerts.test.yml"], cwd=rules.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run([promtool, "check", "config", "prometheus.yml"], cwd=rules.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = rules.read_text()
    for alert in ("SealgateDown", "SealgateCRLNearNextUpdate", "SealgateTempfailRate",
                  "SealgateQuarantineGrowth"):
        assert f"alert: {alert}\n" in text
    exprs = re.findall(r"expr: (.*)", text)
    assert exprs and all(metric_names(e) <= SPEC_METRICS for e in exprs)


def test_grafana_dashboard_queries_parse_and_use_only_spec_metrics(tmp_path):
    promtool = tool("promtool", "Debian package prometheus")
    dashboard = json.loads((DEPLOY / "grafana" / "sealgate-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 8
    used: set[str] = set()
    for expr in exprs:
        used |= metric_names(expr)
    assert used == SPEC_METRICS  # every SPEC §8 metric is on the dashboard, nothing else
    # promtool parses PromQL when checking recording rules: one rule per query.
    rules = tmp_path / "dashboard-rules.yml"
    rules.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)]}]}))
    proc = run([promtool, "check", "rules", str(rules)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_multi_stage_non_root_with_healthcheck_and_entrypoint():
    instructions = dockerfile_instructions()
    stages = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    assert len(stages) >= 2
    final = instructions[stages[-1]:]
    assert instructions[stages[-1]][1].startswith("python:3.11-slim")
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    (health,) = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert "/healthz" in health and "9489" in health
    (entrypoint,) = [rest for word, rest in final if word == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["sealgate", "milter"]
    # Only the runtime library in the final stage, no compiler.
    final_text = " ".join(rest for _, rest in final)
    assert "gcc" not in final_text and "-dev" not in final_text
    for word, rest in instructions:
        if word == "COPY" and "--from=" not in rest:
            for source in rest.split()[:-1]:
                assert (REPO / source).exists(), f"Dockerfile COPY {source}: not in the repository"


def test_dockerignore_keeps_the_build_context_small():
    ignored = (REPO / ".dockerignore").read_text().split()
    for name in (".venv", ".git", "tests"):
        assert name in ignored
    for word, rest in dockerfile_instructions():
        if word == "COPY" and "--from=" not in rest:
            assert not set(rest.split()[:-1]) & set(ignored)
