"""HTTP calls from one service to another (Session-Buddy pushing to Akosha, and the like).

Every call gets explicit timeouts, a bearer token, the caller's W3C trace context (so the peer's
spans join the caller's trace), retries where a retry can help, and a circuit breaker so that a
dead peer costs one fast error instead of a timeout per call.

Retries (tenacity) happen only on a connect error (the request never left), 429, 502, 503 and
504, waiting what `Retry-After` asks when it is within `RequestRetryPolicy.max_retry_after_seconds`
and giving up at once when it is longer (the error carries the wait, so an outbox can reschedule).
Retrying 502/503/504, whose request may have reached the peer, assumes the peer's endpoints are
idempotent, as the platform's writes between services are (on source, record and version). A
timeout after the request was sent is not retried; nor is any other 4xx: the same request would
be refused again.

Errors are the platform's (`mahavishnu.platform.errors`), with the HTTP status in the message:

    connect error, timeout, 429, 5xx, circuit open   ServiceUnavailableError (an UnavailableError:
                                                     retryable; carries retry_after_seconds)
    401, 403                                          ConfigurationError: this service's token for
                                                     the peer is wrong; a deployment problem, not
                                                     the end user's credentials
    404                                               NotFoundError
    any other 4xx                                     InvalidArgumentError

The token is sent in the Authorization header only; it is not in any log line, error or repr.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import tenacity
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind
from pydantic import SecretStr

from mahavishnu.platform.errors import (
    ConfigurationError,
    InvalidArgumentError,
    MahavishnuError,
    NotFoundError,
    UnavailableError,
)
from mahavishnu.platform.observability import get_logger

__all__ = [
    "BreakerPolicy",
    "CircuitBreaker",
    "RequestRetryPolicy",
    "RequestTimeouts",
    "ServiceClient",
    "ServiceUnavailableError",
]

log = get_logger("service_client")

_RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class RequestTimeouts:
    """Per-attempt limits, each in seconds; httpx has no default we would want to inherit."""

    connect_seconds: float = 2.0
    """Opening the TCP (and TLS) connection."""
    read_seconds: float = 10.0
    """Waiting for each chunk of the answer, the first one included."""
    write_seconds: float = 10.0
    """Sending each chunk of the request body."""
    pool_seconds: float = 2.0
    """Waiting for a free connection from the pool."""

    def _to_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect_seconds,
            read=self.read_seconds,
            write=self.write_seconds,
            pool=self.pool_seconds,
        )


@dataclass(frozen=True)
class RequestRetryPolicy:
    """When and how long to wait before trying a failed request again."""

    max_attempts: int = 3
    """Attempts in all, the first included; 1 disables retries."""
    initial_backoff_seconds: float = 0.2
    """First wait without a Retry-After; doubles per attempt, with as much jitter."""
    max_backoff_seconds: float = 5.0
    """Ceiling of the exponential backoff."""
    max_retry_after_seconds: float = 30.0
    """A longer Retry-After is not waited for: the call fails at once, carrying the wait."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("max_attempts must be at least 1")
        if min(self.initial_backoff_seconds, self.max_backoff_seconds, self.max_retry_after_seconds) < 0:
            raise ConfigurationError("retry waits cannot be negative")


@dataclass(frozen=True)
class BreakerPolicy:
    """When to stop calling a failing peer, and for how long."""

    failure_threshold: int = 5
    """Consecutive failed attempts (connect error, timeout, 429, 5xx) that open the circuit."""
    cooldown_seconds: float = 30.0
    """How long an open circuit fails fast before one probe request is let through."""

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ConfigurationError("failure_threshold must be at least 1")
        if self.cooldown_seconds < 0:
            raise ConfigurationError("cooldown_seconds cannot be negative")


class ServiceUnavailableError(UnavailableError):
    """The peer cannot be reached or is failing; worth trying again later."""

    def __init__(self, message: str, *, service: str, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.service = service
        self.retry_after_seconds = retry_after_seconds
        """When the peer (Retry-After) or the breaker (cooldown left) says a retry may succeed."""


BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Closed: calls pass and consecutive failures are counted. Open: calls fail fast until the
    cooldown has passed. Half-open: one probe passes; its success closes the circuit, its failure
    opens it for another cooldown, and other calls fail fast while it is in flight.

    Single event loop only (no locks): each `ServiceClient` owns one.
    """

    def __init__(
        self, service: str, policy: BreakerPolicy, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._service = service
        self._policy = policy
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        return "open" if self._cooldown_left() > 0 or self._probing else "half_open"

    def before_attempt(self) -> None:
        """Let the attempt through, or raise `ServiceUnavailableError` at once."""
        state = self.state
        if state == "closed":
            return
        if state == "half_open":
            self._probing = True
            log.info("service_breaker_probe", service=self._service)
            return
        wait = self._cooldown_left()
        raise ServiceUnavailableError(
            f"{self._service} is unavailable: circuit open after {self._policy.failure_threshold} "
            f"consecutive failures; next try in {wait:.1f} s",
            service=self._service,
            retry_after_seconds=wait,
        )

    def succeeded(self) -> None:
        if self._opened_at is not None:
            log.info("service_breaker_closed", service=self._service)
        self._failures, self._opened_at, self._probing = 0, None, False

    def failed(self) -> None:
        self._failures += 1
        if self._probing or (self._opened_at is None and self._failures >= self._policy.failure_threshold):
            log.warning("service_breaker_opened", service=self._service, failures=self._failures)
            self._opened_at, self._probing = self._clock(), False

    def abandoned(self) -> None:
        """The attempt ended without a verdict (cancelled): free the probe slot, change nothing else."""
        self._probing = False

    def _cooldown_left(self) -> float:
        assert self._opened_at is not None
        return max(0.0, self._opened_at + self._policy.cooldown_seconds - self._clock())


class _Retry(Exception):
    """Internal: this attempt failed in a way worth another attempt; `error` is what the caller
    gets if none is left."""

    def __init__(self, error: ServiceUnavailableError) -> None:
        super().__init__(error.message)
        self.error = error


class ServiceClient:
    """Calls to one peer service at `base_url`. Use as `async with`, or call `aclose()`.

    `breaker.state` is public so a readiness check can report a peer whose circuit is open.
    """

    def __init__(
        self,
        service: str,
        base_url: str,
        *,
        token: SecretStr | str | None = None,
        timeouts: RequestTimeouts | None = None,
        retry: RequestRetryPolicy | None = None,
        breaker: BreakerPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        tracer: trace.Tracer | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.service = service
        self._token = SecretStr(token) if isinstance(token, str) else token
        self._retry = retry or RequestRetryPolicy()
        self.breaker = CircuitBreaker(service, breaker or BreakerPolicy(), clock)
        self._tracer = tracer or trace.get_tracer(__name__)
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=base_url, timeout=(timeouts or RequestTimeouts())._to_httpx(), transport=transport
        )

    def __repr__(self) -> str:
        return f"ServiceClient(service={self.service!r}, base_url={str(self._http.base_url)!r})"

    async def __aenter__(self) -> ServiceClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get(self, path: str, *, params: Mapping[str, str] | None = None) -> httpx.Response:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, *, json: Any = None) -> httpx.Response:
        return await self.request("POST", path, json=json)

    async def request(
        self, method: str, path: str, *, json: Any = None, params: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """One call, retried per the policy: a 2xx/3xx response, or a platform error."""
        with self._tracer.start_as_current_span(f"{method} {self.service}", kind=SpanKind.CLIENT) as span:
            request = self._http.build_request(
                method, path, json=json, params=params, headers=self._headers()
            )
            span.set_attributes(
                {
                    "http.request.method": method,
                    "server.address": request.url.host,
                    "url.path": request.url.path,
                    "peer.service": self.service,
                }
            )
            try:
                response: httpx.Response = await self._retrying(request)(self._attempt, request)
            except _Retry as exc:  # out of attempts, or a Retry-After beyond the cap
                raise exc.error from exc.__cause__
            span.set_attribute("http.response.status_code", response.status_code)
            return response

    def _headers(self) -> dict[str, str]:
        """Bearer token and the current trace context (`traceparent`, `tracestate`, baggage)."""
        headers: dict[str, str] = {}
        if self._token is not None:
            headers["authorization"] = f"Bearer {self._token.get_secret_value()}"
        propagate.inject(headers)
        return headers

    def _retrying(self, request: httpx.Request) -> tenacity.AsyncRetrying:
        policy = self._retry

        def log_retry(state: tenacity.RetryCallState) -> None:
            log.info(
                "service_call_retry",
                service=self.service,
                method=request.method,
                path=request.url.path,
                attempt=state.attempt_number,
                wait_seconds=round(state.upcoming_sleep, 3),
                reason=str(_failure(state)),
            )

        return tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception_type(_Retry),
            stop=tenacity.stop_after_attempt(policy.max_attempts) | _RetryAfterTooLong(policy),
            wait=_RetryAfterOrBackoff(policy),
            before_sleep=log_retry,
            sleep=self._sleep,
            reraise=True,
        )

    async def _attempt(self, request: httpx.Request) -> httpx.Response:
        self.breaker.before_attempt()
        try:
            response = await self._http.send(request)
        except httpx.TransportError as exc:
            self.breaker.failed()
            raise self._transport_error(request, exc) from exc
        except BaseException:
            self.breaker.abandoned()
            raise
        return self._judge(request, response)

    def _transport_error(self, request: httpx.Request, exc: httpx.TransportError) -> Exception:
        what = f"{request.method} {request.url.path}"
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return _Retry(self._unavailable(f"cannot connect to {self.service} for {what}"))
        if isinstance(exc, httpx.TimeoutException):
            kind = type(exc).__name__  # ReadTimeout, WriteTimeout, PoolTimeout
            return self._unavailable(f"{self.service} did not answer {what} in time ({kind})")
        return self._unavailable(f"{what} to {self.service} failed: {type(exc).__name__}")

    def _judge(self, request: httpx.Request, response: httpx.Response) -> httpx.Response:
        status = response.status_code
        what = f"{self.service} answered {request.method} {request.url.path} with HTTP {status}"
        if status in _RETRY_STATUSES:
            self.breaker.failed()
            raise _Retry(self._unavailable(what, _retry_after(response.headers.get("retry-after"))))
        if status >= 500:
            self.breaker.failed()
            raise self._unavailable(what)
        self.breaker.succeeded()  # a 4xx proves the peer is up: our request is at fault
        if status >= 400:
            raise _client_error(status, what)
        return response

    def _unavailable(self, message: str, retry_after: float | None = None) -> ServiceUnavailableError:
        return ServiceUnavailableError(message, service=self.service, retry_after_seconds=retry_after)


def _client_error(status: int, what: str) -> MahavishnuError:
    if status in (401, 403):
        return ConfigurationError(f"{what}: check this service's token for it")
    if status == 404:
        return NotFoundError(what)
    return InvalidArgumentError(what)


def _failure(state: tenacity.RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome is not None else None


def _retry_after_of(state: tenacity.RetryCallState) -> float | None:
    error = _failure(state)
    return error.error.retry_after_seconds if isinstance(error, _Retry) else None


class _RetryAfterOrBackoff(tenacity.wait.wait_base):
    """The peer's Retry-After when it gave one, else exponential backoff with jitter."""

    def __init__(self, policy: RequestRetryPolicy) -> None:
        self._backoff = tenacity.wait_exponential_jitter(
            multiplier=policy.initial_backoff_seconds,
            max=policy.max_backoff_seconds,
            jitter=policy.initial_backoff_seconds,
        )

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        retry_after = _retry_after_of(retry_state)
        return retry_after if retry_after is not None else self._backoff(retry_state)


class _RetryAfterTooLong(tenacity.stop.stop_base):
    """Stop when the peer asks for a longer wait than the policy allows."""

    def __init__(self, policy: RequestRetryPolicy) -> None:
        self._cap = policy.max_retry_after_seconds

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        retry_after = _retry_after_of(retry_state)
        return retry_after is not None and retry_after > self._cap


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None if absent or unusable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
