"""Ray's Jobs API client, with each call retried while the cluster is not ready yet.

A head node that has just started refuses connections, then answers before its job agent does
("No available agent to submit job, please try again later", status 500); a proxy in front of it
answers 502, 503 or 504. Those pass: calls are retried, with one line to the user, for a bounded
time. Anything else (404, a host name that does not resolve, a missing token) fails at once.
"""
from __future__ import annotations

import re
import secrets
import string
import sys
import time
from typing import Any, Callable, TypeVar

from hpsearch.platform.errors import first_line

DEFAULT_RETRY_FOR_S = 60.0
TRANSIENT_STATUS = frozenset({502, 503, 504})
_STATUS = re.compile(r"status code (\d{3})")
# As Ray makes its own: a retried submission with the same id cannot start the job twice.
_SUBMISSION_ID_CHARACTERS = sorted(set(string.ascii_letters + string.digits) - set("IloO0"))

Result = TypeVar("Result")


class ClusterUnavailable(ConnectionError):
    """The Ray Jobs API could not be reached at the given address, or not in time."""


def transient_reason(error: BaseException) -> str | None:
    """Why a Jobs API call failed, in a few words, when trying again later may succeed; None if not."""
    import requests

    from ray.exceptions import AuthenticationError

    chain = _chain(error)
    if any(isinstance(cause, AuthenticationError) for cause in chain):
        return None
    status = _status_code(error)
    if status is not None:
        if status == 500 and "no available agent" in str(error).lower():
            return "no available agent"
        return f"HTTP {status}" if status in TRANSIENT_STATUS else None
    for cause in chain:  # the root cause comes last: requests wraps urllib3, which wraps the socket's error
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
            return "connection reset"
    if any(isinstance(cause, requests.Timeout) or type(cause) is TimeoutError for cause in chain):
        return "timed out"
    return None


def _chain(error: BaseException) -> list[BaseException]:
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        error = error.__cause__ or error.__context__ or getattr(error, "reason", None)
        error = error if isinstance(error, BaseException) else None
    return chain


def _describe(error: BaseException) -> str:
    """The root cause of a connection error ("[Errno -2] Name or service not known"), else the error."""
    root = _chain(error)[-1]
    return first_line(root if isinstance(root, OSError) else error)


def _status_code(error: BaseException) -> int | None:
    response = getattr(error, "response", None)  # requests.HTTPError, from the version check
    if response is not None and getattr(response, "status_code", None):
        return int(response.status_code)
    if isinstance(error, RuntimeError):  # Ray's "Request failed with status code 503: ..."
        match = _STATUS.search(str(error))
        return int(match.group(1)) if match else None
    return None


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Patience:
    """Calls a function until it succeeds, fails for good, or has failed transiently for `retry_for_s`.

    Each outage is waited out for at most `retry_for_s` seconds, from its first failure; the user
    hears of it once, and again only when the reason changes."""

    def __init__(self, url: str, *, retry_for_s: float = DEFAULT_RETRY_FOR_S,
                 say: Callable[[str], None] = _say) -> None:
        self.url = url
        self.retry_for_s = retry_for_s
        self.say = say

    def call(self, function: Callable[..., Result], *args: Any, **kwargs: Any) -> Result:
        started = deadline = None
        told = None
        pause_s = 0.5
        while True:
            try:
                return function(*args, **kwargs)
            except Exception as error:  # noqa: BLE001  (sorted below: only transient ones are retried)
                reason = transient_reason(error)
                if reason is None:
                    raise
                now = time.monotonic()
                if deadline is None:
                    started, deadline = now, now + self.retry_for_s
                if now >= deadline:
                    raise ClusterUnavailable(self._gave_up(reason, waited_s=now - started)) from None
                if reason != told:
                    left = "" if told is None else " more"
                    self.say(f"the cluster at {self.url} is not ready ({reason}); retrying for up to "
                             f"{deadline - now:.0f} s{left}")
                    told = reason
                time.sleep(min(pause_s, deadline - now))
                pause_s = min(pause_s * 2, 5.0)

    def _gave_up(self, reason: str, *, waited_s: float) -> str:
        hint = ("its head node's job agent has not started: see dashboard_agent.log on the head node."
                if reason == "no available agent" else "is the cluster's dashboard listening there?")
        if waited_s < 0.5:
            return f"cannot reach the Ray Jobs API at {self.url}: {reason} ({hint.rstrip('.')})"
        return (f"cannot reach the Ray Jobs API at {self.url}: {reason}, still after {waited_s:.0f} s of "
                f"retries ({hint} --retry-for SECONDS waits longer)")


class RetryingClient:
    """The calls of Ray's JobSubmissionClient that hpsearch makes, each through a Patience."""

    def __init__(self, patience: Patience) -> None:
        from ray.exceptions import AuthenticationError
        from ray.job_submission import JobSubmissionClient

        self.patience = patience
        try:  # its constructor asks the cluster for its version: the first call that can fail
            self._client = patience.call(JobSubmissionClient, patience.url)
        except AuthenticationError:
            raise ClusterUnavailable(
                f"the Ray cluster at {patience.url} requires its token: export RAY_AUTH_MODE=token, with the "
                f"head node's token in ~/.ray/auth_token or $RAY_AUTH_TOKEN (`ray get-auth-token` prints it "
                f"on the head node)") from None
        except ClusterUnavailable:
            raise
        except (ConnectionError, OSError, RuntimeError) as error:
            raise ClusterUnavailable(f"cannot reach the Ray Jobs API at {patience.url}: {_describe(error)} "
                                     f"(is the cluster's dashboard listening there?)") from None

    def get_address(self) -> str:
        return self._client.get_address()

    def submit_job(self, **options: Any) -> str:
        submission_id = options.setdefault("submission_id", new_submission_id())
        attempts = 0

        def attempt() -> str:
            nonlocal attempts
            attempts += 1
            try:
                return self._client.submit_job(**options)
            except RuntimeError as error:
                # An earlier attempt whose connection broke may have reached the cluster after all.
                if attempts > 1 and f"{submission_id} already exists" in str(error):
                    return submission_id
                raise

        return self.patience.call(attempt)

    def get_job_info(self, job_id: str):
        return self.patience.call(self._client.get_job_info, job_id)

    def get_job_logs(self, job_id: str) -> str:
        return self.patience.call(self._client.get_job_logs, job_id)

    def list_jobs(self) -> list:
        return self.patience.call(self._client.list_jobs)

    def stop_job(self, job_id: str) -> bool:
        return self.patience.call(self._client.stop_job, job_id)

    def tail_job_logs(self, job_id: str):
        # A stream, not retried: `jobs.follow` polls the log when it breaks.
        return self._client.tail_job_logs(job_id)


def new_submission_id() -> str:
    return "raysubmit_" + "".join(secrets.choice(_SUBMISSION_ID_CHARACTERS) for _ in range(16))
