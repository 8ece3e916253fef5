"""The collector's OTLP settings: the redaction key's sources, the policy and task-id keys."""

import pytest

from aitrail_collector.commands import _redaction_policy
from aitrail_collector.config import CollectorConfig, ConfigError


def test_the_redaction_key_comes_from_the_file_then_the_sdks_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("AITRAIL_REDACTION_KEY", "from-env")
    assert CollectorConfig(dsn="").redaction_key() == (b"from-env", "$AITRAIL_REDACTION_KEY")
    path = tmp_path / "key"
    path.write_text("from-file\r\n")
    assert CollectorConfig(dsn="", redaction_key_file=str(path)).redaction_key() == \
        (b"from-file", str(path))  # the line end is not part of the key
    monkeypatch.delenv("AITRAIL_REDACTION_KEY")
    assert CollectorConfig(dsn="").redaction_key() == (b"", "none")
    path.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        CollectorConfig(dsn="", redaction_key_file=str(path)).redaction_key()
    with pytest.raises(ConfigError, match="no such file"):
        CollectorConfig(dsn="", redaction_key_file=str(tmp_path / "absent")).validate()


@pytest.mark.parametrize("policy,message", [
    ("input=reference", "no reference store"), ("input=blur", "must be one of"),
    ("input", "expected FIELD=ACTION"), ("=hash", "expected FIELD=ACTION")])
def test_a_redaction_policy_the_collector_cannot_apply_is_refused(policy, message):
    with pytest.raises(ConfigError, match=message):
        CollectorConfig(dsn="", redaction_policy=_redaction_policy(policy)).validate()


def test_the_policy_and_task_id_keys_parse_and_default_once():
    from aitrail.otel.mapping import MappingOptions
    assert _redaction_policy(" input=hash, attributes.user.id=drop ") == \
        (("input", "hash"), ("attributes.user.id", "drop"))
    assert CollectorConfig(dsn="").otlp_task_id_keys == MappingOptions().task_id_keys
    with pytest.raises(ConfigError, match="otlp-task-id-keys"):
        CollectorConfig(dsn="", otlp_task_id_keys=()).validate()
