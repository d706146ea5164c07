"""kame.model.modules.cgroup_memory reads the process's own memory cgroup (/proc/self/cgroup's path)
and its parents, taking the smallest limit and the least room (limit - use) of any level (was: the
cgroup mount's root only, so a limit set by systemd's MemoryMax=, on a Kubernetes pod's parent
cgroup, or on the process's own cgroup under docker --cgroupns=host or cgroup v1 was missed, and the
root's use, the whole machine's, was read; then the smallest limit's room only, so a fuller parent
with a larger limit was missed)."""

import pytest
import torch

from kame.model import modules

GiB, MiB = 2**30, 2**20
HUGE_V1 = "9223372036854771712\n"  # cgroup v1's "no limit"


@pytest.fixture
def cgroup(tmp_path, monkeypatch):
    """A fake /sys/fs/cgroup (tmp_path/fs) and /proc/self/cgroup: cgroup(own_lines, {path: text})."""
    fs, proc = tmp_path / "fs", tmp_path / "proc_self_cgroup"
    fs.mkdir()
    monkeypatch.setattr(modules, "CGROUP", str(fs))
    monkeypatch.setattr(modules, "PROC_CGROUP", str(proc))

    def make(own: str | None, files: dict[str, str]) -> None:
        if own is not None:
            proc.write_text(own)
        for name, text in files.items():
            (fs / name).parent.mkdir(parents=True, exist_ok=True)
            (fs / name).write_text(text)
    return make


def v2(folder: str, limit: str, current: int, inactive: int = 0) -> dict[str, str]:
    folder = f"{folder}/" if folder else ""
    return {f"{folder}memory.max": f"{limit}\n", f"{folder}memory.current": f"{current}\n",
            f"{folder}memory.stat": f"anon {current - inactive}\ninactive_file {inactive}\n"}


def v1(folder: str, limit: str, usage: int, inactive: int = 0) -> dict[str, str]:
    folder = f"memory/{folder}/" if folder else "memory/"
    return {f"{folder}memory.limit_in_bytes": f"{limit}\n", f"{folder}memory.usage_in_bytes": f"{usage}\n",
            f"{folder}memory.stat": f"inactive_file 4096\ntotal_inactive_file {inactive}\n"}


def test_v2_a_limit_on_the_processs_own_cgroup_systemd_memorymax(cgroup):
    """A service under systemd's MemoryMax=: v2's root has no memory.max (was: None, no limit)."""
    cgroup("0::/system.slice/kame.service\n",
           {"memory.current": f"{40 * GiB}\n", **v2("system.slice", "max", 3 * GiB),
            **v2("system.slice/kame.service", str(2 * GiB), GiB + GiB // 2, GiB // 2)})
    assert modules.cgroup_memory() == (2 * GiB, GiB)
    assert modules.device_memory(torch.device("cpu")) == (2 * GiB, GiB, modules.CONTAINER, modules.CONTAINER)


def test_v2_a_limit_on_a_parent_only_kubernetes_pod_holds_with_the_parents_use(cgroup):
    """The container's own memory.max is "max", its pod's is 2 GiB (was: None at once on "max")."""
    cgroup("0::/kubepods/pod1/ctr1\n",
           {**v2("kubepods", str(8 * GiB), 6 * GiB), **v2("kubepods/pod1", str(2 * GiB), GiB + 300 * MiB, 100 * MiB),
            **v2("kubepods/pod1/ctr1", "max", 500 * MiB)})
    assert modules.cgroup_memory() == (2 * GiB, 2 * GiB - (GiB + 200 * MiB))


def test_v2_the_least_room_is_a_fuller_parents_under_a_larger_limit(cgroup):
    """A service's MemoryMax=4G with 1 GiB used, in a 6 GiB slice its siblings fill to 5.8 GiB: the
    total is the service's 4 GiB, free the slice's 0.2 GiB, whose each figure the container's (was:
    3 GiB free, the service's own room, and the OOM killer acted at the slice first)."""
    slice_use = 6 * GiB - GiB // 5
    cgroup("0::/system.slice/kame.service\n",
           {**v2("system.slice", str(6 * GiB), slice_use + 100 * MiB, 100 * MiB),
            **v2("system.slice/kame.service", str(4 * GiB), GiB)})
    assert modules.cgroup_memory() == (4 * GiB, GiB // 5)
    host_total, host_available, *_ = modules.device_memory(torch.device("cpu"))
    if host_total > 4 * GiB and host_available > GiB // 5:  # (the container's figures are the lower ones)
        assert modules.device_memory(torch.device("cpu")) == (4 * GiB, GiB // 5, modules.CONTAINER, modules.CONTAINER)
    # the service itself the fuller: its own room
    cgroup(None, v2("system.slice/kame.service", str(4 * GiB), 4 * GiB - GiB // 10))
    assert modules.cgroup_memory() == (4 * GiB, GiB // 10)
    # the slice's limit the smaller one and its room the least: both the slice's
    cgroup(None, {**v2("system.slice", str(3 * GiB), 2 * GiB), **v2("system.slice/kame.service", str(4 * GiB), GiB)})
    assert modules.cgroup_memory() == (3 * GiB, GiB)


def test_v1_with_the_hosts_cgroup_namespace_reads_the_own_cgroup_not_the_roots(cgroup):
    """This layout (cgroup v1, docker --cgroupns=host, CI runners): the root has no limit and the
    whole machine's use (was: read, 1.8 GB in use, and the own cgroup's 2 GiB limit missed)."""
    own = "9:name=systemd:/\n5:devices:/\n4:memory:/process_api/af2f\n3:cpuset:/\n0::/\n"
    cgroup(own, {**v1("", HUGE_V1, 1800 * MiB), **v1("process_api", HUGE_V1, 900 * MiB),
                 **v1("process_api/af2f", str(2 * GiB), 79 * MiB, 9 * MiB)})
    assert modules.cgroup_memory() == (2 * GiB, 2 * GiB - 70 * MiB)
    cgroup(None, v1("process_api/af2f", HUGE_V1, 79 * MiB))  # (no limit anywhere: huge, the fullest level's room)
    assert modules.cgroup_memory() == (int(HUGE_V1), int(HUGE_V1) - 1800 * MiB)


@pytest.mark.parametrize("own", ["4:memory:/docker/0123abcd\n0::/\n",  # v1 docker: its own cgroup mounted as the root
                                 "0::/../../system.slice/other\n",  # outside the cgroup namespace
                                 None])  # no /proc/self/cgroup
def test_an_own_cgroup_not_under_the_mount_falls_back_to_the_root(cgroup, own, tmp_path):
    cgroup(own, {**v2("", str(4 * GiB), GiB), **v1("", str(3 * GiB), GiB)})
    assert modules.cgroup_memory() == (4 * GiB, 3 * GiB)  # (v2 first, as before)
    (tmp_path / "fs" / "memory.max").unlink()
    assert modules.cgroup_memory() == (3 * GiB, 2 * GiB)  # (v1 when v2's files are not there)


def test_v2_without_a_limit_at_any_level_is_none(cgroup):
    cgroup("0::/user.slice/session-1.scope\n",
           {**v2("user.slice", "max", GiB), **v2("user.slice/session-1.scope", "max", GiB), **v1("", str(GiB), 0)})
    assert modules.cgroup_memory() is None


def test_each_figure_names_whose_it_is_the_containers_limit_only_where_it_is_the_lower(cgroup):
    """check_cache_memory's refusal names whose total it is, its warning whose available memory (was:
    "cpu memory" for both, a container's limit as the machine's)."""
    cgroup(None, {})  # (no cgroup: the machine's)
    host_total, host_available, *whose = modules.device_memory(torch.device("cpu"))
    assert whose == [modules.MACHINE] * 2 and host_available > GiB
    # a limit above the machine's memory, most of it in use: the machine's total, the container's available
    cgroup("0::/kame\n", v2("kame", str(2 * host_total), 2 * host_total - GiB // 2))
    assert modules.device_memory(torch.device("cpu")) == (host_total, GiB // 2, modules.MACHINE, modules.CONTAINER)
    # a limit under the machine's, none of it in use: the container's total, the machine's available
    cgroup(None, v2("kame", str(host_total - 1), 0))
    total, available, *whose = modules.device_memory(torch.device("cpu"))
    assert total == host_total - 1 and available < total and whose == [modules.CONTAINER, modules.MACHINE]
