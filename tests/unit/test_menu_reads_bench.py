"""bench.menu_reads reads wrk's report: rate, latency percentiles in any unit, and answers that were not 2xx/3xx."""

import pytest

from bench.menu_reads import parse_wrk

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:18777/nonexistent
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.56ms    2.46ms  24.16ms   89.53%
    Req/Sec     0.86k   161.97     1.09k    70.00%
  Latency Distribution
     50%  {p50}
     75%    3.16ms
     90%    5.11ms
     99%   {p99}
  855 requests in 1.00s, 434.18KB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 855
Requests/sec:    852.39
Transfer/sec:    432.86KB
"""


@pytest.mark.parametrize(
    ("p50", "p99", "expected"), [("1.81ms", "12.46ms", (1.81, 12.46)), ("812.00us", "1.20s", (0.812, 1200.0))]
)
def test_wrk_output_is_read_in_milliseconds(p50: str, p99: str, expected: tuple[float, float]) -> None:
    result = parse_wrk(WRK_OUTPUT.format(p50=p50, p99=p99))

    assert result["requests_per_s"] == 852.39 and result["requests"] == 855
    assert (result["latency_ms"]["p50"], result["latency_ms"]["p99"]) == pytest.approx(expected)
    assert result["not_2xx_3xx"] == 855 and result["socket_errors"] == 3


def test_output_that_is_not_wrks_report_is_refused() -> None:
    with pytest.raises(RuntimeError, match="cannot read"):
        parse_wrk("unable to connect to 127.0.0.1:9 Connection refused")
