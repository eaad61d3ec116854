import io

from rich.console import Console

from pipelines.progress import LineProgress


def run(terminal: bool, steps: int = 10, step_s: float = 10.0) -> list[str]:
    """A task of `steps` steps, one every `step_s` seconds of a fake clock; the console's lines."""
    now = [0.0]
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=200)
    with LineProgress(console=console, get_time=lambda: now[0], every_s=30.0) as progress:
        task = progress.add_task("[bold]distil[/] nano", total=steps, losses="")
        for i in range(steps):
            now[0] += step_s
            progress.update(task, advance=1, losses=f"set {i / 10:.3f}")
    return out.getvalue().splitlines()


def test_off_a_terminal_a_line_at_start_every_30_s_and_at_the_end():
    lines = [line for line in run(terminal=False) if line.startswith("distil nano:")]
    assert lines == [
        "distil nano: 0/10 (0%), 0:00:00 elapsed",
        "distil nano: 3/10 (30%), 0:00:30 elapsed, ~0:01:10 left; losses set 0.200",
        "distil nano: 6/10 (60%), 0:01:00 elapsed, ~0:00:40 left; losses set 0.500",
        "distil nano: 9/10 (90%), 0:01:30 elapsed, ~0:00:10 left; losses set 0.800",
        "distil nano: 10/10 (100%), 0:01:40 elapsed; losses set 0.900",
    ]


def test_a_completed_task_prints_its_last_line_once():
    now = [0.0]
    out = io.StringIO()
    with LineProgress(console=Console(file=out, force_terminal=False), get_time=lambda: now[0]) as progress:
        task = progress.add_task("eval", total=2)
        progress.advance(task, 2)
        now[0] += 100
        progress.update(task, completed=2)
    assert [line for line in out.getvalue().splitlines() if line.startswith("eval:")] == [
        "eval: 0/2 (0%), 0:00:00 elapsed", "eval: 2/2 (100%), 0:00:00 elapsed"]


def test_a_task_ending_short_of_its_total_gets_a_last_line():
    now = [0.0]
    out = io.StringIO()
    with LineProgress(console=Console(file=out, force_terminal=False), get_time=lambda: now[0]) as progress:
        task = progress.add_task("distil", total=2000)
        now[0] = 12.0
        progress.update(task, completed=150)  # a time budget ends the run here
    lines = [line for line in out.getvalue().splitlines() if line.startswith("distil:")]
    assert lines[0] == "distil: 0/2000 (0%), 0:00:00 elapsed" and lines[-1].startswith("distil: 150/2000 (8%), 0:00:12 elapsed")
    assert len(lines) == 2


def test_a_time_budget_caps_the_time_left():
    now = [0.0]
    out = io.StringIO()
    with LineProgress(console=Console(file=out, force_terminal=False), get_time=lambda: now[0], every_s=30) as progress:
        task = progress.add_task("distil", total=2000, budget_s=60.0)
        for step in range(1, 5):
            now[0] = 10.0 * step
            progress.update(task, completed=10 * step)
    lines = [line for line in out.getvalue().splitlines() if line.startswith("distil:")]
    # 10 steps in 10 s would leave ~0:32:30 for 2000 steps; the budget leaves 30 s
    assert lines[1] == "distil: 30/2000 (2%), 0:00:30 elapsed, ~0:00:30 left"
    assert "budget" not in out.getvalue()


def test_line_formats_counts_without_exponents_and_drops_empty_fields():
    from rich.progress import Progress

    from pipelines.progress import progress_line

    with Progress(console=Console(file=io.StringIO()), get_time=lambda: 0.0) as progress:
        task = progress.add_task("[bold]train[/]", total=2_000_000, completed=1_500_000, epoch=3, ce=0.28431, note="")
        assert progress_line(progress.tasks[task]) == "train: 1500000/2000000 (75%), 0:00:00 elapsed; epoch 3 ce 0.284"


def test_on_a_terminal_only_the_live_bar():
    assert not any("elapsed" in line for line in run(terminal=True))
