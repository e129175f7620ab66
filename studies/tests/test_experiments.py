"""The study's task plan and assembly (no training: the tasks themselves are tested above)."""
import pytest

from studies import bits as B
from studies.common import METHODS
from studies.experiments import assemble, main, plan


def test_plan_has_one_task_per_method_seed_dataset_and_is_stable():
    t = plan(["accuracy"], False, ["digits", "mnist"], METHODS)
    assert len(t) == 2 * len(METHODS) * 3
    assert len({x["id"] for x in t}) == len(t)
    assert plan(["accuracy"], False, ["digits", "mnist"], METHODS) == t     # array jobs agree
    assert [x["seed"] for x in plan(["accuracy"], True, ["digits"], ["BSO"], [5])] == [5]


def test_bits_plan_covers_the_table():
    widths, seeds = [2, 8], [0, 1]
    tasks = B.bits_tasks(widths, seeds)
    assert len(tasks) == 2 * (1 + 2 * len(widths)) * len(seeds)
    fake = {B.task_key(x["opt"], x["arith"], x["width"], x["seed"]): {"acc": 0.5, "sat": 1}
            for x in tasks}
    table = B.assemble_bits(fake, widths, seeds, 1, None)
    assert table["runs"]["BSO SR 8"] == [0.5, 0.5] and table["runs"]["T-BSO noSR 2 sat"] == 2


def test_assemble_keeps_rows_until_every_seed_is_done():
    tasks = plan(["accuracy"], True, ["digits"], ["BSO"])
    hist = {"test_acc": [0.9], "seconds": 1.0,
            "data": {"n_train": 1, "n_test": 1, "T": 8, "n_in": 128, "source": "x"}}
    res = {"meta": {}}
    assemble(res, {tasks[0]["id"]: {"task": tasks[0], "result": hist, "seconds": 1.0}})
    assert "BSO" not in res.get("accuracy", {}).get("runs", {}).get("digits", {})
    assemble(res, {t["id"]: {"task": t, "result": hist, "seconds": 1.0} for t in tasks})
    assert len(res["accuracy"]["runs"]["digits"]["BSO"]) == len(tasks)


@pytest.mark.parametrize("argv", [["--jobs", "0"], ["--datasets", "cifar"], ["--seeds", "a"],
                                  ["--task", "99999"]])
def test_bad_arguments_exit_2(argv, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(argv + ["--parts", str(tmp_path / "p")])
    assert e.value.code == 2
