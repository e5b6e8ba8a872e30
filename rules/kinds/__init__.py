"""The rule kinds, by the name a rule file gives in ``kind``."""

from __future__ import annotations

from collections.abc import Mapping

from rules.kinds.close_date_slipped import CloseDateSlipped
from rules.kinds.deal_no_activity import DealNoActivity
from rules.kinds.lead_distribution import LeadDistribution
from rules.kinds.lead_qualification_rate import LeadQualificationRate
from rules.kinds.lead_response_time import LeadResponseTime
from rules.kinds.peer_outlier import PeerOutlier
from rules.kinds.pipeline_coverage import PipelineCoverage
from rules.kinds.quota_attainment import QuotaAttainment
from rules.kinds.stage_conversion_drop import StageConversionDrop
from rules.kinds.stalled_stage import StalledStage
from rules.model import Kind

KINDS: Mapping[str, Kind] = {
    kind.name: kind
    for kind in (
        DealNoActivity(),
        CloseDateSlipped(),
        StalledStage(),
        StageConversionDrop(),
        LeadDistribution(),
        LeadQualificationRate(),
        LeadResponseTime(),
        QuotaAttainment(),
        PeerOutlier(),
        PipelineCoverage(),
    )
}
