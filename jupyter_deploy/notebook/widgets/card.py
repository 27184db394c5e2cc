"""DeploymentCard: a deployment's state, version, replicas and log tail, with its actions.

``DeploymentCard(deployment)`` (what ``display(deployment)`` shows after
``%load_ext jupyter_deploy``) reads everything through the Deployment object, and
follows it: the control plane's Watch stream pushes each change of the deployment and
its replicas, and the card reads its status again (one stream per client and user, for
all its cards), until the deployment is deleted, which the card then shows::

    card = deployment_card(Deployment("echo"), live=True)
    card.refresh().summary()
"""

from __future__ import annotations

import html
import threading
import time
import weakref
from typing import Any

import ipywidgets as w

from ._shared import ERROR_COLOR, SummaryRepr, colored, one_line

_STATE_COLORS = {"RUNNING": "#2e7d32", "IDLE": "#1565c0", "FAILED": ERROR_COLOR,
                 "STOPPED": "#616161", "DELETED": "#616161"}


def _badge(state: str) -> str:
    color = _STATE_COLORS.get(state, "#ef6c00")
    return (f"<span style='background:{color};color:white;border-radius:4px;padding:1px 6px;"
            f"font-size:smaller;font-weight:bold'>{html.escape(state)}</span>")


class DeploymentCard(SummaryRepr, w.VBox):
    """A deployment's state, version, replicas, nodepool, endpoint and log tail, with actions.

    Buttons call the Deployment's ``start()``, ``stop()`` and ``delete()``
    (Delete asks for a second click), Refresh (and ``refresh()``) reads its
    status and log tail again; "Live" refreshes every ``interval`` seconds
    from a background thread (widget updates are not tied to a cell).
    """

    def __init__(self, deployment: Any, *, log_lines: int = 50, interval: float = 2.0,
                 live: bool = False, confirm_seconds: float = 10.0, follow: bool = True):
        self.deployment = deployment
        self.log_lines = log_lines
        self.interval = interval
        self.confirm_seconds = confirm_seconds
        self.deployment_status: dict = {}
        self.metrics: dict = {}  # Deployment.metrics(): requests, errors, latency, in flight, queue
        self.log_tail: list[str] = []
        self.endpoints: dict = {}  # Deployment.describe()["endpoints"]: its URLs on the HTTP gateway
        self.deleted = False
        self._delete_armed_at: float | None = None
        self._stop_live = threading.Event()
        self._live_thread: threading.Thread | None = None
        self._lock = threading.Lock()

        self.title_html = w.HTML()
        self.details_html = w.HTML()
        self.metrics_html = w.HTML()
        self.endpoint_html = w.HTML()
        self.message_html = w.HTML()
        self.start_button = w.Button(description="Start", icon="play",
                                     tooltip="start the deployment")
        self.stop_button = w.Button(description="Stop", icon="stop", tooltip="stop its replicas")
        self.delete_button = w.Button(description="Delete", icon="trash", button_style="danger",
                                      tooltip="delete the deployment (click twice)")
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.live_toggle = w.ToggleButton(value=False, description="Live", icon="eye",
                                          tooltip=f"refresh every {interval:g} s")
        self.log_area = w.Textarea(value="", disabled=True, placeholder="(no log lines yet)",
                                   layout=w.Layout(width="100%", height="12em"))
        self.start_button.on_click(lambda _b: self.start())
        self.stop_button.on_click(lambda _b: self.stop())
        self.delete_button.on_click(lambda _b: self._delete_clicked())
        self.refresh_button.on_click(lambda _b: self._refresh_clicked())
        self.live_toggle.observe(self._live_changed, names="value")
        buttons = w.HBox([self.start_button, self.stop_button, self.delete_button,
                          self.refresh_button, self.live_toggle])
        super().__init__([self.title_html, self.details_html, self.metrics_html, self.endpoint_html,
                          buttons, self.message_html, self.log_area],
                         layout=w.Layout(border="1px solid #ccc", padding="6px"))
        self.refresh()
        if live:
            self.live_toggle.value = True
        #: Whether pushed changes reach the card (False: no stream to follow; Refresh and Live still work).
        self.following = follow and not self.deleted and _follow(self)

    # ---------------------------------------------------- reading

    @property
    def state(self) -> str:
        if self.deleted:
            return "DELETED"
        return str(self.deployment_status.get("state") or "UNKNOWN")

    def _where(self) -> str:
        cluster = nodepool = ""
        try:
            resource = getattr(self.deployment, "resource", None)
            cluster = getattr(resource, "compute_cluster_id", "") or ""
            nodepool = getattr(resource, "nodepool_id", "") or ""
        except Exception:  # noqa: BLE001, S110 - the card shows what it can
            pass
        cluster = cluster or getattr(self.deployment, "compute_cluster_id", "") or ""
        nodepool = nodepool or getattr(self.deployment, "nodepool_id", "") or \
            self.deployment_status.get("nodepool", "")
        return f"{cluster}/{nodepool}" if cluster and nodepool else (nodepool or cluster or "?")

    def _replicas(self) -> list[dict]:
        return [r for r in self.deployment_status.get("replicas") or [] if isinstance(r, dict)]

    def summary(self) -> str:
        s = self.deployment_status
        replicas = self._replicas()
        ready = sum(1 for r in replicas if r.get("state") == "READY")
        version = s.get("version_number")
        text = (f"Deployment {getattr(self.deployment, 'id', '?')}: {self.state} · "
                f"version {version if version is not None else '?'} · "
                f"replicas {ready}/{len(replicas)} ready · nodepool {self._where()}")
        if s.get("model"):
            text += f" · model {s['model']}"
        if s.get("reason"):
            text += f" · {s['reason']}"
        scaling = _scaling_text(s)
        if scaling:
            text += f" · {scaling}"
        if self.metrics:
            text += f" · {_metrics_text(self.metrics)}"
        return text

    def refresh(self) -> DeploymentCard:
        """Read the status and the log tail again (errors show on the card, not raised)."""
        with self._lock:
            message = ""
            if not self.deleted:
                try:
                    self.deployment_status = dict(self.deployment.status or {})
                except Exception as e:  # noqa: BLE001 - a card must not raise from a click
                    if getattr(e, "code", "") == "NOT_FOUND":  # deleted while nobody told the card
                        self._deleted_now()
                    else:
                        message = f"could not read the status: {one_line(e)}"
                else:
                    try:
                        self.log_tail = list(self.deployment.logs(self.log_lines))
                    except Exception as e:  # noqa: BLE001
                        message = f"could not read the logs: {one_line(e)}"
                    describe = getattr(self.deployment, "describe", None)
                    version = self.deployment_status.get("version_id")
                    if callable(describe) and version and self.endpoints.get("_version") != version:
                        try:  # once per version: the URLs change only with the methods
                            self.endpoints = {**(describe().get("endpoints") or {}), "_version": version}
                        except Exception:  # noqa: BLE001, S110 - the endpoints are a courtesy
                            pass
                    read_metrics = getattr(self.deployment, "metrics", None)
                    if callable(read_metrics):
                        try:
                            self.metrics = dict(read_metrics() or {})
                        except Exception as e:  # noqa: BLE001
                            message = message or f"could not read the metrics: {one_line(e)}"
            self._render(message)
        return self

    def _render(self, message: str = "") -> None:
        s = self.deployment_status
        replicas = self._replicas()
        with self.hold_sync():
            name = html.escape(str(getattr(self.deployment, "id", "?")))
            self.title_html.value = f"<b>{name}</b> {_badge(self.state)}"
            ready = sum(1 for r in replicas if r.get("state") == "READY")
            version = s.get("version_number")
            version_text = html.escape(str(version if version is not None else "?"))
            details = [f"version <b>{version_text}</b>",
                       f"replicas <b>{ready}/{len(replicas)}</b> ready",
                       f"nodepool <code>{html.escape(self._where())}</code>"]
            if _scaling_text(s):
                details.append(html.escape(_scaling_text(s)))
            if s.get("model"):
                details.append(f"model <code>{html.escape(str(s['model']))}</code>")
            reason = f"<br/><i>{html.escape(str(s['reason']))}</i>" if s.get("reason") else ""
            self.details_html.value = " · ".join(details) + reason
            self.metrics_html.value = (html.escape(_metrics_text(self.metrics)) if self.metrics
                                       else "")
            addresses = [str(r["address"]) for r in replicas if r.get("address")]
            self.endpoint_html.value = ("endpoint " + ", ".join(
                f"<code>{html.escape(a)}</code>" for a in addresses)
            ) if addresses else "endpoint: none"
            if self.endpoints.get("curl"):
                rest = next(iter(self.endpoints.get("rest", {}).values()), "")
                self.endpoint_html.value += (
                    f" · HTTP <code>{html.escape(rest)}</code><details><summary>curl</summary>"
                    f"<pre style='white-space: pre-wrap'>{html.escape(self.endpoints['curl'])}</pre></details>")
            self.log_area.value = "\n".join(self.log_tail)
            if message:
                self.message_html.value = colored(message)
            disabled = self.deleted
            self.start_button.disabled = disabled
            self.stop_button.disabled = disabled
            self.delete_button.disabled = disabled

    def _say(self, text: str, error: bool = False) -> None:
        self.message_html.value = colored(text, ERROR_COLOR if error else "inherit")

    # ---------------------------------------------------- actions

    def _act(self, name: str) -> bool:
        self._disarm_delete()
        try:
            getattr(self.deployment, name)()
        except Exception as e:  # noqa: BLE001 - shown on the card
            self._say(f"{name} failed: {one_line(e)}", error=True)
            return False
        self._say(f"{name}: done")
        return True

    def start(self) -> DeploymentCard:
        if self._act("start"):
            self.refresh()
        return self

    def stop(self) -> DeploymentCard:
        if self._act("stop"):
            self.refresh()
        return self

    def delete(self) -> DeploymentCard:
        """Delete the deployment now (the button asks for a second click first)."""
        if self._act("delete"):
            with self._lock:
                self._deleted_now()
                self._render()
        return self

    def _deleted_now(self) -> None:
        self.deleted = True
        self._stop_live.set()
        self.message_html.value = colored(f"deployment {getattr(self.deployment, 'id', '')} was deleted")

    def _pushed(self, deleted: bool) -> None:
        """The control plane said the deployment (or one of its replicas) changed, or is gone."""
        if self.deleted:
            return
        if deleted:
            with self._lock:
                self._deleted_now()
                self._render()
            if self.live_toggle.value:
                self.live_toggle.value = False
            return
        self.refresh()

    def _refresh_clicked(self) -> None:
        self._disarm_delete()
        self.refresh()

    def _delete_clicked(self) -> None:
        now = time.monotonic()
        armed = self._delete_armed_at
        if armed is not None and now - armed <= self.confirm_seconds:
            self.delete()
            return
        self._delete_armed_at = now
        self.delete_button.description = "Confirm delete"
        self._say(f"click Delete again within {self.confirm_seconds:g} s to delete "
                  f"{getattr(self.deployment, 'id', 'the deployment')}")

    def _disarm_delete(self) -> None:
        self._delete_armed_at = None
        self.delete_button.description = "Delete"

    @property
    def delete_armed(self) -> bool:
        return self._delete_armed_at is not None

    # ---------------------------------------------------- live tail

    def _live_changed(self, change: dict) -> None:
        if change["new"]:
            self.start_live()
        else:
            self.stop_live()

    def start_live(self, interval: float | None = None) -> None:
        """Refresh every ``interval`` seconds from a background thread until ``stop_live()``."""
        if interval is not None:
            self.interval = interval
        if self._live_thread is not None and self._live_thread.is_alive():
            return
        self._stop_live.clear()

        def loop() -> None:
            while not self._stop_live.wait(self.interval):
                if self.deleted:
                    break
                self.refresh()

        self._live_thread = threading.Thread(target=loop, name="jupyter_deploy card", daemon=True)
        self._live_thread.start()
        if not self.live_toggle.value:
            self.live_toggle.value = True

    def stop_live(self) -> None:
        self._stop_live.set()
        thread, self._live_thread = self._live_thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(1.0, self.interval))
        if self.live_toggle.value:
            self.live_toggle.value = False

    def close(self) -> None:
        self.stop_live()
        super().close()



class _Follower:
    """One Watch stream of a client, for one user's deployments, that every card of theirs follows.

    Changes are coalesced (a rollout sends a burst): each card whose deployment changed reads
    its status again at most every ``COALESCE`` seconds. The stream is taken again in chunks of
    ``CHUNK`` seconds (and after the daemon restarted); it ends once no card is left.
    """

    CHUNK = 300.0
    COALESCE = 0.1
    RETRY = 2.0

    def __init__(self, client: Any, user_id: str | None):
        self.client, self.user_id = client, user_id
        self.cards: weakref.WeakSet = weakref.WeakSet()
        self._pending: dict[str, bool] = {}  # deployment id -> deleted
        self._everything = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.alive = True

    def start(self) -> None:
        threading.Thread(target=self._watch, name="jupyter_deploy cards", daemon=True).start()
        threading.Thread(target=self._refresh, name="jupyter_deploy card refresh", daemon=True).start()

    def _any_card(self) -> bool:
        with _FOLLOWERS_LOCK:  # a card _follow() adds meanwhile either keeps this one or makes another
            self.alive = bool(self.cards)
            return self.alive

    def _note(self, deployment_id: str | None, deleted: bool = False) -> None:
        with self._lock:
            if deployment_id is None:
                self._everything = True
            else:
                self._pending[deployment_id] = self._pending.get(deployment_id, False) or deleted
        self._wake.set()

    def _watch(self) -> None:
        from ...errors import ControlPlaneError

        while self._any_card():
            try:
                for event in self.client.watch(["deployment", "replica"], None, user_id=self.user_id,
                                               timeout=self.CHUNK):
                    if event.kind == "synced":  # a new stream: what changed before it is unknown
                        self._note(None)
                    elif not event.initial:
                        self._note(event.deployment_id, event.kind == "deployment" and event.state == "DELETED")
                    if not self.cards:
                        break
            except ControlPlaneError:
                time.sleep(self.RETRY)  # refused (too many watchers) or the daemon is away: again soon
            except Exception:  # noqa: BLE001 - the client was closed: nothing more will come
                with _FOLLOWERS_LOCK:
                    self.alive = False
                break
        self._wake.set()

    def _refresh(self) -> None:
        while self.alive:
            self._wake.wait()
            time.sleep(self.COALESCE)
            self._wake.clear()
            with self._lock:
                pending, self._pending = self._pending, {}
                everything, self._everything = self._everything, False
            for card in list(self.cards):
                deployment_id = getattr(card.deployment, "id", None)
                if everything or deployment_id in pending:
                    try:
                        card._pushed(pending.get(deployment_id, False))
                    except Exception:  # noqa: BLE001, S110 - one card must not stop the others
                        pass


_FOLLOWERS: "weakref.WeakKeyDictionary[Any, dict[str | None, _Follower]]" = weakref.WeakKeyDictionary()
_FOLLOWERS_LOCK = threading.Lock()


def _follow(card: DeploymentCard) -> bool:
    """Have ``card`` follow its deployment's pushed changes; False where its client cannot watch."""
    try:
        client = card.deployment.client
    except Exception:  # noqa: BLE001 - no daemon to reach: the card shows what it read
        return False
    if not callable(getattr(client, "watch", None)):
        return False
    user_id = getattr(card.deployment, "user_id", None)
    with _FOLLOWERS_LOCK:
        try:
            followers = _FOLLOWERS.setdefault(client, {})
        except TypeError:  # not weakly referable
            return False
        follower = followers.get(user_id)
        fresh = follower is None or not follower.alive
        if fresh:
            follower = followers[user_id] = _Follower(client, user_id)
        follower.cards.add(card)
    if fresh:
        follower.start()
    return True


def _scaling_text(status: dict) -> str:
    """The autoscaler's part of a status: wanted replicas, and the latest cold start from IDLE."""
    scale = status.get("autoscale") or {}
    parts = []
    stopped = status.get("state") in ("STOPPED", "STOPPING", "FAILED")
    if scale.get("wanted") is not None and not stopped:
        parts.append(f"autoscaler wants {scale['wanted']}")
    if scale.get("last_cold_start_seconds") is not None:
        parts.append(f"last cold start from IDLE {scale['last_cold_start_seconds']:.2f} s")
    return ", ".join(parts)


def _metrics_text(m: dict) -> str:
    """``Deployment.metrics()`` on one line: requests, errors, latencies, in flight, queue."""
    def ms(value: Any) -> str:
        return "-" if value is None else f"{value:.3g} ms"

    errors = m.get("errors", 0)
    return (f"{m.get('requests', 0)} requests ({m.get('requests_last_minute', 0)} in the last "
            f"minute), {errors} error{'s' if errors != 1 else ''} · p50 {ms(m.get('p50_ms'))}, "
            f"p99 {ms(m.get('p99_ms'))} · "
            f"{m.get('in_flight', 0)} in flight, queue {m.get('queue_depth', 0)}")


def deployment_card(deployment: Any, **kwargs: Any) -> Any:
    """A :class:`DeploymentCard` for ``deployment`` (what ``display(deployment)`` shows)."""
    return DeploymentCard(deployment, **kwargs)
