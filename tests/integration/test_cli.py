"""Command-line behaviour: exit codes and clear messages for usage and connection errors."""

from support import cli, free_port


def test_unreachable_collector_is_exit_2_with_the_reason():
    out = cli("query", "--url", f"http://127.0.0.1:{free_port()}")
    assert out.returncode == 2
    assert "cannot reach the collector" in out.stderr


def test_missing_store_is_exit_2(tmp_path):
    out = cli("verify", "--data-dir", str(tmp_path / "nothing-here"))
    assert out.returncode == 2 and "no store at" in out.stderr


def test_bad_filter_is_exit_2_naming_the_value(collector):
    for args, expected in ((["--since", "last tuesday"], "ISO 8601"),
                           (["--trace-id", "abc"], "32 hex")):
        via_url = cli("query", "--url", collector.url, *args)
        assert via_url.returncode == 2 and expected in via_url.stderr, via_url.stderr
    collector.stop()
    direct = cli("query", "--data-dir", str(collector.data_dir), "--since", "last tuesday")
    assert direct.returncode == 2 and "ISO 8601" in direct.stderr


def test_a_second_collector_on_a_held_directory_is_refused(collector, tmp_path):
    second = cli("collector", "--data-dir", str(collector.data_dir),
                 "--grpc-listen", f"127.0.0.1:{free_port()}",
                 "--http-listen", f"127.0.0.1:{free_port()}", timeout=60)
    assert second.returncode == 2
    assert "held by a running collector" in second.stderr


def test_unknown_task_timeline_is_exit_2(collector):
    out = cli("timeline", "T-nope", "--url", collector.url)
    assert out.returncode == 2 and "no records for task 'T-nope'" in out.stderr


def test_verify_of_an_empty_ledger_is_ok(collector):
    out = cli("verify", "--url", collector.url)
    assert out.returncode == 0 and out.stdout.startswith("OK: 0 records")


def test_bad_clickhouse_dsn_is_exit_2():
    out = cli("collector", "--clickhouse", "postgres://x", "--grpc-listen", "127.0.0.1:0",
              "--http-listen", "")
    assert out.returncode == 2 and "expected chdb:///path" in out.stderr
