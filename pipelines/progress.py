"""Progress of long commands, on a terminal and off it.

On a terminal `LineProgress` is rich's live progress bar. Off a terminal (a scheduled job, CI,
output redirected to a file) rich draws nothing until the end, so a job that runs for minutes
would show no sign of life; there `LineProgress` prints one plain line per task when it starts,
then at most every `every_s` seconds while it advances, and when it completes (or the display
stops short of it):

    distil nano-regression: 1200/30000 (4%), 0:01:02 elapsed, ~0:24:51 left; losses ce 0.284 set 0.031
"""

from datetime import timedelta

from rich.progress import Progress, Task, TaskID
from rich.text import Text

EVERY_S = 30.0


class LineProgress(Progress):
    """rich's Progress (same arguments; `every_s`: seconds between lines off a terminal)."""

    def __init__(self, *columns, every_s: float = EVERY_S, **kwargs):
        super().__init__(*columns, **kwargs)
        self._lines = not self.console.is_terminal and not self.disable
        self._every_s = every_s
        self._last_line: dict[TaskID, float] = {}
        self._ended: set[TaskID] = set()

    def add_task(self, description: str, *args, **kwargs) -> TaskID:
        task_id = super().add_task(description, *args, **kwargs)
        self._line(task_id, force=True)
        return task_id

    def update(self, task_id: TaskID, *args, **kwargs) -> None:
        super().update(task_id, *args, **kwargs)
        self._line(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._line(task_id)

    def stop(self) -> None:
        """Also the last line of each task that ended short of its total (e.g. on a time budget)."""
        for task in self.tasks:
            self._line(task.id, force=True)
        super().stop()

    def _line(self, task_id: TaskID, force: bool = False) -> None:
        if not self._lines or task_id in self._ended:
            return
        task = next(t for t in self.tasks if t.id == task_id)
        now = self.get_time()
        ended = task.total is not None and task.completed >= task.total
        if not (force or ended or now - self._last_line.get(task_id, now) >= self._every_s):
            return
        self._last_line[task_id] = now
        if ended:
            self._ended.add(task_id)
        self.console.print(progress_line(task), markup=False, highlight=False, soft_wrap=True)


def progress_line(task: Task) -> str:
    """"description: done/total (percent), elapsed, ~left; fields" of a rich task; a task field
    `budget_s` (a time budget that may end the task before its total) caps the time left."""
    done = _number(task.completed) + ("" if task.total is None else f"/{_number(task.total)} ({task.percentage:.0f}%)")
    parts = [f"{Text.from_markup(task.description).plain}: {done}"]
    if task.elapsed is not None:
        parts.append(f"{_clock(task.elapsed)} elapsed")
    left = task.time_remaining
    budget = task.fields.get("budget_s")
    if budget is not None and task.elapsed is not None:  # a run that its time budget ends first
        left = min(left if left is not None else budget, max(0.0, budget - task.elapsed))
    if left is not None and not task.finished:
        parts.append(f"~{_clock(left)} left")
    fields = " ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in task.fields.items()
                      if v not in ("", None) and k != "budget_s")
    return ", ".join(parts) + (f"; {fields}" if fields else "")


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=int(seconds)))
