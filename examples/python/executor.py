#!/usr/bin/env python3
"""An example colony_assign executor in Python, standard library only.

It long-polls the coordinator replicas for processes, runs each one's function (looked up by
`funcname` in FUNCTIONS, called with the spec's `args` and `kwargs`), and closes the process
with the function's return value as its output, or fails it with the exception's text.

It follows docs/protocol.md: calls go to one replica and stay there; on a refused or timed-out
connection, a lost answer, or a 502/503/504, they move to another replica (chosen by
GET /healthz); a long-poll cut off loses nothing (the coordinator gives back what it could not
deliver) and is simply sent again; close and fail are sent again too, and a retried close that
finds its process already SUCCESS (409 "not running (it is SUCCESS)") was applied the first time.

    COLONY_TOKEN=... python3 executor.py --replicas http://127.0.0.1:8080,http://127.0.0.1:8081 --colony c

See README.md.
"""

import argparse
import http.client
import json
import os
import random
import signal
import socket
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime


# --- The functions this executor runs, by funcname ------------------------------------------


def add(*numbers):
    return sum(numbers)


def multiply(*numbers):
    product = 1
    for n in numbers:
        product *= n
    return product


def upper(text):
    return text.upper()


def word_count(text):
    counts = {}
    for word in text.split():
        counts[word] = counts.get(word, 0) + 1
    return counts


def divide(a, b):
    return a / b  # divide(1, 0) raises ZeroDivisionError: the process fails with its text


def sleep(seconds):
    time.sleep(seconds)
    return seconds


FUNCTIONS = {
    "add": add,
    "multiply": multiply,
    "upper": upper,
    "word_count": word_count,
    "divide": divide,
    "sleep": sleep,
}


# --- The protocol ------------------------------------------------------------------------------

CONNECT_TIMEOUT = 0.5  # seconds; a replica that does not accept a connection by then is passed over
REQUEST_TIMEOUT = 30.0  # seconds for calls other than long-polls
LONG_POLL_GRACE = 5.0  # a long-poll may take this much longer than its timeout
HEALTH_TIMEOUT = 0.5
RETRY_FOR = 30.0  # seconds a call keeps trying replicas before it gives up
QUARANTINE = 5.0  # seconds a failed replica is tried only after the others


class ApiError(Exception):
    """The coordinator answered with an error: {"error": {"code", "message", "sqlstate"?}}."""

    def __init__(self, status, code, message, sqlstate=None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.sqlstate = status, code, message, sqlstate


class Unavailable(Exception):
    """No replica could serve the call within RETRY_FOR seconds."""


class _ConnectFailed(OSError):
    """The TCP connection could not be made: nothing was sent."""


class _Connection(http.client.HTTPConnection):
    """Connects within CONNECT_TIMEOUT, then waits for the answer up to the request's timeout
    (urllib has one timeout for both)."""

    def connect(self):
        try:
            self.sock = socket.create_connection((self.host, self.port), CONNECT_TIMEOUT)
        except OSError as e:
            raise _ConnectFailed(f"cannot connect: {e}") from e
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(self.timeout)


class _Handler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_Connection, req)


# No proxies from the environment: connection failures must be the replica's, not a proxy's.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _Handler)


def _error_from(status, body):
    try:
        error = json.loads(body)["error"]
        return ApiError(status, error["code"], error["message"], error.get("sqlstate"))
    except (ValueError, KeyError, TypeError):
        text = body.decode("utf-8", "replace").strip()[:200]
        return ApiError(status, f"http_{status}", text or f"HTTP {status}")


class Coordinators:
    """A client of a list of coordinator replicas, with failover (see docs/protocol.md)."""

    def __init__(self, replicas, token, start=None):
        if not replicas:
            raise ValueError("no replica URLs")
        self.replicas = [r.rstrip("/") for r in replicas]
        self.token = token
        # A random start spreads executors over the replicas.
        n = len(self.replicas)
        self.current = random.randrange(n) if start is None else start % n
        self.failed_at = {}  # replica index -> when it last failed

    # One attempt on one replica: ("answered", status, body), ("not_sent", why) or ("lost", why).
    def _attempt(self, replica, method, path, body, timeout, headers):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.replicas[replica] + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        for name, value in headers.items():
            request.add_header(name, value)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with _opener.open(request, timeout=timeout) as response:
                return ("answered", response.status, response.read())
        except urllib.error.HTTPError as e:
            try:
                return ("answered", e.code, e.read())
            except OSError as lost:
                return ("lost", f"answer cut off: {lost}")
        except urllib.error.URLError as e:
            if isinstance(e.reason, _ConnectFailed):
                return ("not_sent", str(e.reason))
            return ("lost", str(e.reason))
        except (OSError, http.client.HTTPException) as e:  # timeouts, resets mid-answer
            return ("lost", f"{type(e).__name__}: {e}")

    def _is_down(self, replica, now):
        at = self.failed_at.get(replica)
        return at is not None and now - at < QUARANTINE

    def _candidates(self, tried):
        """Replicas to try next, best first: in rotation order from the current one, those not
        failed recently first, then the rest, the longest-failed first."""
        n, now = len(self.replicas), time.monotonic()
        order = [(self.current + k) % n for k in range(n)]
        order = [r for r in order if r not in tried]
        up = [r for r in order if not self._is_down(r, now)]
        down = sorted((r for r in order if self._is_down(r, now)), key=self.failed_at.get)
        return up + down

    def _healthy(self, replica):
        try:
            with _opener.open(self.replicas[replica] + "/healthz", timeout=HEALTH_TIMEOUT) as r:
                return r.status == 200
        except (OSError, http.client.HTTPException):
            return False

    def _choose(self, candidates):
        """The first candidate whose GET /healthz answers 200, else the first candidate."""
        if len(candidates) > 1:
            for replica in candidates:
                if self._healthy(replica):
                    return replica
                self.failed_at[replica] = time.monotonic()
        return candidates[0]

    def call(self, method, path, body=None, *, idempotent=True, timeout=REQUEST_TIMEOUT,
             finishes_as=None, headers=None, path_for_attempt=None):
        """Sends a call until a replica answers for good; returns (status, body bytes).

        Moves to another replica on: connection refused or timed out (nothing sent) and 503
        (the coordinator changed nothing) for every call; on a lost answer (timeout, reset,
        502/504) only for idempotent calls. Any other error status is raised as ApiError.
        `finishes_as` ("SUCCESS" for close, "FAILED" for fail): a 409 saying the process is
        already in that state, after an attempt whose answer was lost, means that attempt was
        applied, so it counts as success.
        """
        give_up = time.monotonic() + RETRY_FOR
        tried, maybe_applied, rounds, last = set(), False, 0, None
        replica = self.current
        while True:
            tried.add(replica)
            attempt_path, attempt_timeout = path, timeout
            if path_for_attempt is not None:
                attempt_path, attempt_timeout = path_for_attempt()
            result = self._attempt(replica, method, attempt_path, body, attempt_timeout,
                                   headers or {})
            if result[0] == "answered":
                status, data = result[1], result[2]
                if 200 <= status < 300:
                    self.current = replica
                    self.failed_at.pop(replica, None)
                    return status, data
                if status not in (502, 503, 504):
                    self.current = replica
                    error = _error_from(status, data)
                    if (finishes_as and maybe_applied and status == 409
                            and error.message.endswith(f"not running (it is {finishes_as})")):
                        return status, b""
                    raise error
                lost = status != 503
                last = f"{self.replicas[replica]}: HTTP {status}"
            else:
                lost = result[0] == "lost"
                last = f"{self.replicas[replica]}: {result[1]}"
            if lost and not idempotent:
                raise RuntimeError(f"the outcome is unknown: {last}")
            maybe_applied = maybe_applied or lost
            self.failed_at[replica] = time.monotonic()
            candidates = self._candidates(tried)
            if not candidates:
                pause = min(0.1 * 2 ** rounds, 1.0)
                pause = pause / 2 + random.random() * pause / 2
                if time.monotonic() + pause >= give_up:
                    raise Unavailable(last)
                time.sleep(pause)
                rounds, tried = rounds + 1, set()
                candidates = self._candidates(tried)
            elif time.monotonic() >= give_up:
                raise Unavailable(last)
            replica = self._choose(candidates)
            self.current = replica
            log(f"moving to {self.replicas[replica]} ({last})")

    # --- The calls an executor makes -------------------------------------------------------

    def assign(self, colony, timeout, max_count=1):
        """Long-poll: a list of processes, empty when `timeout` seconds pass without work."""
        ends = time.monotonic() + timeout
        colony_path = urllib.parse.quote(colony, safe="")

        def for_attempt():
            left = max(0, int(ends - time.monotonic()))
            return (f"/v1/colonies/{colony_path}/assign?timeout={left}&max={max_count}",
                    left + LONG_POLL_GRACE)

        status, data = self.call("POST", None, path_for_attempt=for_attempt)
        return [] if status == 204 else json.loads(data)

    def heartbeat(self, process_ids=()):
        """Keeps the executor alive and acknowledges the claim leases of exactly `process_ids`
        (those RUNNING on this executor); without ids, liveness only (an empty body)."""
        body = {"processes": list(process_ids)} if process_ids else None
        self.call("POST", "/v1/executors/heartbeat", body)

    def close(self, process_id, output):
        self.call("POST", f"/v1/processes/{process_id}/close", {"output": output},
                  finishes_as="SUCCESS")

    def fail(self, process_id, errors):
        self.call("POST", f"/v1/processes/{process_id}/fail", {"errors": errors},
                  finishes_as="FAILED")


# --- The executor loop ---------------------------------------------------------------------------


def log(message):
    print(f"{time.strftime('%H:%M:%S')} executor: {message}", file=sys.stderr, flush=True)


def run(process):
    """Runs the process's function; its return value (JSON) is the output."""
    spec = process["spec"]
    name = spec.get("funcname")
    function = FUNCTIONS.get(name)
    if function is None:
        raise LookupError(f"unknown function {name!r} (this executor has {sorted(FUNCTIONS)})")
    result = function(*spec.get("args") or [], **spec.get("kwargs") or {})
    json.dumps(result)  # raises TypeError when the result is not JSON
    return result


def lease_seconds(process):
    """The claim lease a process came with (lease_until - started_at; None without one).

    A process a coordinator hands out goes back to WAITING unless its executor acknowledges it
    within the lease (the colony's claim_lease, 15 s by default): by closing or failing it,
    logging to it, or a heartbeat that names it. A function that runs longer than half the
    lease needs the heartbeat, which main() sends from a timer."""
    try:
        started = datetime.fromisoformat(process["started_at"])
        until = datetime.fromisoformat(process["lease_until"])
    except (KeyError, TypeError, ValueError):
        return None
    return max(0.0, (until - started).total_seconds())


class Unfinished:
    """The ids of the processes received and not yet closed or failed: the one running and
    those waiting behind it (shared by the main thread and the heartbeat timer)."""

    def __init__(self, processes):
        self._lock = threading.Lock()
        self._ids = [p["id"] for p in processes]

    def done(self, process_id):
        with self._lock:
            self._ids = [i for i in self._ids if i != process_id]

    def ids(self):
        with self._lock:
            return list(self._ids)


def acknowledge_later(replicas, token, start, processes, unfinished):
    """A started timer that, half a lease from now, heartbeats naming the processes still
    unfinished then (the one running, and any waiting behind it): that acknowledges their
    leases, and only theirs. Cancel it once every process is closed or failed. It uses its
    own connections: the main thread's are busy."""
    leases = [s for s in map(lease_seconds, processes) if s is not None]
    if not leases:
        return None

    def heartbeat():
        ids = unfinished.ids()
        if not ids:
            return
        try:
            Coordinators(replicas, token, start).heartbeat(ids)
        except Exception as e:
            log(f"heartbeat failed: {e}")

    timer = threading.Timer(min(leases) / 2, heartbeat)
    timer.daemon = True
    timer.start()
    return timer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", default=os.environ.get("COLONY_REPLICAS"),
                        help="comma-separated coordinator base URLs (env COLONY_REPLICAS)")
    parser.add_argument("--colony", default=os.environ.get("COLONY_COLONY", "c"))
    parser.add_argument("--timeout", type=int, default=30, help="long-poll seconds (0..60)")
    parser.add_argument("--max", type=int, default=1, help="processes per long-poll")
    parser.add_argument("--start", type=int, default=None,
                        help="index of the replica to try first (default: random)")
    parser.add_argument("--once", action="store_true",
                        help="stop after the first long-poll that finds nothing")
    args = parser.parse_args()
    token = os.environ.get("COLONY_TOKEN")
    if not args.replicas or not token:
        parser.error("set --replicas (or COLONY_REPLICAS) and the COLONY_TOKEN environment "
                     "variable")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    replicas = [r.strip() for r in args.replicas.split(",") if r.strip()]
    coordinators = Coordinators(replicas, token, args.start)
    log(f"polling colony {args.colony!r} through {coordinators.replicas}")
    while True:
        try:
            processes = coordinators.assign(args.colony, args.timeout, args.max)
        except (ApiError, Unavailable) as e:
            if isinstance(e, ApiError) and e.status == 401:
                log(f"the token was refused: {e}")
                return 1
            log(f"long-poll failed: {e}; trying again in 1 s")
            time.sleep(1)
            continue
        if not processes and args.once:
            return 0
        unfinished = Unfinished(processes)
        timer = acknowledge_later(replicas, token, args.start, processes, unfinished)
        for process in processes:
            try:
                output = run(process)
            except Exception as e:  # the function's failure is the process's failure
                text = f"{type(e).__name__}: {e}"
                log(f"process {process['id']} failed: {text}")
                try:
                    coordinators.fail(process["id"], [text, traceback.format_exc()])
                except Exception as report:
                    log(f"could not fail process {process['id']}: {report}")
                unfinished.done(process["id"])
                continue
            try:
                coordinators.close(process["id"], output)
                log(f"process {process['id']} ({process['spec'].get('funcname')}) -> {output!r}")
            except Exception as e:
                # Its maxexectime will requeue it if this close never arrived.
                log(f"could not close process {process['id']}: {e}")
            unfinished.done(process["id"])
        if timer is not None:
            timer.cancel()


if __name__ == "__main__":
    sys.exit(main())
