"""GPU inventory and allocation (autoinfer.executors.gpus): pure logic, no GPU needed."""

from __future__ import annotations

import pytest

from autoinfer.config import Config, GpuConfig
from autoinfer.errors import ConfigError
from autoinfer.executors.gpus import (
    Gpu,
    GpuAllocator,
    GpuGrant,
    configured_inventory,
    model_type,
    normalise_type,
)


def two_3090s_and_an_a100() -> GpuAllocator:
    return GpuAllocator([Gpu(0, "rtx3090", 0), Gpu(1, "rtx3090", 1), Gpu(2, "a100", 2)])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("NVIDIA GeForce RTX 3090", "rtx3090"),
        ("NVIDIA GeForce RTX 3090 Ti", "rtx3090ti"),
        ("NVIDIA A100-SXM4-80GB", "a100"),
        ("NVIDIA H100 80GB HBM3", "h100"),
        ("NVIDIA H200", "h200"),
        ("Tesla T4", "t4"),
        ("NVIDIA RTX A6000", "rtxa6000"),
    ],
)
def test_detected_marketing_names_become_trainml_types(name: str, expected: str) -> None:
    assert model_type(name) == expected


def test_types_compare_without_case_dashes_underscores_or_spaces() -> None:
    assert normalise_type("RTX 2080 Ti") == normalise_type("rtx-2080_ti") == "rtx2080ti"
    grant = GpuAllocator([Gpu(0, "RTX 2080 Ti", 0)]).try_acquire("j", 1, ["rtx2080ti"])
    assert grant is not None and grant.indices == (0,)


def test_lowest_free_indices_of_an_acceptable_type_are_given() -> None:
    gpus = two_3090s_and_an_a100()
    assert gpus.try_acquire("a", 1, ["A100"]).indices == (2,)  # type: ignore[union-attr]
    assert gpus.try_acquire("b", 1, ["rtx3090"]).indices == (0,)  # type: ignore[union-attr]
    assert gpus.try_acquire("c", 1, []).indices == (1,)  # type: ignore[union-attr]  # any type
    assert gpus.try_acquire("d", 1, []) is None
    assert gpus.busy() == 3


def test_any_of_several_types_will_do() -> None:
    gpus = two_3090s_and_an_a100()
    grant = gpus.try_acquire("j", 3, ["a100", "rtx 3090"])
    assert grant is not None and grant.indices == (0, 1, 2)


def test_a_request_waits_until_enough_are_free_and_gets_the_freed_index() -> None:
    gpus = two_3090s_and_an_a100()
    assert gpus.try_acquire("first", 1, ["rtx3090"]).indices == (0,)  # type: ignore[union-attr]
    assert gpus.try_acquire("second", 1, ["rtx3090"]).indices == (1,)  # type: ignore[union-attr]
    assert gpus.try_acquire("third", 1, ["rtx3090"]) is None
    assert gpus.try_acquire("third", 1, ["rtx3090"]) is None  # a failed try holds nothing
    gpus.release("first")
    assert gpus.try_acquire("third", 1, ["rtx3090"]).indices == (0,)  # type: ignore[union-attr]


def test_all_or_nothing_a_two_gpu_job_takes_none_while_only_one_is_free() -> None:
    gpus = two_3090s_and_an_a100()
    gpus.try_acquire("one", 1, ["rtx3090"])
    assert gpus.try_acquire("two", 2, ["rtx3090"]) is None
    assert gpus.busy() == 1


def test_requests_the_machine_can_never_meet_are_named() -> None:
    gpus = two_3090s_and_an_a100()
    assert gpus.impossible(1, ["a100"]) is None
    assert gpus.impossible(2, ["rtx3090"]) is None
    assert gpus.impossible(1, ["h100"]) == (
        "no GPU of type h100 on this machine (have: 2 × rtx3090, 1 × a100)"
    )
    assert gpus.impossible(2, ["a100"]) == (
        "2 a100 GPUs asked for, this machine has 1 (have: 2 × rtx3090, 1 × a100)"
    )
    assert (
        gpus.impossible(4, [])
        == "4 GPUs asked for, this machine has 3 (have: 2 × rtx3090, 1 × a100)"
    )
    assert GpuAllocator([]).impossible(1, ["a100"]) is None  # no GPUs at all: runs on the CPU


def test_the_environment_names_the_granted_indices_in_pci_bus_order() -> None:
    grant = GpuGrant((Gpu(1, "rtx3090", 1), Gpu(3, "rtx3090", 3)))
    assert grant.environment() == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "1,3"}
    assert GpuGrant().environment()["CUDA_VISIBLE_DEVICES"] == ""  # a job given none sees none


def test_device_paths_are_the_granted_nodes_and_control_devices_that_exist(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    present = {"/dev/nvidia3", "/dev/nvidiactl", "/dev/nvidia-uvm"}
    monkeypatch.setattr("autoinfer.executors.gpus.Path.exists", lambda p: str(p) in present)
    grant = GpuGrant((Gpu(1, "rtx3090", 3),))
    assert grant.device_paths() == ["/dev/nvidia3", "/dev/nvidiactl", "/dev/nvidia-uvm"]
    assert GpuGrant().device_paths() == []


def test_configured_inventory_keeps_minor_numbers_and_refuses_duplicates() -> None:
    config = Config.model_validate(
        {"gpus": [{"index": 1, "type": "rtx3090", "minor": 5}, {"index": 0, "type": "rtx3090"}]}
    )
    assert config.gpus is not None
    assert configured_inventory(config.gpus) == [Gpu(0, "rtx3090", 0), Gpu(1, "rtx3090", 5)]
    with pytest.raises(ConfigError, match="each index may be listed once"):
        configured_inventory([GpuConfig(index=0, type="a"), GpuConfig(index=0, type="b")])
