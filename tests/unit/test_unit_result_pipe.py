"""The sandbox's results message (nsbox/sandbox/result_pipe.py), without a kernel."""

from __future__ import annotations

import json
import os

from nsbox.sandbox import result_pipe
from nsbox.verify.results import CheckResult, Endpoint, RecipeResult


def _result() -> RecipeResult:
    check = CheckResult("tcp/80 c1->c2", "reach", "allow", "allow", True, detail="connected", attempts=2,
                        src="c1", dst="c2", dst_ip="172.17.0.3", proto="tcp", port=80,
                        local=Endpoint("172.17.0.2", 40000), seen=Endpoint("172.17.0.2", 40000))
    return RecipeResult("bridge-mode", "pass", duration_s=1.5, checks=[check], namespaces={"c1": "c1"},
                        machines={}, then_status=None)


def _through_a_pipe(send) -> dict | None:
    receiver = result_pipe.Receiver()
    os.set_inheritable(receiver.write_fd, False)
    fd = os.dup(receiver.write_fd)
    receiver.start()
    result_pipe._fd = fd
    send()
    return receiver.message(timeout=5)


def test_results_arrive_whole_and_equal() -> None:
    original = _result()
    msg = _through_a_pipe(lambda: result_pipe.send_results([original]))
    assert msg is not None
    assert result_pipe.results_from_message(msg) == [original]


def test_a_failure_message_carries_its_exit_code() -> None:
    msg = _through_a_pipe(lambda: result_pipe.send_failure(2))
    assert msg == {"failed": 2}
    assert result_pipe.reporter("json", None, ["x"])(2, msg) == 2


def test_half_a_message_is_no_message() -> None:
    whole = json.dumps({"results": [_result().to_json()]}) + "\n"

    def send_half() -> None:
        os.write(result_pipe._fd, whole[: len(whole) // 2].encode())
        os.close(result_pipe._fd)
        result_pipe._fd = None

    assert _through_a_pipe(send_half) is None


def test_no_message_is_a_failure_with_a_report(capsys) -> None:
    rc = result_pipe.reporter("json", None, ["exit-zero"])(0, None)
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert out["results"][0]["error"] == "no result: the recipe process ended early (exit 0)"
    assert out["results"][0]["status"] == "fail"


def test_a_signal_exit_without_a_message_keeps_128_plus_n(capsys) -> None:
    assert result_pipe.reporter("json", None, ["x"])(143, None) == 143
    assert capsys.readouterr().out == ""


def test_a_forged_exit_code_zero_in_a_failure_message_is_not_believed() -> None:
    assert result_pipe.reporter("json", None, ["x"])(0, {"failed": 0}) == 1
