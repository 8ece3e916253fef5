"""What only the collector writes: its service name and the reserved event types."""

import time

import pytest
from support import make_record

from aitrail.record import event_types
from aitrail_collector.config import Limits
from aitrail_collector.ingest import apikeys
from aitrail_collector.ingest.validate import validate
from aitrail_collector.ledger import access_log, erasure


def test_the_collector_names_its_own_records_with_the_one_reserved_service():
    assert access_log.SERVICE is erasure.SERVICE is event_types.COLLECTOR_SERVICE


@pytest.mark.parametrize("service", ["aitrail-collector", "AITRAIL-COLLECTOR",
                                     " aitrail-collector\t"])
def test_client_records_of_the_collectors_service_are_refused(service):
    rec = make_record(service=service)
    assert "reserved for the collector" in validate(rec, time.time_ns(), Limits())
    rec.service = "aitrail-collector-2"  # a different name is just a name
    assert validate(rec, time.time_ns(), Limits()) is None


@pytest.mark.parametrize("kind", event_types.RESERVED_TYPES)
def test_every_reserved_event_type_is_refused_from_clients(kind):
    rec = make_record(event_type=kind)
    assert "written by the collector only" in validate(rec, time.time_ns(), Limits())


def test_no_api_key_for_the_collectors_service(tmp_path):
    with pytest.raises(apikeys.KeysFileError, match="reserved for the collector"):
        apikeys.create_key(str(tmp_path / "keys.json"), "aitrail-collector")
    assert not (tmp_path / "keys.json").exists()
