"""A live plot of the loss and metrics for notebooks, redrawn in place every epoch (as
livelossplot draws it); outside a notebook, a tqdm bar over the epochs."""
from __future__ import annotations

import math
import sys
import time

from .. import _checks
from .._figures import history_figure, png_bytes, require_matplotlib
from .callbacks import Callback

_INSTALL = "'bpnn[notebook]'"


def in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel: IPython's shell is the kernel's
    (``ZMQInteractiveShell``), or its configuration names ``IPKernelApp``.

    IPython is looked up in ``sys.modules`` only: a kernel has always imported it, and a
    script that never did is not made to pay for the import."""
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    if get_ipython is None:
        return False
    try:
        shell = get_ipython()
        if shell is None:
            return False
        return type(shell).__name__ == "ZMQInteractiveShell" or "IPKernelApp" in shell.config
    except Exception:  # a half-initialized or foreign shell: not a notebook we can draw in
        return False


class LiveLossPlot(Callback):
    """The curves of the loss and metrics, redrawn in place after every epoch.

    In a Jupyter notebook the first drawing displays the figure (one panel per quantity,
    training and validation together, the History's own figure:
    :func:`bpnn._figures.history_figure`) with a display id, and later ones replace
    that one output (``DisplayHandle.update``), so the cell holds one image however long
    training runs. A redraw waits for ``every`` epochs and ``min_interval`` seconds since
    the last one (a frame costs about a tenth of a second of CPU, far more than an
    epoch of a small model: see ``benchmarks/README.md``); the last epoch is always
    drawn. The figure is a PNG drawn without pyplot: the notebook's matplotlib backend is
    left as it was. Pass ``verbose=False`` to ``fit`` to see the plot without the
    trainer's progress bar.

    Outside a notebook (a script, a terminal) it falls back to a tqdm bar over the
    epochs with the last epoch's logs, unless the trainer already shows its own bar
    (``fit(verbose=True)``, the default): then it does nothing.

    Needs IPython and matplotlib in a notebook (``pip install 'bpnn[notebook]'``); a
    missing one is named when training starts.

    Parameters
    ----------
    panels : list of str, optional — the quantities to draw, one panel each: History keys
        without their ``val_`` / ``test_`` prefix (``"loss"``, ``"accuracy"``, ``"lr"``).
        Default: ``loss``, then every other logged quantity except the trainer's state
        (``lr``, ``penalty``, the Levenberg–Marquardt and K-FAC values).
    every : int, default 1 — redraw at most every ``every`` epochs.
    min_interval : float, default 1.0 — seconds from the end of one redraw to the next at
        least (0: every ``every`` epochs, however short).
    """

    def __init__(self, panels=None, every: int = 1, min_interval: float = 1.0):
        if panels is not None:
            if isinstance(panels, str) or not all(isinstance(p, str) for p in panels):
                raise ValueError(f"panels: got {panels!r}; expected a list of History keys such as "
                                 f"['loss', 'accuracy'], or None for every logged quantity")
            panels = list(panels)
            if not panels:
                raise ValueError("panels: got an empty list; expected at least one History key, or None")
        _checks.positive("every", every, integer=True)
        _checks.in_range("min_interval", min_interval, 0.0, math.inf, high_open=True)
        self.panels = panels
        self.every = int(every)
        self.min_interval = float(min_interval)
        self.mode: str | None = None  # "notebook", "bar", or None (the trainer's own bar shows)
        self._handle = None  # the notebook output the figure is redrawn in
        self._image = None  # IPython.display.Image
        self._display = None  # IPython.display.display
        self._bar = None
        self._logs: dict = {}  # the epochs' logs when no trainer's History is at hand
        self._undrawn = False
        self._drawn_at = None  # time.monotonic() at the end of the last redraw

    def on_train_begin(self, logs=None):
        logs = logs or {}
        self.close()
        self._handle, self._logs, self._undrawn, self._drawn_at = None, {}, False, None
        if in_notebook():
            try:
                from IPython.display import Image, display
            except ImportError as exc:
                raise _checks.missing_dependency("LiveLossPlot", "IPython", _INSTALL, exc) from exc
            require_matplotlib("LiveLossPlot", _INSTALL)
            self._image, self._display = Image, display
            self.mode = "notebook"
        elif logs.get("verbose"):
            self.mode = None
        else:
            from tqdm.auto import tqdm

            trainer = self.trainer
            self._bar = tqdm(total=logs.get("epochs"), initial=getattr(trainer, "initial_epoch", 0) or 0,
                             unit="epoch", desc="training", dynamic_ncols=True)
            self.mode = "bar"

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        for key, value in logs.items():
            self._logs.setdefault(key, []).append(value)
        if self.mode == "notebook":
            self._undrawn = True
            due = self._drawn_at is None or time.monotonic() - self._drawn_at >= self.min_interval
            if (epoch + 1) % self.every == 0 and due:
                self._draw()
        elif self.mode == "bar":
            self._bar.update(1)
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if isinstance(v, (int, float))})

    def on_train_end(self, logs=None):
        if self.mode == "notebook" and self._undrawn:
            self._draw()
        self.close()

    def _draw(self) -> None:
        """Draw the curves so far into the notebook output (the first call displays it,
        later ones replace it)."""
        trainer = self.trainer
        history = trainer.history.history if trainer is not None and trainer.history is not None else self._logs
        fig = history_figure(history, self.panels, feature="LiveLossPlot", install=_INSTALL)
        image = self._image(data=png_bytes(fig), format="png")
        if self._handle is None:
            self._handle = self._display(image, display_id=True)
        else:
            self._handle.update(image)
        self._undrawn = False
        self._drawn_at = time.monotonic()

    def close(self) -> None:
        """Close the fallback bar, if one is open."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __getstate__(self):
        """Copied (for a restart, another process) without the notebook output, IPython's
        functions and the bar."""
        state = super().__getstate__()
        state.update(_handle=None, _image=None, _display=None, _bar=None)
        return state
