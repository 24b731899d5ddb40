"""The bubblewrap command line a job gets, and where a job's local paths may lie."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoinfer.config import Config
from autoinfer.errors import Forbidden
from autoinfer.jobs.spec import parse_spec
from autoinfer.keys import Principal, Role
from autoinfer.sandbox import JobAdmission, PathNotAllowed, PathPolicy
from autoinfer.sandbox.policy import HostLayout, JobView, Limits, RunAs, bwrap_argv

JOB = Path("/srv/autoinfer/scratch/job-1")
LAYOUT = HostLayout(
    symlinks={"/bin": "usr/bin", "/lib": "usr/lib"},
    etc=("/etc/hosts", "/etc/resolv.conf", "/etc/ssl/certs"),
)


def view(**changes: object) -> JobView:
    values: dict = {
        "cwd": JOB / "model",
        "read_write": (JOB / "data", JOB / "output"),
        "read_only": (JOB / "model", Path("/srv/autoinfer/environments/abc"), Path("/usr")),
        "passwd": JOB / "sandbox-etc" / "passwd",
        "group": JOB / "sandbox-etc" / "group",
    }
    values.update(changes)
    return JobView(**values)


def pairs(argv: list[str], flag: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, arg in enumerate(argv) if arg == flag]


def test_the_jobs_folders_are_bound_at_their_own_paths_data_and_output_writable() -> None:
    argv = bwrap_argv(view(), "python predict.py", layout=LAYOUT)
    assert (str(JOB / "data"),) * 2 in pairs(argv, "--bind")
    assert (str(JOB / "output"),) * 2 in pairs(argv, "--bind")
    assert (str(JOB / "model"),) * 2 in pairs(argv, "--ro-bind")
    assert ("/srv/autoinfer/environments/abc",) * 2 in pairs(argv, "--ro-bind")
    assert argv[argv.index("--chdir") + 1] == str(JOB / "model")
    assert argv[-3:] == ["/bin/sh", "-c", "python predict.py"]


def test_only_usr_the_chosen_etc_files_and_the_jobs_own_passwd_are_shown() -> None:
    argv = bwrap_argv(view(), "true", layout=LAYOUT)
    sources = {source for source, _ in pairs(argv, "--ro-bind") + pairs(argv, "--bind")}
    assert "/" not in sources and "/etc" not in sources and "/etc/shadow" not in sources
    assert ("/usr", "/usr") in pairs(argv, "--ro-bind")
    assert (str(JOB / "sandbox-etc" / "passwd"), "/etc/passwd") in pairs(argv, "--ro-bind")
    assert ("usr/bin", "/bin") in pairs(argv, "--symlink")
    assert argv.count("/usr") == 2  # /usr itself is bound once; paths inside it not again
    assert "--clearenv" not in argv  # the environment comes from Popen: no secret in argv


def test_the_folders_above_a_bind_are_made_traversable_parents_first() -> None:
    argv = bwrap_argv(view(), "true", layout=LAYOUT)
    made = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--dir"]
    assert made == [
        "/etc",
        "/srv",
        "/etc/ssl",
        "/srv/autoinfer",
        "/srv/autoinfer/environments",
        "/srv/autoinfer/scratch",
        str(JOB),
    ]
    assert all(argv[argv.index(f) - 3 : argv.index(f) - 1] == ["--perms", "0755"] for f in made)
    last_dir = max(i for i, arg in enumerate(argv) if arg == "--dir")
    assert last_dir < argv.index("/etc/passwd") and last_dir < argv.index("--bind")


def test_unprivileged_it_unshares_everything_and_keeps_the_network_only_when_allowed() -> None:
    closed = bwrap_argv(view(), "true", layout=LAYOUT)
    assert "--unshare-all" in closed and "--share-net" not in closed
    assert {"--die-with-parent", "--new-session"} <= set(closed)
    assert closed[closed.index("--tmpfs") - 2 : closed.index("--tmpfs") + 2] == [
        "--perms",
        "1777",
        "--tmpfs",
        "/tmp",
    ]
    assert "--share-net" in bwrap_argv(view(network=True), "true", layout=LAYOUT)


def test_as_root_it_drops_to_the_jobs_uid_with_no_groups_and_no_capabilities() -> None:
    argv = bwrap_argv(view(), "true", layout=LAYOUT, run_as=RunAs(65534, 65534))
    assert "--unshare-all" not in argv  # a user namespace would map the job back to root
    assert {"--unshare-pid", "--unshare-ipc", "--unshare-net"} <= set(argv)
    setpriv = argv.index("/usr/bin/setpriv")
    assert argv[setpriv + 1 : setpriv + 7] == [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
    ]
    opened = bwrap_argv(view(network=True), "true", layout=LAYOUT, run_as=RunAs(65534, 65534))
    assert "--unshare-net" not in opened


def test_limits_wrap_the_whole_command_and_devices_are_bound_when_given() -> None:
    argv = bwrap_argv(
        view(devices=(Path("/dev/nvidia0"),), tmp_bytes=1 << 30),
        "true",
        layout=LAYOUT,
        limits=Limits(open_files=1024, processes=512, data_bytes=1 << 30),
    )
    assert argv[:5] == [
        "/usr/bin/prlimit",
        "--nofile=1024:1024",
        "--nproc=512:512",
        f"--data={1 << 30}:{1 << 30}",
        "--",
    ]
    assert ("/dev/nvidia0", "/dev/nvidia0") in pairs(argv, "--dev-bind")
    assert ("/sys/devices", "/sys/devices") in pairs(argv, "--ro-bind-try")
    assert "--ro-bind-try" not in bwrap_argv(view(), "true", layout=LAYOUT)  # no devices, no /sys
    assert argv[argv.index("--size") + 1] == str(1 << 30)


# --- confined paths and the role that may run code ----------------------------------------


def spec(input_uri: str, **model: str) -> object:
    return parse_spec(
        {
            "name": "j",
            "workers": ["true"],
            "model": {"source_type": "local", "source_uri": "/srv/models/m", **model},
            "data": {"input_uri": input_uri, "output_uri": "/srv/buckets/data/out"},
        }
    )


@pytest.fixture
def policy(tmp_path: Path) -> PathPolicy:
    (tmp_path / "buckets" / "data").mkdir(parents=True)
    (tmp_path / "service").mkdir()
    return PathPolicy.build(
        [tmp_path / "buckets", tmp_path], [tmp_path / "service"], base_dir=tmp_path
    )


def test_paths_inside_a_root_pass_and_data_dir_never_does(
    policy: PathPolicy, tmp_path: Path
) -> None:
    assert policy.allows(tmp_path / "buckets" / "data" / "x.zip")
    assert not policy.allows(tmp_path / "service" / "master.key")
    assert not policy.allows(Path("/etc/passwd"))
    with pytest.raises(PathNotAllowed, match=r"^data\.input_uri: .* must lie inside a local store"):
        policy.check_uri("data.input_uri", f"file://{tmp_path}/service/autoinfer.db")


def test_symlinks_and_dotdot_are_resolved_before_the_check(
    policy: PathPolicy, tmp_path: Path
) -> None:
    (tmp_path / "buckets" / "data" / "link").symlink_to(tmp_path / "service")
    assert not policy.allows(tmp_path / "buckets" / "data" / "link" / "master.key")
    with pytest.raises(PathNotAllowed):
        policy.check_uri("data.input_uri", "buckets/../service/master.key")  # relative to base


def test_each_local_field_is_named_and_remote_ones_are_not_checked(policy: PathPolicy) -> None:
    with pytest.raises(PathNotAllowed) as caught:
        policy.check_spec(spec("s3://bucket/in.zip", labels_uri="/etc/labels.txt"))
    message = str(caught.value)
    assert "data.output_uri: /srv/buckets/data/out" in message
    assert "model.source_uri: /srv/models/m" in message
    assert "model.labels_uri: /etc/labels.txt" in message
    assert "data.input_uri" not in message
    remote_git = spec("s3://b/in.zip", source_type="git", source_uri="git@github.com:org/model.git")
    with pytest.raises(PathNotAllowed) as caught:
        policy.check_spec(remote_git)
    assert "model.source_uri" not in str(caught.value)


def test_a_key_below_the_configured_role_cannot_run_worker_commands() -> None:
    admission = JobAdmission(paths=None, worker_commands_role=Role.CODE)
    submitter = Principal(id="k", name="ci", role=Role.SUBMIT)
    with pytest.raises(Forbidden, match=r"cannot run worker commands .needs code"):
        admission.check(spec("s3://b/in.zip"), submitter)
    admission.check(spec("s3://b/in.zip"), Principal(id="k", name="dev", role=Role.CODE))
    builtin = parse_spec({"name": "b", "data": {"input_uri": "s3://b/x", "output_uri": "s3://b/y"}})
    admission.check(builtin, submitter)


def test_sandbox_none_is_the_shorthand_of_the_mapping() -> None:
    assert Config.model_validate({"sandbox": "none"}).sandbox.type == "none"
    assert Config.model_validate({}).sandbox.type == "bwrap"
    assert Config.model_validate({"sandbox": {"network": True}}).sandbox.network is True
