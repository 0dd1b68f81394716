"""The load balancer's access log: ALB's line format, rotation, atomic delivery, full disks.

The independent definition of the format is AWS's own: the regular expression of Athena's
``alb_access_logs`` table in "Query Application Load Balancer logs"
(https://docs.aws.amazon.com/athena/latest/ug/application-load-balancer-logs.html), copied
below as the documentation gives it (Java's regex, which Python's ``re`` reads the same here).
"""

from __future__ import annotations

import gzip
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tierlake.edge.lb.accesslog import (
    AccessLogWriter,
    format_entry,
    load_balancer_id,
    target_group_arn,
)
from tierlake.edge.lb.model import AccessLogEntry

ATHENA_ALB_REGEX = re.compile(
    r'([^ ]*) ([^ ]*) ([^ ]*) ([^ ]*):([0-9]*) ([^ ]*)[:-]([0-9]*) ([-.0-9]*) ([-.0-9]*) '
    r'([-.0-9]*) (|[-0-9]*) (-|[-0-9]*) ([-0-9]*) ([-0-9]*) "([^ ]*) (.*) (- |[^ ]*)" '
    r'"([^"]*)" ([A-Z0-9-_]+) ([A-Za-z0-9.-]*) ([^ ]*) "([^"]*)" "([^"]*)" "([^"]*)" '
    r'([-.0-9]*) ([^ ]*) "([^"]*)" "([^"]*)" "([^ ]*)" "([^\s]+?)" "([^\s]+)" "([^ ]*)" '
    r'"([^ ]*)" ?([^ ]*)?( .*)?')
COLUMNS = ["type", "time", "elb", "client_ip", "client_port", "target_ip", "target_port",
           "request_processing_time", "target_processing_time", "response_processing_time",
           "elb_status_code", "target_status_code", "received_bytes", "sent_bytes",
           "request_verb", "request_url", "request_proto", "user_agent", "ssl_cipher",
           "ssl_protocol", "target_group_arn", "trace_id", "domain_name", "chosen_cert_arn",
           "matched_rule_priority", "request_creation_time", "actions_executed",
           "redirect_url", "lambda_error_reason", "target_port_list",
           "target_status_code_list", "classification", "classification_reason",
           "conn_trace_id", "rest"]
T0 = datetime(2026, 12, 1, 7, 30, 12, 345678, tzinfo=UTC).timestamp()


def entry(i: int = 0, **changes: object) -> AccessLogEntry:
    fields: dict[str, object] = dict(
        type="http", time=T0 + i, elb="web-alb", client=("127.0.0.1", 40000 + i),
        target=("127.0.0.1", 8001), request_processing_time=0.001,
        target_processing_time=0.012 + i / 1000, response_processing_time=0.0,
        elb_status_code=200, target_status_code=200, received_bytes=120 + i,
        sent_bytes=3400 + i, request=f"GET http://localhost:8080/p/{i}?q=a HTTP/1.1",
        user_agent="Mozilla/5.0 (X11; Linux x86_64) locust/2.0", target_group="web-tg",
        trace_id=f"Root=1-{int(T0):08x}-{i:024x}", domain_name="localhost",
        matched_rule_priority="0", request_creation_time=T0 + i - 0.013,
        actions_executed=["forward"], targets_tried=[("127.0.0.1", 8001)],
        target_status_codes=[200])
    fields.update(changes)
    return AccessLogEntry(**fields)  # type: ignore[arg-type]


def parse(line: str) -> dict[str, str]:
    m = ATHENA_ALB_REGEX.fullmatch(line)
    assert m is not None, f"Athena's regex does not match: {line}"
    return dict(zip(COLUMNS, m.groups(), strict=True))


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_every_field_of_a_forwarded_request_round_trips() -> None:
    e = entry(7)
    row = parse(format_entry(e))
    assert row["type"] == "http"
    assert row["time"] == iso(e.time) and row["time"].endswith("Z")
    assert row["elb"] == load_balancer_id("web-alb") and row["elb"].startswith("app/web-alb/")
    assert (row["client_ip"], int(row["client_port"])) == e.client
    assert (row["target_ip"], int(row["target_port"])) == e.target
    assert float(row["request_processing_time"]) == pytest.approx(0.001)
    assert float(row["target_processing_time"]) == pytest.approx(0.019)
    assert float(row["response_processing_time"]) == 0.0
    assert (int(row["elb_status_code"]), int(row["target_status_code"])) == (200, 200)
    assert (int(row["received_bytes"]), int(row["sent_bytes"])) == (127, 3407)
    assert f'{row["request_verb"]} {row["request_url"]} {row["request_proto"]}' == e.request
    assert row["user_agent"] == e.user_agent
    assert (row["ssl_cipher"], row["ssl_protocol"]) == ("-", "-")
    assert row["target_group_arn"] == target_group_arn("web-tg")
    assert row["target_group_arn"].startswith(
        "arn:aws:elasticloadbalancing:local-1:000000000000:targetgroup/web-tg/")
    assert row["trace_id"] == e.trace_id and row["domain_name"] == "localhost"
    assert row["chosen_cert_arn"] == "-" and row["matched_rule_priority"] == "0"
    assert row["request_creation_time"] == iso(e.request_creation_time)
    assert row["actions_executed"] == "forward" and row["redirect_url"] == "-"
    assert row["lambda_error_reason"] == "-"  # error_reason
    assert row["target_port_list"] == "127.0.0.1:8001"
    assert row["target_status_code_list"] == "200"
    assert (row["classification"], row["classification_reason"]) == ("-", "-")
    assert row["conn_trace_id"] == "-"


def test_a_request_the_balancer_answered_itself_has_dashes_and_minus_one() -> None:
    """503 with no healthy target: not dispatched, times -1, target fields ``-``."""
    e = entry(1, target=None, request_processing_time=-1.0, target_processing_time=-1.0,
              response_processing_time=-1.0, elb_status_code=503, target_status_code=None,
              target_group="web-tg", actions_executed=["forward"], targets_tried=[],
              target_status_codes=[], error_reason="-", user_agent="")
    row = parse(format_entry(e))
    assert (row["target_ip"], row["target_port"]) == ("", "")  # "-" is the regex's separator
    assert row["request_processing_time"] == row["target_processing_time"] == "-1"
    assert row["response_processing_time"] == "-1"
    assert (row["elb_status_code"], row["target_status_code"]) == ("503", "-")
    assert row["user_agent"] == "-"
    assert row["target_port_list"] == row["target_status_code_list"] == "-"


def test_a_client_gone_before_an_answer_and_an_error_reason_parse() -> None:
    e = entry(2, elb_status_code=None, target_status_code=None,
              error_reason="TargetConnectionErrorCode", actions_executed=["forward"])
    row = parse(format_entry(e))
    assert (row["elb_status_code"], row["target_status_code"]) == ("-", "-")
    assert row["lambda_error_reason"] == "TargetConnectionErrorCode"


def test_quotes_and_newlines_in_client_values_cannot_break_the_line() -> None:
    e = entry(3, user_agent='evil"agent\nsecond line', domain_name='a"b',
              request='GET http://x:80/"q" HTTP/1.1')
    line = format_entry(e)
    assert "\n" not in line
    row = parse(line)
    assert row["user_agent"] == "evil%22agent%0Asecond line"
    assert row["domain_name"] == "a%22b"
    assert row["request_url"] == "http://x:80/%22q%22"


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def wait_for(predicate: object, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < end, "gave up waiting"
        time.sleep(0.02)


@pytest.mark.timeout(30)
def test_files_are_delivered_under_albs_key_layout_and_hold_every_line(tmp_path: Path) -> None:
    at = datetime(2026, 12, 1, 23, 59, 40, tzinfo=UTC).timestamp()
    writer = AccessLogWriter(tmp_path, "web-alb", rotate_seconds=60, clock=lambda: at)
    sent = [entry(i) for i in range(500)]
    for e in sent:
        writer.request_done(e)
    writer.close()
    (path,) = files_under(tmp_path)
    assert writer.delivered == [path] and writer.dropped_lines == 0
    rel = path.relative_to(tmp_path).as_posix()
    m = re.fullmatch(
        r"AWSLogs/000000000000/elasticloadbalancing/local-1/2026/12/01/000000000000_"
        r"elasticloadbalancing_local-1_app\.web-alb\.([0-9a-f]{16})_20261201T2359Z_"
        r"127\.0\.0\.1_([a-z0-9]{8})\.log\.gz", rel)
    assert m is not None, rel
    assert load_balancer_id("web-alb") == f"app/web-alb/{m[1]}"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    assert lines == [format_entry(e) for e in sent]
    assert [parse(x)["request_url"] for x in lines] == [
        f"http://localhost:8080/p/{i}?q=a" for i in range(500)]


@pytest.mark.timeout(30)
def test_files_rotate_while_requests_keep_coming_and_never_show_half(tmp_path: Path) -> None:
    writer = AccessLogWriter(tmp_path, "web-alb", rotate_seconds=0.2)
    try:
        for i in range(40):
            writer.request_done(entry(i))
            time.sleep(0.015)
        wait_for(lambda: len(writer.delivered) >= 2)
        # a file in the date folders is whole: every one decompresses completely
        for path in files_under(tmp_path):
            if path.name.startswith("."):
                continue
            assert path.name.endswith(".log.gz")
            for line in gzip.decompress(path.read_bytes()).decode().splitlines():
                parse(line)
    finally:
        writer.close()
    delivered = [p for p in files_under(tmp_path) if not p.name.startswith(".")]
    assert delivered == sorted(writer.delivered)
    assert not [p for p in files_under(tmp_path) if p.name.startswith(".")], "temp files left"
    lines = [x for p in writer.delivered
             for x in gzip.decompress(p.read_bytes()).decode().splitlines()]
    assert sorted(lines) == sorted(format_entry(entry(i)) for i in range(40))


@pytest.mark.timeout(30)
def test_a_file_in_progress_is_hidden_until_delivered(tmp_path: Path) -> None:
    writer = AccessLogWriter(tmp_path, "web-alb", rotate_seconds=3600)
    try:
        writer.request_done(entry(0))
        wait_for(lambda: any(files_under(tmp_path)))  # written about every second
        (tmp,) = files_under(tmp_path)
        assert tmp.name.startswith(".") and tmp.name.endswith(".tmp")
        assert writer.delivered == []
    finally:
        writer.close()
    (path,) = files_under(tmp_path)
    assert not path.name.startswith(".")
    assert gzip.decompress(path.read_bytes()).decode() == format_entry(entry(0)) + "\n"


@pytest.mark.timeout(30)
def test_no_requests_no_file(tmp_path: Path) -> None:
    writer = AccessLogWriter(tmp_path, "web-alb", rotate_seconds=0.1)
    time.sleep(0.3)
    writer.close()
    assert files_under(tmp_path) == []


@pytest.mark.timeout(30)
def test_an_unwritable_directory_drops_and_counts_lines_and_never_raises(
        tmp_path: Path) -> None:
    """The log directory cannot be created (a file is in the way; root ignores modes)."""
    (tmp_path / "logs").write_text("not a directory")
    writer = AccessLogWriter(tmp_path / "logs" / "alb", "web-alb", rotate_seconds=0.1)
    for i in range(10):
        writer.request_done(entry(i))  # never raises
    wait_for(lambda: writer.dropped_lines == 10)
    writer.close()
    writer.request_done(entry(99))  # after close: dropped, not raised
    assert writer.dropped_lines == 11 and writer.delivered == []
    assert files_under(tmp_path) == [tmp_path / "logs"]


@pytest.mark.timeout(30)
def test_after_a_failing_disk_the_next_file_is_delivered(tmp_path: Path) -> None:
    (tmp_path / "logs").write_text("not a directory")
    writer = AccessLogWriter(tmp_path / "logs", "web-alb", rotate_seconds=0.1)
    writer.request_done(entry(0))
    wait_for(lambda: writer.dropped_lines == 1)
    (tmp_path / "logs").unlink()  # the disk is back
    writer.request_done(entry(1))
    writer.close()
    (path,) = writer.delivered
    assert gzip.decompress(path.read_bytes()).decode() == format_entry(entry(1)) + "\n"
    assert writer.dropped_lines == 1


def test_bad_names_are_refused_with_the_rule() -> None:
    with pytest.raises(ValueError, match="letters, digits and hyphens"):
        AccessLogWriter(Path("/tmp"), "web_alb")
    with pytest.raises(ValueError, match="rotate_seconds"):
        AccessLogWriter(Path("/tmp"), "web-alb", rotate_seconds=0)


@pytest.mark.timeout(30)
def test_a_malformed_entry_is_dropped_and_counted_not_raised(tmp_path: Path) -> None:
    writer = AccessLogWriter(tmp_path, "web-alb")
    writer.request_done(entry(0, client=None))  # a balancer bug must not break the request
    writer.request_done(entry(1))
    writer.close()
    assert writer.dropped_lines == 1
    (path,) = writer.delivered
    assert gzip.decompress(path.read_bytes()).decode() == format_entry(entry(1)) + "\n"


@pytest.mark.timeout(60)
def test_requests_from_many_threads_each_land_once(tmp_path: Path) -> None:
    """The balancer's loop and other threads report at once while files rotate."""
    import threading

    writer = AccessLogWriter(tmp_path, "web-alb", rotate_seconds=0.05)

    def report(base: int) -> None:
        for i in range(300):
            writer.request_done(entry(base + i))

    threads = [threading.Thread(target=report, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    lines = [x for p in writer.delivered
             for x in gzip.decompress(p.read_bytes()).decode().splitlines()]
    assert writer.dropped_lines == 0
    assert sorted(lines) == sorted(format_entry(entry(k * 1000 + i))
                                   for k in range(4) for i in range(300))
