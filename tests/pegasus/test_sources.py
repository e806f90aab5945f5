"""What each source records, and a service that refuses a champion its source cannot feed."""

from __future__ import annotations

import pytest

from flowsentry.data.sources import measures_read, missing_measures, scorable_sources
from flowsentry.errors import FlowsentryError
from flowsentry.serving.scorer import JobScorer
from flowsentry.text.sentences import FEATURE_SETS


@pytest.mark.parametrize(
    ("feature_set", "sources"),
    [
        ("evidence", ["flowbench"]),
        ("evidence_compact", ["flowbench"]),
        ("paper", ["flowbench"]),
        ("pegasus", ["flowbench", "stampede"]),
        ("pegasus_compact", ["flowbench", "stampede"]),
        ("monitord", ["flowbench", "stampede", "monitord"]),
        ("monitord_compact", ["flowbench", "stampede", "monitord"]),
    ],
)
def test_each_feature_set_names_the_sources_that_can_feed_it(feature_set, sources):
    assert scorable_sources(FEATURE_SETS[feature_set]) == sources


def test_context_and_evidence_columns_need_their_measure():
    assert measures_read(["task", "host_runtime_median", "queue_delay_vs_normal"]) == {
        "runtime",
        "queue_delay",
    }
    assert missing_measures("monitord", ["run_wms_delay_vs_normal_median"]) == ["wms_delay"]
    with pytest.raises(ValueError, match="unknown source"):
        missing_measures("ftp", [])


def test_the_service_refuses_a_champion_its_source_never_feeds(pegasus_model, monitord_model):
    with pytest.raises(FlowsentryError) as refused:
        JobScorer("m:pegasus", pegasus_model, follow_champion=False, source="monitord")
    message = str(refused.value)
    assert "\n" not in message
    for measure in ("post_script_delay", "queue_delay", "wms_delay"):
        assert measure in message
    assert "train.features=monitord" in message

    served = JobScorer("m:monitord", monitord_model, follow_champion=False, source="monitord")
    info = served.info()
    assert info.source == "monitord"
    assert info.measures_read == ["kickstart_executables_cpu_time", "runtime"]
    assert info.scorable_sources == ["flowbench", "stampede", "monitord"]
    stampede = JobScorer("m:pegasus", pegasus_model, follow_champion=False, source="stampede")
    assert stampede.info().source == "stampede"
