"""Every ``--demo`` means minutes: the work each demo plans, counted from its parsed settings without running it
(tests/demo_plans.py), scaled from its measured one-thread CPU time (tests/demo_times.json, docs/benchmarks.md
"Every demo"), stays under 10 minutes; so do the Makefile's demo targets."""
from __future__ import annotations

import json
import math
import runpy
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import demo_plans  # noqa: E402
from demo_plans import DEMOS, LIMIT_SECONDS, MAKE_TARGETS, NOT_PLANNED, ROOT, makefile_commands, plan  # noqa: E402

from anglenas.searchers.registry import searchers_for  # noqa: E402
from anglenas.spaces import get_space  # noqa: E402

TIMES = {row["id"]: row for row in json.loads((Path(__file__).with_name("demo_times.json")).read_text())}
"""Measured once per demo, cut short: CPU seconds on one thread and the work it did."""
ENTRY_FOLDERS = ("shrinking", "searching", "training", "darts-master", "pdarts-master", "nas-bench-201", "utils",
                 "figure")


def scaled_seconds(demo_id: str, work: dict[str, int]) -> float:
    """The measured time of ``demo_id`` scaled by the largest ratio of planned to measured work (each unit's cost
    is fixed by the demo's sizes, which its id pins)."""
    measured = TIMES[demo_id]
    assert measured["rc"] == 0, f"{demo_id} failed when measured: {measured['tail']}"
    assert set(work) == set(measured["work"]), f"{demo_id}: units {sorted(work)} vs measured {sorted(measured['work'])}"
    ratios = [work[u] / measured["work"][u] if measured["work"][u] else math.inf for u in work if work[u]]
    return measured["seconds"] * max(ratios, default=1.0)


@pytest.mark.parametrize("demo", DEMOS, ids=[d.id for d in DEMOS])
def test_every_demo_plans_minutes_on_two_cores(demo):
    work = plan(demo.script, demo.argv)
    assert demo.id in TIMES, f"{demo.id} was never measured: python tests/demo_plans.py --measure {demo.id}"
    seconds = scaled_seconds(demo.id, work)
    assert seconds <= LIMIT_SECONDS, f"{demo.id} plans {work}: about {seconds:.0f} s on 2 cores"


@pytest.mark.parametrize("target", MAKE_TARGETS)
def test_the_makefile_demo_targets_plan_minutes(target, tmp_path):
    """Each command of a target is a demo within the limit; the target's one-thread CPU seconds, spread over 2 cores,
    are too (the stages use both cores: ``make demo`` took 6.2 min of wall time where its commands plan 13.4 min
    on one)."""
    commands = makefile_commands(tmp_path)[target]
    demo_plans.stand_in_operations(commands)
    seconds = [scaled_seconds(f"make-{target}-{i}", plan(script, argv)) for i, (script, argv) in enumerate(commands)]
    assert max(seconds) <= LIMIT_SECONDS, f"make {target}: a command plans about {max(seconds):.0f} s on one core"
    assert sum(seconds) / 2 <= LIMIT_SECONDS, f"make {target}: about {sum(seconds) / 2:.0f} s on 2 cores"


def test_every_entry_point_with_a_demo_and_every_searcher_on_every_space_is_listed(capsys):
    listed = {d.script for d in DEMOS} | set(NOT_PLANNED)
    for folder in ENTRY_FOLDERS:
        for script in sorted((ROOT / folder).glob("*.py")):
            main = runpy.run_path(str(script)).get("main")
            if main is None:
                continue
            with pytest.raises(SystemExit):
                main(["--help"])
            if "--demo" in capsys.readouterr().out:
                assert str(script.relative_to(ROOT)) in listed
    pairs = {(d.argv[d.argv.index("--searcher") + 1], d.argv[d.argv.index("--space") + 1] if "--space" in d.argv
              else None) for d in DEMOS if "--searcher" in d.argv}
    for name in demo_plans.package_searchers():
        assert (name, None) in pairs
        for space in demo_plans.package_spaces():
            if name in searchers_for(get_space(space)):
                assert (name, space) in pairs or get_space(space).name == demo_plans.get_searcher(name).home_space


def test_the_issue_s_darts_imagenet_demo_plans_minutes():
    """``--darts --demo`` planned 750 iterations at batch 512 before --demo applied last; now 8 epochs at 64."""
    work = plan("training/train_from_scratch.py", ["--darts", "--demo", "--arch", "PDARTS_ABS"])
    assert work == {"train": 8 * (2000 // 64)}
