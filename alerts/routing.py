"""Where a finding goes: the rule's channel, else its team's channel, else the default channel.

And which team alerts hold back rep alerts (inhibition): a team-level alert of a rule family
says it all for that team, so the per-rep alerts of the same family and team are not sent.
"""

from __future__ import annotations

from models.settings import SlackSettings
from rules.findings import Subject
from rules.model import Rule


def route(rule: Rule, subject: Subject, slack: SlackSettings) -> str:
    if rule.channel:
        return rule.channel
    if subject.team and subject.team in slack.team_channels:
        return slack.team_channels[subject.team]
    return slack.default_channel


def family(rule: Rule) -> str:
    """The rule family for inhibition: the rule's ``family`` label, else its kind."""
    return rule.labels.get("family") or rule.kind


def inhibited_by(subject: Subject, rule_family: str, firing_teams: dict[tuple[str, str], str]) -> str | None:
    """The firing team alert (``(family, team) -> rule id``) that holds back this rep's alert."""
    if subject.type != "rep" or not subject.team:
        return None
    source = firing_teams.get((rule_family, subject.team))
    return f"inhibited by the team alert of rule {source} for {subject.team}" if source else None
