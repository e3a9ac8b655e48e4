"""1 Experiments: every experiment, sweep and ablation of the TOML; Enter launches."""
from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from engine import rundir as rd
from engine.analysis import PCT, fmt
from engine.config import apply_overrides
from engine.launch import launch_detached, launch_sweep_detached

from ..notices import reported
from ..screens import AskOverrides, Confirm
from ..snapshot import Snapshot
from .base import View, matches, restore_cursor, selected_key, state_text

COLUMNS = ("Experiment", "Task", "Ep.", "Starts from", "Expect", "Latest", "Model", "Data")
SWEEP = "sweep:"  # row key prefix of sweeps and ablations; groups are "group:..."


def dependency_state(e, rows) -> tuple[str | None, str]:
    """(the experiment `e` starts from, its state: done|running|queued|missing)."""
    dep = e.needs
    if not dep:
        return None, ""
    mine = [r for r in rows if r.experiment == dep]
    if any(r.raw_state == "done" for r in mine):
        return dep, "done"
    for r in mine:
        if r.state in rd.LIVE_STATES:
            return dep, r.state
    return dep, "missing"


def starts_from(e, rows):
    """The Starts-from cell: random init, the dependency and its state, or a file or
    pretrained weights."""
    if not e.settings.init:
        return "random"
    if e.needs:
        dep, state = dependency_state(e, rows)
        return Text(f"{dep} ({state})", style="green" if state == "done" else "yellow")
    return str(e.settings.init)


def experiment_rows(config, rows, text: str):
    """(cells, key) of the experiments table: each TOML group, then its experiments."""
    latest = {}
    for r in rows:  # newest first: keep the first seen
        latest.setdefault(r.experiment, r)
    for group, exps in config.groups().items():
        shown = [e for e in exps if matches(text, group, e.name, e.title, e.description)]
        if shown and group:
            yield (Text(group, style="bold underline"),), f"group:{group}"
        for e in shown:
            s, last = e.settings, latest.get(e.name)
            yield (f" {e.name}", s.task, str(s.epochs), starts_from(e, rows),
                   fmt(e.expect.value if e.expect else None, PCT),
                   state_text(last.state) if last else "-", s.model, s.dataset), e.name


def plan_rows(config, rows, text: str):
    """(cells, key) of every sweep and ablation, under their groups."""
    plans = [w for w in [*config.sweeps.values(), *config.ablations.values()]
             if matches(text, w.group, w.name, w.title, w.base)]
    groups_seen = set()
    for w in plans:
        if w.group not in groups_seen:
            groups_seen.add(w.group)
            yield (Text(w.group, style="bold underline"),), f"group:sweeps:{w.group}"
        mine = [r for r in rows if r.experiment == w.name]
        done = len({r.run_id for r in mine if r.raw_state == "done"})
        live = [r for r in mine if r.state in rd.LIVE_STATES]
        ablation = w.name in config.ablations
        yield (f" {w.name}", "ablation" if ablation else "sweep", str(len(w.points())), w.base,
               "-", state_text(live[0].state) if live else f"{done} runs done",
               ", ".join(k for k, _ in (w.components if ablation else w.axes)), ""), \
            f"{SWEEP}{w.name}"


def plan_detail(config, name: str) -> str:
    w = config.plan(name)
    if w.name in config.ablations:
        what = (f"[dim]components ({w.mode.replace('_', '-')}, {w.seeds} seeds):[/dim] "
                + "; ".join(f"{c}: {' '.join(o)}" for c, o in w.components))
    else:
        what = "[dim]axes:[/dim] " + "; ".join(f"{k} in {list(v)}" for k, v in w.axes)
    return (f"[b]{w.title}[/b]  ({w.name})\n[dim]base:[/dim] {w.base}\n{what}\n"
            f"[dim]runs:[/dim] {len(w.points())}; Enter runs those not done yet "
            "(and a missing pretraining run first), one after another")


def experiment_detail(config, name: str, rows) -> str:
    e = config.experiments[name]
    s = e.settings
    keys = ", ".join(f"{k}={v}" for k, v in e.overrides.items()
                     if k not in ("group",)) or "defaults only"
    lines = [f"[b]{e.title}[/b]  ({e.name})", e.description or "",
             f"[dim]settings:[/dim] {keys}",
             (f"[dim]trains:[/dim] {', '.join(s.train_layers)}; batch {s.batch_size}, "
              f"{s.optimizer} lr {s.lr:g}, {s.schedule}")]
    if e.expect:
        lines.append(f"[dim]expected:[/dim] {e.expect.metric} about {fmt(e.expect.value, PCT)}")
    dep, dep_state = dependency_state(e, rows)
    if dep:
        lines.append(f"[dim]needs:[/dim] {dep}'s {s.init_checkpoint} checkpoint: {dep_state}")
    return "\n".join(lines)


class ExperimentsView(View):
    ID, TAB, KEY, FOCUS = "experiments", "Experiments", "1", "#exp-table"
    KEYS = (Binding("o", "launch_with", "Launch with overrides", show=False),)

    filter_text = ""

    def compose(self) -> ComposeResult:
        yield Static("", id="config-error")
        yield DataTable(id="exp-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="exp-detail")

    def on_mount(self) -> None:
        table = self.query_one("#exp-table", DataTable)
        for col in COLUMNS:
            table.add_column(col, key=col)

    def show(self, snap: Snapshot, before: Snapshot) -> None:
        if snap.config_version != before.config_version:
            err = self.query_one("#config-error", Static)
            err.update(Text(snap.config_error or ""))
            err.display = bool(snap.config_error)
        elif not snap.runs_changed:
            return
        self.fill()

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self.fill()

    def fill(self) -> None:
        table = self.query_one("#exp-table", DataTable)
        selected = selected_key(table)
        table.clear()
        config, rows = self.snap.config, self.snap.rows
        if config is None:
            self.query_one("#exp-detail", Static).update("")
            return
        for cells, key in [*experiment_rows(config, rows, self.filter_text),
                           *plan_rows(config, rows, self.filter_text)]:
            table.add_row(*cells, key=key)
        if selected is None or selected.startswith("group:"):  # the first experiment shown
            shown = {k.value for k in table.rows}
            selected = next((e.name for g in config.groups().values() for e in g
                             if e.name in shown), None)
        restore_cursor(table, selected)
        self.show_detail()

    @on(DataTable.RowHighlighted, "#exp-table")
    def show_detail(self) -> None:
        detail = self.query_one("#exp-detail", Static)
        name, config = self.selected(), self.snap.config
        if config is None or name is None:
            detail.update("")
        elif name.startswith(SWEEP):
            detail.update(plan_detail(config, name[len(SWEEP):]))
        elif name in config.experiments:
            detail.update(experiment_detail(config, name, self.snap.rows))
        else:
            detail.update("")

    def selected(self) -> str | None:
        return selected_key(self.query_one("#exp-table", DataTable))

    @on(DataTable.RowSelected, "#exp-table")
    def open(self) -> None:
        self.launch([])

    def launch(self, overrides: list[str]) -> None:
        config, name = self.snap.config, self.selected()
        if config is None:
            self.notify(self.snap.config_error or "no experiments", severity="error")
            return
        if name and name.startswith(SWEEP):
            self.launch_plan(name[len(SWEEP):], overrides)
            return
        if name not in config.experiments:
            return
        with reported(self, f"cannot launch {name}"):
            apply_overrides(config.experiments[name].settings, overrides)  # one line if bad
            dep, dep_state = dependency_state(config.experiments[name], self.snap.rows)
            if dep and dep_state == "missing":
                def answered(yes: bool | None) -> None:
                    if yes:
                        self.start(name, overrides, with_deps=True)
                self.app.push_screen(Confirm(
                    f"[b]{name}[/b] starts from [b]{dep}[/b]'s checkpoint, and {dep} has no "
                    f"successful run.\n\nLaunch {dep} first, then {name}?"), answered)
                return
            self.start(name, overrides)

    def launch_plan(self, name: str, overrides: list[str]) -> None:
        config = self.snap.config
        with reported(self, f"cannot launch {name}"):
            launch_sweep_detached(config, name, overrides, self.snap.runs_dir)
            kind = "ablation" if name in config.ablations else "sweep"
            self.notify(f"launched {kind} {name}: its runs go one after another")

    def start(self, name: str, overrides: list[str], with_deps: bool = False) -> None:
        with reported(self, f"cannot launch {name}"):
            run_id, _ = launch_detached(self.snap.config, name, overrides, self.snap.runs_dir,
                                        with_deps=with_deps)
            what = f"{name} (after its dependencies)" if with_deps else name
            self.notify(f"launched {what}: {run_id}; it waits as queued while the GPU is busy")

    def action_launch_with(self) -> None:
        name = self.selected()
        if self.app.active_view is not self or self.snap.config is None \
                or not name or name.startswith("group:"):
            return

        def got(text: str | None) -> None:
            if text is not None:
                self.launch(text.split())
        self.app.push_screen(AskOverrides(name), got)
