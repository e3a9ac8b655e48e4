"""1 Experiments: every experiment, sweep and ablation of the TOML; Enter launches, d shows
the dataset card."""
from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from engine.core import rundir as rd
from engine.core.settings import override_errors
from engine.core.table import PCT, fmt
from engine.live.query import Query, experiment_fields
from engine.live.snapshot import Snapshot
from engine.report.overview import busy_text
from engine.runs.detached import launch_detached, launch_sweep_detached
from tui.notices import in_background
from tui.screens import AskText, Confirm, DatasetCard
from tui.views.base import View, restore_cursor, selected_key, state_text
from tui.widgets.table import Table, cell_value

# Latest (the last result) next to the name, so that it shows on a narrow terminal too
COLUMNS = ("Experiment", "Latest", "Expect", "Task", "Ep.", "Starts from", "Model", "Data")
SWEEP = "sweep:"  # row key prefix of sweeps and ablations; groups are "group:..."
GROUP = "group:"
MIN_NAME_W = 22  # the name column's least width; longer group titles wrap in it


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


def starts_from(e, rows, weights):
    """The Starts-from cell: random init, the dependency and its state, a file, or
    published weights and whether they are here."""
    if not e.settings.init:
        return "random"
    if e.needs:
        dep, state = dependency_state(e, rows)
        return Text(f"{dep} ({state})", style="green" if state == "done" else "yellow")
    weights = weights.get(e.name)
    if weights:
        return Text(weights[1], style="green" if weights[0] else "yellow")
    return str(e.settings.init)


def latest_cell(r) -> Text | str:
    """The latest run's state and its accuracy (the reported figure once done)."""
    if r is None:
        return "-"
    text = state_text(r.state)
    if r.acc is not None:
        text.append(f" {100 * r.acc:.1f}%")
    return text


def table_rows(config, rows, q: Query, weights, order=list) -> list:
    """(cells, key) of the experiments table: each TOML group's title once, then its
    experiments, then its sweeps and ablations; `order` sorts the rows within a group."""
    groups: dict[str, list] = {}
    for group, cells in [*experiment_rows(config, rows, q, weights),
                         *plan_rows(config, rows, q)]:
        groups.setdefault(group, []).append(cells)
    out = []
    for group, cells in groups.items():
        if group:
            out.append(((Text(group, style="bold underline"),), f"{GROUP}{group}"))
        out += order(cells)
    return out


def latest_runs(rows) -> dict:
    latest = {}
    for r in rows:  # newest first: keep the first seen
        latest.setdefault(r.experiment, r)
    return latest


def experiment_rows(config, rows, q: Query, weights):
    """(group, (cells, key)) of each experiment the filter lets through."""
    latest = latest_runs(rows)
    for group, exps in config.groups().items():
        for e in exps:
            fields = experiment_fields(e, group, latest.get(e.name)) if q.terms else {}
            if not q.matches(fields, (group, e.name, e.title, e.description)):
                continue
            s = e.settings
            yield group, ((f" {e.name}", latest_cell(latest.get(e.name)),
                           fmt(e.expect.value if e.expect else None, PCT), s.task,
                           str(s.epochs), starts_from(e, rows, weights), s.model, s.dataset),
                          e.name)


def plan_rows(config, rows, q: Query):
    """(group, (cells, key)) of every sweep and ablation the filter lets through (terms
    compare its base experiment's settings)."""
    def fields(w) -> dict:
        base = config.experiments.get(w.base)
        out = experiment_fields(base, w.group, None) if base and q.terms else {}
        return {**out, "name": w.name, "experiment": w.name, "base": w.base,
                "kind": "ablation" if w.name in config.ablations else "sweep"}
    plans = [w for w in [*config.sweeps.values(), *config.ablations.values()]
             if q.matches(fields(w), (w.group, w.name, w.title, w.base))]
    for w in plans:
        mine = [r for r in rows if r.experiment == w.name]
        done = len({r.run_id for r in mine if r.raw_state == "done"})
        live = [r for r in mine if r.state in rd.LIVE_STATES]
        ablation = w.name in config.ablations
        yield w.group, ((f" {w.name}", state_text(live[0].state) if live
                         else f"{done} runs done", "-", "ablation" if ablation else "sweep",
                         str(len(w.points())), w.base,
                         ", ".join(k for k, _ in (w.components if ablation else w.axes)), ""),
                        f"{SWEEP}{w.name}")


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


def experiment_detail(config, name: str, rows, weights) -> str:
    e = config.experiments[name]
    s = e.settings
    keys = ", ".join(f"{k}={v}" for k, v in e.overrides.items()
                     if k not in ("group",)) or "defaults only"
    lines = [f"[b]{e.title}[/b]  ({e.name})"]
    # where the weights start first: what to do before launching shows on a short pane
    dep, dep_state = dependency_state(e, rows)
    if dep:
        lines.append(f"[dim]needs:[/dim] {dep}'s {s.init_checkpoint} checkpoint: {dep_state}")
    weights = weights.get(e.name)
    if weights:
        lines.append(f"[dim]weights:[/dim] {escape(weights[2])}" if weights[0] else
                     f"[yellow]weights: {escape(weights[2])}[/yellow]")
    lines += [e.description or "", f"[dim]settings:[/dim] {keys}",
              (f"[dim]trains:[/dim] {', '.join(s.train_layers)}; batch {s.batch_size}, "
               f"{s.optimizer} lr {s.lr:g}, {s.schedule}")]
    if e.expect:
        lines.append(f"[dim]expected:[/dim] {e.expect.metric} about {fmt(e.expect.value, PCT)}")
    return "\n".join(lines)


def settings_of(config, name: str):
    """The settings overrides apply to: the experiment's, or a plan's base experiment's."""
    if name.startswith(SWEEP):
        name = config.plan(name[len(SWEEP):]).base
    return config.experiments[name].settings


class ExperimentsView(View):
    ID, TAB, KEY, FOCUS = "experiments", "Experiments", "1", "#exp-table"
    KEYS = (Binding("o", "launch_with", "Launch with overrides", show=False),
            Binding("d", "dataset_card", "Dataset card: classes, images per class, samples",
                    show=False))
    # footer hints while shown (enter has priority over the table's own hidden binding,
    # which would hide it; it does what the table's does)
    BINDINGS = [Binding("enter", "app.open", "Launch", priority=True),
                Binding("o", "launch_with", "Overrides"),
                Binding("d", "dataset_card", "Data")]

    where = Query()  # the filter box's
    last_row = 0  # the cursor's row before it moved: which way to skip a group's title

    def compose(self) -> ComposeResult:
        yield Static("", id="config-error")
        table = Table(id="exp-table", cursor_type="row", zebra_stripes=True)
        table.names = COLUMNS
        yield table
        yield Static("", id="exp-detail")

    def show(self, snap: Snapshot, before: Snapshot) -> None:
        if snap.config_version != before.config_version:
            err = self.query_one("#config-error", Static)
            kept = "\n(showing the last version that loaded; launching waits for the fix, " \
                   "R reloads)" if snap.config is not None else ""
            err.update(Text(f"{snap.config_error}{kept}" if snap.config_error else ""))
            err.display = bool(snap.config_error)
        elif not snap.runs_changed:
            return
        self.fill()

    def set_filter(self, query: Query) -> None:
        self.where = query
        self.fill()

    @on(Table.Sorted, "#exp-table")
    def fill(self) -> None:
        table = self.query_one("#exp-table", Table)
        selected = selected_key(table)
        table.clear(columns=True)
        config, rows = self.snap.config, self.snap.rows
        if config is None:
            self.query_one("#exp-detail", Static).update("")
            return
        cells = table_rows(config, rows, self.where, self.snap.weights, lambda group: table.ordered(
            group, lambda item, col: cell_value(item[0][COLUMNS.index(col)])))
        # the name column as wide as the longest name, not the longest group title
        name_w = max([MIN_NAME_W, *(len(c[0]) for c, k in cells if not k.startswith(GROUP))])
        for col in COLUMNS:
            table.add_column(table.label(col), key=col,
                             width=name_w if col == COLUMNS[0] else None)
        for row, key in cells:  # a group's title on one line: cut to the column, with …
            if key.startswith(GROUP) and len(row[0]) > name_w:
                row = (row[0][:name_w - 1] + "…",)
            table.add_row(*row, key=key)
        if selected is None or selected.startswith(GROUP):  # the first experiment shown
            shown = {k.value for k in table.rows}
            selected = next((e.name for g in config.groups().values() for e in g
                             if e.name in shown), None)
        restore_cursor(table, selected)
        self.show_detail()

    @on(DataTable.RowHighlighted, "#exp-table")
    def moved(self) -> None:
        table = self.query_one("#exp-table", DataTable)
        key = selected_key(table)
        if key and key.startswith(GROUP):
            self.skip_group(table)
            return
        self.last_row = table.cursor_row
        self.show_detail()

    def skip_group(self, table: DataTable) -> None:
        """A group's title is no row to act on: the cursor moves past it the way it was
        going (the other way at either end)."""
        keys = [r.key.value for r in table.ordered_rows]
        row = table.cursor_row
        step = 1 if row >= self.last_row else -1
        for s in (step, -step):
            i = row + s
            while 0 <= i < len(keys) and keys[i].startswith(GROUP):
                i += s
            if 0 <= i < len(keys):
                table.move_cursor(row=i, animate=False)
                return

    def show_detail(self) -> None:
        detail = self.query_one("#exp-detail", Static)
        name, config = self.selected(), self.snap.config
        if config is None or name is None:
            detail.update("")
        elif name.startswith(SWEEP):
            detail.update(plan_detail(config, name[len(SWEEP):]))
        elif name in config.experiments:
            detail.update(experiment_detail(config, name, self.snap.rows, self.snap.weights))
        else:
            detail.update("")

    def selected(self) -> str | None:
        return selected_key(self.query_one("#exp-table", DataTable))

    @on(DataTable.RowSelected, "#exp-table")
    def open(self) -> None:
        self.launch([])

    def launch(self, overrides: list[str]) -> None:
        config, name = self.snap.config, self.selected()
        if config is None or self.snap.config_error:
            self.notify(self.snap.config_error or "no experiments", severity="error")
            return
        if not name or name.startswith(GROUP):
            return
        errors = override_errors(settings_of(config, name), overrides)
        if errors:
            self.notify("\n".join(errors), severity="error", timeout=8)
            return
        if name.startswith(SWEEP):
            self.launch_plan(name[len(SWEEP):], overrides)
            return
        busy = busy_text(name, [(r.state, r.epoch, r.epochs) for r in self.snap.rows
                                if Path(r.key).parent.name == name])
        if busy:
            def again(yes: bool | None) -> None:
                if yes:
                    self.launch_unless_missing(name, overrides)
            self.app.push_screen(Confirm(f"{busy}.\n\nLaunch another?"), again)
            return
        self.launch_unless_missing(name, overrides)

    def launch_unless_missing(self, name: str, overrides: list[str]) -> None:
        """Launch, first offering the dependency when it has no successful run."""
        config = self.snap.config
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
        config, runs_dir = self.snap.config, self.snap.runs_dir
        kind = "ablation" if name in config.ablations else "sweep"
        in_background(self, f"cannot launch {name}",
                      lambda: launch_sweep_detached(config, name, overrides, runs_dir),
                      lambda _: self.notify(f"launched {kind} {name}: its runs go one "
                                            "after another"))

    def start(self, name: str, overrides: list[str], with_deps: bool = False) -> None:
        """Launch; the app then follows the run (it tells if the run waits in the queue)."""
        config, runs_dir = self.snap.config, self.snap.runs_dir
        what = f"{name} (after its dependencies)" if with_deps else name

        def launched(result) -> None:
            run_id, _ = result
            self.notify(f"launched {what}: {run_id}")
            self.app.follow(str(runs_dir / name / run_id))
        in_background(self, f"cannot launch {name}", lambda: launch_detached(
            config, name, overrides, runs_dir, with_deps=with_deps), launched)

    def action_launch_with(self) -> None:
        name, config = self.selected(), self.snap.config
        if self.app.active_view is not self or config is None \
                or not name or name.startswith(GROUP):
            return
        settings = settings_of(config, name)

        def got(text: str | None) -> None:
            if text is not None:
                self.launch(text.split())
        self.app.push_screen(AskText(
            f"Launch [b]{name}[/b] with overrides (KEY=VALUE separated by spaces, e.g. "
            "epochs=5 lr=0.05):", lambda text: override_errors(settings, text.split()),
            "epochs=5 lr=0.05"), got)

    def action_dataset_card(self) -> None:
        """The selected experiment's dataset card (a sweep's: its base experiment's)."""
        name, config = self.selected(), self.snap.config
        if self.app.active_view is not self or config is None \
                or not name or name.startswith(GROUP):
            return
        if name.startswith(SWEEP):
            name = config.plan(name[len(SWEEP):]).base
        self.app.push_screen(DatasetCard(str(config.path), name))
