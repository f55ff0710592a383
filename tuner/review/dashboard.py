"""optuna-dashboard over the project database, and the figures each study carries there.

optuna-dashboard 0.21 reads a trial's constraints only from the list-form system attribute
"constraints"; Optuna 5's `trial.set_constraint` stores one "constraints:NAME" attribute
per constraint, so the dashboard would show every trial feasible and call the most
accurate (infeasible) trial the best. `DashboardStorage` adds the list form when reading
and picks the best trial among feasible ones; the database is not changed.

The dashboard is read-only unless `--allow-writes`: optuna-dashboard serves routes that
delete, rename and create studies and tell trials (DELETE /api/studies/N deleted a study
with no check). `ReadOnlyApp` answers every request but GET/HEAD/OPTIONS with 403, and
`ReadOnlyDashboardStorage` refuses every write behind it, a second lock for a route
that would write on a GET.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import logging
import math
import time
from collections.abc import Callable, Iterable

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from storage import UserInputError
from tuner.core.study import StudySettings
from tuner.core.trials import best_trial_number
from tuner.review.study_review import (
    StudyReview,
    review_from_trials,
    study_figures,
    winner_note,
)

logger = logging.getLogger(__name__)

CONSTRAINTS_PREFIX = "constraints:"
# optuna-dashboard 0.21's study system attributes for figures and the study note.
PLOT_DATA_PREFIX = "dashboard:plot_data:"
NOTE_VERSION_KEY = "dashboard:note_ver"
NOTE_PREFIX = "dashboard:note_str:"
ATTR_MAX_CHARS = 2045
LOOPBACK_HOST = "127.0.0.1"


class DashboardStorage(RDBStorage):
    """RDBStorage whose trials also carry the list-form "constraints" the dashboard reads."""

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return _with_constraint_list(super().get_trial(trial_id))

    def get_all_trials(self, study_id, deepcopy=True, states=None) -> list[FrozenTrial]:
        trials = super().get_all_trials(study_id, deepcopy=deepcopy, states=states)
        return [_with_constraint_list(trial) for trial in trials]

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        """The best feasible trial by the rank rule of `latts-tune run` (Optuna's own
        ignores constraints)."""
        complete = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,))
        number = best_trial_number(complete)
        if number is None:
            return super().get_best_trial(study_id)
        return next(trial for trial in complete if trial.number == number)


class DashboardWriteRefused(UserInputError):
    """A write through the read-only dashboard (its message says how to allow writes)."""


READ_ONLY_REASON = ("the dashboard is read-only; restart it with `latts-tune dashboard "
                    "--allow-writes` to edit studies")
# BaseStorage's and RDBStorage's methods that change the database.
STORAGE_WRITES = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "create_new_trial", "set_trial_param", "set_trial_state_values",
    "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
    "record_heartbeat", "upgrade",
)


class ReadOnlyDashboardStorage(DashboardStorage):
    """DashboardStorage whose write methods (`STORAGE_WRITES`) raise DashboardWriteRefused."""


def _refuse_write(name: str) -> Callable:
    def refused(self, *args, **kwargs):
        raise DashboardWriteRefused(f"{name}: {READ_ONLY_REASON}")

    refused.__name__ = name
    return refused


for _write in STORAGE_WRITES:  # one refusing method per write, so no write is forgotten
    setattr(ReadOnlyDashboardStorage, _write, _refuse_write(_write))

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ReadOnlyApp:
    """WSGI middleware: 403 with a JSON reason (which the dashboard shows) for any request
    whose method can write."""

    def __init__(self, app: Callable) -> None:
        self._app = app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() in READ_METHODS:
            return self._app(environ, start_response)
        body = json.dumps({"reason": READ_ONLY_REASON}).encode()
        start_response("403 Forbidden", [("Content-Type", "application/json"),
                                         ("Content-Length", str(len(body)))])
        return [body]


def dashboard_app(storage_url: str, allow_writes: bool = False) -> Callable:
    """optuna-dashboard's WSGI app over the project database, read-only unless
    `allow_writes`."""
    from optuna_dashboard import wsgi

    if allow_writes:
        return wsgi(DashboardStorage(storage_url))
    return ReadOnlyApp(wsgi(ReadOnlyDashboardStorage(storage_url)))


def _with_constraint_list(trial: FrozenTrial) -> FrozenTrial:
    attrs = trial.system_attrs
    if "constraints" in attrs:
        return trial
    names = sorted(key for key in attrs if key.startswith(CONSTRAINTS_PREFIX))
    if not names:
        return trial
    patched = copy.copy(trial)
    patched._system_attrs = {**attrs, "constraints": [attrs[name] for name in names]}
    return patched


def check_host(host: str | None, env_host: str | None) -> str:
    """The address to bind: 127.0.0.1 unless `host` (an explicit --host) says otherwise.

    A host from the environment must be loopback: binding every interface needs --host.
    Example: check_host(None, "0.0.0.0") raises UserInputError.
    """
    if host is not None:
        return host
    if env_host is None or is_loopback(env_host):
        return env_host or LOOPBACK_HOST
    raise UserInputError(
        f"LATTS_TUNE_DASHBOARD_HOST={env_host} is not a loopback address; the dashboard binds "
        "other interfaces only with an explicit --host"
    )


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IPv4/IPv6 addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(storage_url: str, host: str, port: int, allow_writes: bool = False) -> None:
    """Run optuna-dashboard on the project database until interrupted (blocks); read-only
    unless `allow_writes`."""
    import bottle

    try:
        bottle.run(dashboard_app(storage_url, allow_writes), host=host, port=port)
    except OSError as error:  # raised by the bind: port taken, address not ours
        raise UserInputError(f"cannot listen on {host}:{port}: {error.strerror}; "
                             "pick another --port or --host") from None
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the normal way to stop a server
        return


def save_study_figures(study: optuna.Study, settings: StudySettings,
                       trials: list[FrozenTrial]) -> None:
    """Save figures and the winner note into a finished study (a `run_study` on_finish)."""
    start_s = time.perf_counter()
    save_figures(study, review_from_trials(study.study_name, "", settings, trials))
    logger.info("dashboard figures of %s saved in %.3f s", study.study_name,
                time.perf_counter() - start_s)


def save_figures(study: optuna.Study, review: StudyReview) -> None:
    """The dashboard's figures (fixed ids, so a rerun replaces them) and the winner note.

    Writes the study system attributes `optuna_dashboard.save_plotly_graph_object` and
    `save_note` write (a test compares them) without importing optuna_dashboard, whose
    import pulls in scikit-learn's ensembles and took 0.7 s of `latts-tune run`.
    """
    storage, study_id = study._storage, study._study_id
    current = storage.get_study_system_attrs(study_id)
    attrs: dict[str, str | int] = {}
    for graph_id, figure in study_figures(review).items():
        prefix = f"{PLOT_DATA_PREFIX}{graph_id}:"
        attrs.update(_chunks(figure.to_json(), prefix, current))
    attrs[NOTE_VERSION_KEY] = int(current.get(NOTE_VERSION_KEY, 0)) + 1
    attrs.update(_chunks(winner_note(review), NOTE_PREFIX, current))
    for key, value in attrs.items():
        storage.set_study_system_attr(study_id, key, value)


def _chunks(text: str, prefix: str, current: dict) -> dict[str, str]:
    """`text` split into numbered attributes; stale chunks of a longer old text emptied."""
    count = math.ceil(len(text) / ATTR_MAX_CHARS)
    chunks = {f"{prefix}{i}": text[i * ATTR_MAX_CHARS:(i + 1) * ATTR_MAX_CHARS]
              for i in range(count)}
    stale = sum(1 for key in current if key.startswith(prefix))
    chunks.update({f"{prefix}{i}": "" for i in range(count, stale)})
    return chunks
