"""A booting instance as EC2's status checks and its SSM agent tell of it, played through AwsProxy before moto.

moto says that every running instance passes both status checks at once and that every command succeeds.
These answer what a real instance may also say: checks still initializing or impaired, an agent that has
not registered yet (or never does), a command that exits non-zero or never finishes.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tests.fakes.aws_proxy import Answer, AwsProxy

_WAIT_SECONDS = 60.0
_DETAIL = {
    "ok": "passed",
    "impaired": "failed",
    "initializing": "initializing",
    "insufficient-data": "initializing",
}


class StatusChecks:
    """DescribeInstanceStatus answers with the system and instance checks the test sets, for every instance
    moto reports as passing both (a running one); others are left as moto describes them."""

    def __init__(self, proxy: AwsProxy, *, system: str = "ok", instance: str = "ok") -> None:
        self.system = system
        self.instance = instance
        self._asks = 0
        self._asked = threading.Condition()
        proxy.answers["DescribeInstanceStatus"] = self._answer

    def wait_for_asks(self, count: int) -> bool:
        """Whether the check had asked `count` times, each answer delivered, within a minute."""
        with self._asked:
            return self._asked.wait_for(lambda: self._asks >= count, _WAIT_SECONDS)

    def _answer(self, _body: bytes, forward: Callable[[], Answer]) -> Answer:
        status, reason, headers, body = forward()
        text = body.decode()
        for element, value in (("systemStatus", self.system), ("instanceStatus", self.instance)):
            text = re.sub(rf"<{element}>.*?</{element}>", _summary(element, value), text, flags=re.DOTALL)
        answer = (status, reason, headers, text.encode())
        with self._asked:
            self._asks += 1
            self._asked.notify_all()
        return answer


def _summary(element: str, value: str) -> Callable[[re.Match[str]], str]:
    """Replaces a summary that moto says is ok (a running instance's) with one that says `value`."""

    def replace(block: re.Match[str]) -> str:
        if "<status>ok</status>" not in block[0]:
            return block[0]
        return (
            f"<{element}><status>{value}</status><details><item><name>reachability</name>"
            f"<status>{_DETAIL[value]}</status></item></details></{element}>"
        )

    return replace


@dataclass(frozen=True)
class Outcome:
    """How one command goes on the instance."""

    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    finishes: bool = True


class SsmAgent:
    """Runs the commands sent to the instance the way the test says (`outcomes` by command text; a command
    not named there succeeds), once it has registered: SendCommand is refused as InvalidInstanceId
    `registers_after` times first (None: forever)."""

    def __init__(
        self, proxy: AwsProxy, outcomes: Mapping[str, Outcome] | None = None, registers_after: int | None = 0
    ) -> None:
        self.outcomes = dict(outcomes or {})
        self.registers_after = registers_after
        self.refused = 0
        self.sent: list[dict[str, object]] = []
        """The body of every SendCommand the agent accepted, in order."""
        self._commands: dict[str, str] = {}
        self._lock = threading.Lock()
        proxy.answers["SendCommand"] = self._send
        proxy.answers["GetCommandInvocation"] = self._invocation

    @property
    def commands(self) -> list[str]:
        """The command lines that reached the instance, in order."""
        with self._lock:
            return [line for body in self.sent for line in body["Parameters"]["commands"]]  # type: ignore[index]

    def _send(self, body: bytes, forward: Callable[[], Answer]) -> Answer:
        request = json.loads(body)
        with self._lock:
            if self.registers_after is None or self.refused < self.registers_after:
                self.refused += 1
                return _json_error("InvalidInstanceId", "Instances not in a valid state for account")
        status, reason, headers, answer = forward()
        if status == 200:
            (line,) = request["Parameters"]["commands"]
            with self._lock:
                self.sent.append(request)
                self._commands[json.loads(answer)["Command"]["CommandId"]] = line
        return status, reason, headers, answer

    def _invocation(self, _body: bytes, forward: Callable[[], Answer]) -> Answer:
        status, reason, headers, answer = forward()
        if status != 200:
            return status, reason, headers, answer
        result = json.loads(answer)
        with self._lock:
            outcome = self.outcomes.get(self._commands[result["CommandId"]], Outcome())
        if not outcome.finishes:
            result.update(Status="InProgress", StatusDetails="InProgress", ResponseCode=-1)
        elif outcome.exit_code:
            result.update(Status="Failed", StatusDetails="Failed", ResponseCode=outcome.exit_code)
        result.update(StandardOutputContent=outcome.stdout, StandardErrorContent=outcome.stderr)
        return status, reason, headers, json.dumps(result).encode()


def _json_error(code: str, message: str) -> Answer:
    body = json.dumps({"__type": code, "message": message}).encode()
    return 400, "Bad Request", [("Content-Type", "application/x-amz-json-1.1")], body
