"""The live view of a sweep, as a user sees it: real tiny sweeps in a real terminal (tmux, read
back with capture-pane), interrupted with Ctrl-C, and through a pipe (one line per epoch)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import MPL_CONFIG_DIR, run_cli

HEADS = ["head=gmp", "head=gap", "head=flatten"]
# Like conftest.TINY, but without trainer.enable_progress_bar=false: a multirun turns the
# jobs' own bars off by itself.
TINY_LIVE = ["data.val_size=128", "data.batch_size=64", "trainer.num_threads=1"]
LIVE_HEADER = re.compile(r"job\s+config\s+status\s+epoch\s+val acc\s+best\s+s/epoch")

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None,
                                reason="tmux is not installed (apt-get install -y tmux)")


class Terminal:
    """A tmux pane (160x50 unless told) on a server of its own (never the user's server)."""

    def __init__(self, cwd: Path, size: tuple[int, int] = (160, 50)) -> None:
        self.cwd = cwd
        self.size = size
        self.tmux = ["tmux", "-L", f"mnist_sweep_test_{os.getpid()}_{time.monotonic_ns()}",
                     "-f", os.devnull]

    def __call__(self, *args: str) -> str:
        return subprocess.run([*self.tmux, *args], capture_output=True, text=True,
                              check=True, timeout=30).stdout

    def start(self, args: list[str], module: str = "mnist_sweep") -> None:
        """Run `python -m MODULE ARGS` in the pane; `SWEEP-EXIT=<code>` shows when it ends."""
        env = {"XDG_CACHE_HOME": str(self.cwd / ".cache"), "MPLCONFIGDIR": MPL_CONFIG_DIR,
               "HYDRA_FULL_ERROR": "", "TERM": "xterm-256color"}
        command = " ".join(
            ["cd", shlex.quote(str(self.cwd)), "&&", "env", "-u", "MNIST_SWEEP_DATA",
             "-u", "COLUMNS", "-u", "LINES",  # the pane's own size, not the caller's
             *(f"{k}={shlex.quote(v)}" for k, v in env.items()),
             shlex.quote(sys.executable), "-m", module, *map(shlex.quote, args),
             ";", "echo", "SWEEP-EXIT=$?;", "sleep", "600"])
        self("new-session", "-d", "-s", "live", "-x", str(self.size[0]), "-y", str(self.size[1]),
             command)

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "live")

    def history(self) -> str:
        return self("capture-pane", "-p", "-t", "live", "-S", "-")

    def wait_for(self, pattern: str, timeout: float = 240) -> tuple[str, list[str]]:
        """Poll the screen until `pattern` shows; return the history and every screen seen."""
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen.append(self.screen())
            if re.search(pattern, seen[-1]):
                return self.history(), seen
            time.sleep(0.25)
        raise AssertionError(f"{pattern!r} never appeared; the screen:\n{self.history()}")

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True, timeout=30)


@pytest.fixture
def terminal(tmp_path: Path):
    term = Terminal(tmp_path)
    yield term
    term.close()


def live_tables(text: str) -> list[list[str]]:
    """Each drawing of the live table in a screen's text, as its lines (header to caption)."""
    tables = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if LIVE_HEADER.search(line):
            block = []
            for row in lines[i + 2:]:
                block.append(row)
                if " jobs finished" in row:
                    break
            tables.append(block)
    return tables


def row_of(table: list[str], label: str) -> list[str]:
    rows = [line.split() for line in table if re.search(rf"\s{re.escape(label)}\s", line)]
    assert len(rows) == 1, (label, table)
    return rows[0]


@needs_tmux
@pytest.mark.parametrize(("launcher", "size"), [
    ([], (160, 50)),
    # joblib's workers share the terminal; 150x30 is where their writes (Lightning warns
    # about `srun` wherever Slurm is installed, as in CI) left stale tables above the last
    (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], (150, 30))],
    ids=["basic", "joblib-150x30"])
def test_live_view_in_a_terminal(terminal: Terminal, tiny_root: Path,
                                 launcher: list[str], size: tuple[int, int]) -> None:
    terminal.size = size
    sweep_dir = terminal.cwd / "sweep"
    terminal.start(["head=gmp,gap,flatten", "-m", *launcher, *TINY_LIVE,
                    "trainer.max_epochs=3", f"data.root={tiny_root}",
                    f"hydra.sweep.dir={sweep_dir}"])
    history, screens = terminal.wait_for(r"SWEEP-EXIT=\d+")
    assert "SWEEP-EXIT=0" in history, "\n".join(
        [history[-3000:], *(f"{s.parent.name}: {s.read_text()[-600:]}"
                            for s in sweep_dir.glob("*/status.json"))])
    # while it ran, the screen showed the table with a job running and others waiting
    during = [t for s in screens for t in live_tables(s) if any(" running " in r for r in t)]
    assert during, "the live view never showed a running job:\n" + "\n".join(screens[-3:])
    assert any(" waiting " in row for table in during for row in table)
    # the last drawing: every job of the sweep, finished, 3 of 3 epochs, with accuracies
    final = live_tables(history)[-1]
    for head in HEADS:
        row = row_of(final, head)
        assert row[2:4] == ["finished", "3/3"], row
        assert 0.0 <= float(row[4]) <= float(row[5]) <= 1.0 and float(row[6]) > 0
    assert "3 of 3 jobs finished, 0 running" in final[-1]
    assert re.search(r"\d:\d\d:\d\d elapsed, about 0:00:00 left", final[-1])
    # the live table replaced the jobs' progress bars; the report follows it
    assert not re.search(r"Epoch \d+/\d+", history) and "it/s" not in history
    assert history.index(final[-1]) < history.index("Report of ")
    # redrawn in place: one table left on the screen, then the report's, nothing torn
    # (jobs in joblib's worker processes write to the same terminal)
    assert len(live_tables(history)) == 1, history
    assert terminal("display", "-p", "-t", "live", "#{cursor_flag}").strip() == "1"


@needs_tmux
def test_ctrl_c_stops_the_live_view_cleanly(terminal: Terminal, tiny_root: Path) -> None:
    sweep_dir = terminal.cwd / "sweep"
    terminal.start(["head=gmp,gap", "-m", *TINY_LIVE, "trainer.max_epochs=200",
                    f"data.root={tiny_root}", f"hydra.sweep.dir={sweep_dir}"])
    terminal.wait_for(r"running\s+[1-9]\d*/200")
    terminal("send-keys", "-t", "live", "C-c")
    history, _ = terminal.wait_for(r"SWEEP-EXIT=\d+", timeout=60)
    assert "SWEEP-EXIT=130" in history, history
    assert live_tables(history), history
    final = live_tables(history)[-1]
    gmp, gap = row_of(final, "head=gmp"), row_of(final, "head=gap")
    assert gmp[2] == "interrupted" and re.fullmatch(r"[1-9]\d*/200", gmp[3]), gmp
    assert gap[2] == "waiting", gap
    assert "0 of 2 jobs finished, 1 interrupted, 0 running" in final[-1]
    assert "Traceback" not in history
    assert terminal("display", "-p", "-t", "live", "#{cursor_flag}").strip() == "1"


def test_live_view_through_a_pipe_prints_a_line_per_epoch(tmp_path: Path,
                                                          tiny_root: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    proc = run_cli(["head=gmp,gap", "-m", *TINY_LIVE, "trainer.max_epochs=3",
                    f"data.root={tiny_root}", f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = re.findall(r"^\[job (\d) of 2\] (head=\w+): epoch (\d)/3, val acc (\S+), "
                       r"best (\S+), (\S+) s/epoch \| sweep: (\d) of 2 jobs finished",
                       proc.stdout, flags=re.MULTILINE)
    for num, head in (("1", "head=gmp"), ("2", "head=gap")):
        epochs = [int(e) for n, h, e, *_ in lines if (n, h) == (num, head)]
        assert epochs and epochs == sorted(set(epochs)) and epochs[-1] == 3, proc.stdout
    assert all(0.0 <= float(val) <= float(best) <= 1.0 for *_, val, best, _, _ in lines)
    # plain lines only: no cursor movement or redrawn tables in a log
    assert "\x1b[" not in proc.stdout and not LIVE_HEADER.search(proc.stdout)


# ---- mnist-sweep watch: the same view from another process ---------------------------------

@needs_tmux
def test_watch_attaches_to_a_running_sweep_in_a_terminal_and_through_a_pipe(
        terminal: Terminal, tiny_root: Path) -> None:
    sweep_dir = terminal.cwd / "sweep"
    env = {**os.environ, "XDG_CACHE_HOME": str(terminal.cwd / ".cache"),
           "MPLCONFIGDIR": MPL_CONFIG_DIR, "HYDRA_FULL_ERROR": ""}
    env.pop("MNIST_SWEEP_DATA", None)
    # the sweep runs on its own, its output to a file (as if its terminal were gone)
    with open(terminal.cwd / "sweep.out", "w") as out:
        sweep = subprocess.Popen(
            [sys.executable, "-m", "mnist_sweep", "head=gmp,gap", "-m", *TINY_LIVE,
             "trainer.max_epochs=4", f"data.root={tiny_root}", f"hydra.sweep.dir={sweep_dir}"],
            cwd=terminal.cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    piped = None
    try:
        deadline = time.monotonic() + 120
        while not (sweep_dir / "multirun.yaml").is_file():
            assert time.monotonic() < deadline and sweep.poll() is None, (
                terminal.cwd / "sweep.out").read_text()[-3000:]
            time.sleep(0.2)
        # two watchers while it runs: one in a 150x30 terminal, one through a pipe
        terminal.size = (150, 30)
        terminal.start([str(sweep_dir), "--interval", "0.5"], module="mnist_sweep.watch")
        piped = subprocess.Popen([sys.executable, "-m", "mnist_sweep", "watch", str(sweep_dir),
                                  "--interval", "0.5"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env)
        history, screens = terminal.wait_for(r"SWEEP-EXIT=\d+", timeout=120)
        piped_out, piped_err = piped.communicate(timeout=120)
        assert sweep.wait(timeout=120) == 0, (terminal.cwd / "sweep.out").read_text()[-3000:]
    finally:
        for proc in (sweep, piped):
            if proc is not None and proc.poll() is None:
                proc.kill()
    # the terminal: the table while jobs ran, one table left at the end, all finished
    assert "SWEEP-EXIT=0" in history, history[-3000:]
    during = [t for s in screens for t in live_tables(s) if any(" running " in r for r in t)]
    assert during, "the watch never showed a running job:\n" + "\n".join(screens[-3:])
    assert len(live_tables(history)) == 1, history
    final = live_tables(history)[-1]
    for head in ("head=gmp", "head=gap"):
        row = row_of(final, head)
        assert row[2:4] == ["finished", "4/4"], row
    assert "2 of 2 jobs finished, 0 running" in final[-1]
    assert terminal("display", "-p", "-t", "live", "#{cursor_flag}").strip() == "1"
    # the pipe: plain lines, one per epoch it saw, then the sweep's end
    assert piped.returncode == 0, piped_out[-3000:] + piped_err[-3000:]
    assert "\x1b[" not in piped_out and not LIVE_HEADER.search(piped_out)
    assert re.search(r"^\[job 2 of 2\] head=gap: epoch 4/4, ", piped_out, re.MULTILINE), (
        piped_out)
    assert re.fullmatch(rf"Sweep {re.escape(str(sweep_dir))}: 2 of 2 jobs finished, 0 running; "
                        r"\d:\d\d:\d\d elapsed, about 0:00:00 left",
                        piped_out.rstrip().splitlines()[-1]), piped_out


def test_watch_refuses_a_folder_that_is_not_a_sweep(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for folder, message in ((tmp_path / "empty",
                             "holds no multirun.yaml and no job folder: not a sweep folder"),
                            (tmp_path / "absent", "is not a folder")):
        proc = subprocess.run([sys.executable, "-m", "mnist_sweep.watch", str(folder)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
