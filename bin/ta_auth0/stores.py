"""Which state store an input uses (`state_store`), opened for one run.

- `local`: the sqlite file in splunkd's checkpoint_dir (state.StateStore).
- `kvstore`: Splunk's KV store (kvstate.KVStateStore), shared by the members
  of a search head cluster, behind a lease (lease.Lease) so that one member
  collects; the access token stays in the local file (0600), never in the
  KV store.
- `auto`: `kvstore` where `server/info` says this instance is a search head
  cluster member (`server_roles` has `shc_member`) or Splunk Cloud
  (`instance_type = cloud`), else `local`.

A KV store that is not ready stops the run: falling back to a local file
would fork the state between members.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Optional
from urllib.parse import urlsplit

from .auth0_api import TOKEN_RENEW_MARGIN, MemoryTokenCache, TokenCache
from .config import STATE_AUTO, STATE_KVSTORE, STATE_LOCAL, InputConfig
from .state import StateBackend, StateError, StateStore, state_id, state_path

# splunklib (and the KV store modules built on it) are imported only where a
# run talks to splunkd: a local run with nothing to ask splunkd never pays
# for them, which is most of an idle run's start-up.


@dataclass
class OpenedState:
    """What a run gets: the state, where its token is cached, and the
    heartbeat the collector calls before each page (the lease's renewal)."""

    state: StateBackend
    token_cache: TokenCache
    backend: str
    heartbeat: Optional[Callable[[], None]] = None


def splunk_service(metadata: Mapping[str, Optional[str]], handler=None):
    """splunklib's Service in the app's namespace, with splunkd's session key."""
    from . import splunkrest

    if not urlsplit(metadata.get("server_uri") or "").hostname or not metadata.get("session_key"):
        raise StateError("splunkd did not pass server_uri and session_key: cannot reach the KV store or server/info")
    return splunkrest.service(metadata.get("server_uri") or "", metadata.get("session_key") or "", handler)


def server_info(service, why: str) -> Mapping[str, object]:
    from splunklib import binding

    from .kvstate import describe_http_error

    try:
        return service.info
    except (binding.HTTPError, OSError) as exc:
        raise StateError(f"cannot read splunkd's server/info {why}: {describe_http_error(exc)}") from None


def wants_kvstore(info: Mapping[str, object]) -> bool:
    """auto: a search head cluster member or Splunk Cloud keeps its state in the KV store."""
    roles = info.get("server_roles") or []
    roles = [roles] if isinstance(roles, str) else list(roles)
    return "shc_member" in roles or str(info.get("instance_type") or "").lower() == "cloud"


@contextlib.contextmanager
def open_state(
    config: InputConfig, metadata: Mapping[str, Optional[str]], log: logging.Logger
) -> Iterator[OpenedState]:
    """The input's state for one run. Raises StateError (the run fails) or
    lease.LeaseHeld (another member collects: this run steps aside)."""
    checkpoint_dir = metadata.get("checkpoint_dir") or "."
    with contextlib.ExitStack() as stack:
        backend = config.state_store
        service = info = None
        if backend == STATE_AUTO and _remembered_choice(checkpoint_dir, config, metadata) == STATE_LOCAL:
            backend = STATE_LOCAL
        if backend != STATE_LOCAL:
            from .splunkrest import KeepAliveHandler

            handler = KeepAliveHandler()  # one connection to splunkd for the run's KV store calls
            stack.callback(handler.close)
            service = splunk_service(metadata, handler)
        if backend == STATE_AUTO:
            info = server_info(
                service, "to choose where the state lives (state_store = auto; set local or kvstore to choose yourself)"
            )
            backend = STATE_KVSTORE if wants_kvstore(info) else STATE_LOCAL
            if backend == STATE_LOCAL:
                _remember_choice(checkpoint_dir, config, metadata, STATE_LOCAL)
        if backend == STATE_LOCAL:
            yield stack.enter_context(_local(checkpoint_dir, config))
        else:
            yield stack.enter_context(_kvstore(config, metadata, log, checkpoint_dir, service, info))


@contextlib.contextmanager
def _local(checkpoint_dir: str, config: InputConfig) -> Iterator[OpenedState]:
    with StateStore.open(checkpoint_dir, config.name, config.domain) as local:
        migrated = local.migrated_at()
        if migrated:
            raise StateError(
                f"this input's state moved to the KV store on {migrated}; its local file is out of date: "
                "set state_store = kvstore (or auto on a cluster member) to go on from the shared state"
            )
        yield OpenedState(local, local, STATE_LOCAL)


@contextlib.contextmanager
def _kvstore(config, metadata, log, checkpoint_dir: str, service, info) -> Iterator[OpenedState]:
    from .kvstate import LEASES, KVStateStore, KVStoreError, collections
    from .lease import Lease

    info = info or server_info(service, "to check that the KV store is ready")
    status = info.get("kvStoreStatus")
    if status is not None and status != "ready":
        raise KVStoreError(
            f"the KV store is not ready (kvStoreStatus={status}): the run stops and writes nothing; it never "
            "falls back to a local file. It goes on next interval once the KV store is ready"
        )
    kv = collections(service)
    with contextlib.ExitStack() as stack:
        local = _local_token_store(checkpoint_dir, config, log)
        if local is not None:
            stack.callback(local.close)
        lease = Lease(kv[LEASES], state_id(config.name, config.domain), _member(metadata))
        lease.acquire()
        stack.callback(_release, lease, log)
        state = stack.enter_context(KVStateStore(kv, config.name, config.domain))
        if local is not None:
            _carry_over(local, state, log)
        yield OpenedState(state, local if local is not None else MemoryTokenCache(), STATE_KVSTORE, lease.renew)


def cached_token(config: InputConfig, metadata: Mapping[str, Optional[str]]) -> Optional[MemoryTokenCache]:
    """For validating a later edit that keeps the stored secret: the token
    this input's runs cached on this instance, if it is this client's and
    still valid (Auth0 accepted these credentials; no new token is asked for).
    None when there is none: validation then asks Auth0."""
    path = state_path(metadata.get("checkpoint_dir") or ".", config.name, config.domain)
    if not os.path.exists(path):
        return None
    try:
        with StateStore(path) as local:
            token = local.token()
    except StateError:
        return None
    if token is None or token.client_id != config.client_id or token.expires_at - time.time() <= TOKEN_RENEW_MARGIN:
        return None
    cache = MemoryTokenCache()
    cache.save_token(token)
    return cache


def keep_token(config: InputConfig, metadata: Mapping[str, Optional[str]], token) -> None:
    """After a validation that asked Auth0 for a token: keep it where this
    input's runs look for one (the local file, 0600), if splunkd said where
    that is. Best effort: a run asks for its own otherwise."""
    checkpoint_dir = metadata.get("checkpoint_dir")
    if not checkpoint_dir:
        return
    try:
        with StateStore.open(checkpoint_dir, config.name, config.domain) as local:
            local.save_token(token)
    except StateError:
        return


def _splunkd_instance(metadata: Mapping[str, Optional[str]]) -> Optional[str]:
    """The splunkd this run is started by, as far as its metadata tells: a
    digest of its URI and the session key it passed. A restarted splunkd
    passes other session keys, so a choice noted under this name cannot
    outlive the splunkd that made it. (The digest, not the key, is written.)"""
    key = metadata.get("session_key")
    if not key:
        return None
    return hashlib.sha256(f"{metadata.get('server_uri')}\n{key}".encode()).hexdigest()[:32]


def _remembered_choice(
    checkpoint_dir: str, config: InputConfig, metadata: Mapping[str, Optional[str]]
) -> Optional[str]:
    """auto's choice of an earlier run under this splunkd. A search head joins
    a cluster (or becomes Splunk Cloud) only across a splunkd restart, so
    server/info's answer holds for the life of one splunkd: an idle run need
    not ask it again. Only `local` is remembered (kvstore talks to splunkd
    anyway); the note lives in the local file."""
    instance = _splunkd_instance(metadata)
    path = state_path(checkpoint_dir, config.name, config.domain)
    if instance is None or not os.path.exists(path):
        return None
    try:
        with StateStore(path) as local:
            return STATE_LOCAL if local.auto_choice() == f"{STATE_LOCAL}@{instance}" else None
    except StateError:
        return None


def _remember_choice(
    checkpoint_dir: str, config: InputConfig, metadata: Mapping[str, Optional[str]], choice: str
) -> None:
    instance = _splunkd_instance(metadata)
    if instance is not None:
        with StateStore.open(checkpoint_dir, config.name, config.domain) as local:
            local.set_auto_choice(f"{choice}@{instance}")


def _member(metadata: Mapping[str, Optional[str]]) -> str:
    """This search head's name (splunkd's server_host), as the lease names it."""
    return metadata.get("server_host") or os.uname().nodename


def _local_token_store(checkpoint_dir: str, config: InputConfig, log: logging.Logger) -> Optional[StateStore]:
    """The local file keeps the token (0600) and, before a switch, the old state."""
    try:
        return StateStore.open(checkpoint_dir, config.name, config.domain)
    except StateError as exc:
        log.warning("%s; the access token is kept for this run only", exc)
        return None


def _carry_over(local: StateStore, state, log: logging.Logger) -> None:
    """local -> kvstore: the local state is copied in once, then marked migrated."""
    if local.migrated_at() or state.has_state() or not local.has_state():
        return
    users, flags = state.import_local(local)
    local.mark_migrated(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    checkpoint = local.checkpoint()
    log.info(
        "carried this input's local state over to the KV store (once): checkpoint log_id %s, %d known users, "
        "%d pending flag writes; the local file is kept, marked migrated",
        checkpoint.log_id if checkpoint else "-",
        users,
        flags,
    )


def _release(lease, log: logging.Logger) -> None:
    from .kvstate import KVStoreError

    try:
        lease.release()
    except KVStoreError as exc:
        log.warning("could not release this input's lease (it expires by itself): %s", exc)
