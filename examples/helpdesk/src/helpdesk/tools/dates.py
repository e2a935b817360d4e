"""Turning what users say about dates into the dates the ticket system expects."""

from __future__ import annotations

import re
from datetime import date, timedelta

WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def parse_since(text: str, today: date) -> date:
    """The start date a user means by 'since Monday', 'in the last 10 days', 'this week', '2026-11-02'; default 30 days."""
    lowered = text.lower()
    if m := re.search(r"\b(\d{4})-(\d{2})-(\d{2})\b", lowered):
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    if m := re.search(r"\b(?:last|past) (\d+) days?\b", lowered):
        return today - timedelta(days=int(m.group(1)))
    if re.search(r"\b(?:last|past) week\b", lowered):
        return today - timedelta(days=7)
    if "this week" in lowered:
        return today - timedelta(days=today.weekday())
    if "this month" in lowered:
        return today.replace(day=1)
    if "yesterday" in lowered:
        return today - timedelta(days=1)
    if "today" in lowered:
        return today
    for n, name in enumerate(WEEKDAYS):
        if re.search(rf"\b{name}\b", lowered):
            back = (today.weekday() - n) % 7 or 7
            return today - timedelta(days=back)
    return today - timedelta(days=30)


def to_tool_date(day: date) -> str:
    """Format a date for the ticket system's API."""
    return day.strftime("%d/%m/%Y")
