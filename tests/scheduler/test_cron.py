"""Cron forms are checked before they reach Vertex or KFP, and evaluated by the local scheduler."""

from __future__ import annotations

import datetime as dt

import pytest

from scheduler.cron import CronError, check_kfp_cron, parse_vertex_cron

UTC = dt.timezone.utc


def test_vertex_cron_with_time_zone_fires_at_the_right_minutes() -> None:
    schedule = parse_vertex_cron("TZ=Europe/Berlin 30 3 * * 1-5")
    assert schedule.timezone == "Europe/Berlin"
    utc = dt.timezone.utc
    assert schedule.matches(dt.datetime(2026, 3, 2, 2, 30, tzinfo=utc))  # Monday 03:30 in Berlin (CET)
    assert not schedule.matches(dt.datetime(2026, 3, 2, 3, 30, tzinfo=utc))  # 04:30 in Berlin
    saturday = dt.datetime(2026, 3, 7, 2, 30, tzinfo=utc)
    assert not schedule.matches(saturday)
    assert schedule.next_after(saturday) == dt.datetime(2026, 3, 9, 2, 30, tzinfo=utc)


def test_cron_steps_lists_and_either_day_rule(monkeypatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    schedule = parse_vertex_cron("*/15 0,12 1 * 0")
    day = dt.datetime(2026, 4, 1, tzinfo=dt.timezone.utc)
    fires = [m for m in (day + dt.timedelta(minutes=i) for i in range(24 * 60)) if schedule.matches(m)]
    assert {m.minute for m in fires} == {0, 15, 30, 45} and {m.hour for m in fires} == {0, 12}
    first_of_month = dt.datetime(2026, 4, 1, 12, 45)  # a Wednesday
    a_sunday = dt.datetime(2026, 4, 5, 0, 0)
    assert schedule.matches(first_of_month) and schedule.matches(a_sunday)
    assert not schedule.matches(dt.datetime(2026, 4, 2, 0, 0))
    assert parse_vertex_cron("0 3 * * *").next_after(dt.datetime(2026, 4, 2, 3, 0)) == dt.datetime(
        2026, 4, 3, 3, 0, tzinfo=dt.timezone.utc
    )


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 0 3 * * *", "Vertex needs 5.*Kubeflow's 6-field form"),
        ("61 3 * * *", "minute field '61' is outside 0-59"),
        ("TZ=Mars/Olympus 0 3 * * *", "'Mars/Olympus' is not an IANA zone"),
        ("0 3 * FOO *", "'0 3 \\* FOO \\*'.*names \\(MON-FRI, JAN\\)"),
        ("@fortnightly", "'@fortnightly'"),
    ],
)
def test_bad_vertex_cron_is_refused_clearly(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        parse_vertex_cron(expression)


def test_kfp_cron_needs_six_fields_and_no_time_zone() -> None:
    assert check_kfp_cron("0 0 3 * * *") == "0 0 3 * * *"
    with pytest.raises(CronError, match=r"needs 6, seconds first e.g. '0 0 3 \* \* \*'"):
        check_kfp_cron("0 3 * * *")
    with pytest.raises(CronError, match="no TZ= prefix"):
        check_kfp_cron("TZ=UTC 0 0 3 * * *")


def test_a_leap_day_schedule_fires_on_the_next_leap_day() -> None:
    schedule = parse_vertex_cron("TZ=UTC 0 0 29 2 *")
    assert schedule.next_after(dt.datetime(2026, 3, 1, tzinfo=UTC)) == dt.datetime(2028, 2, 29, tzinfo=UTC)
    with pytest.raises(CronError, match="never fires"):
        parse_vertex_cron("TZ=UTC 0 0 30 2 *").next_after(dt.datetime(2026, 3, 1, tzinfo=UTC))


def test_names_and_nicknames_are_accepted() -> None:
    weekdays = parse_vertex_cron("TZ=UTC 0 9 * * MON-FRI")
    saturday = dt.datetime(2026, 12, 5, 10, tzinfo=UTC)
    assert weekdays.next_after(saturday) == dt.datetime(2026, 12, 7, 9, tzinfo=UTC)  # Monday
    daily = parse_vertex_cron("TZ=UTC @daily")
    assert daily.next_after(saturday) == dt.datetime(2026, 12, 6, tzinfo=UTC)
    assert parse_vertex_cron("0 3 * JAN *").fields == "0 3 * JAN *"


def test_kubeflow_question_mark_form_is_accepted() -> None:
    assert check_kfp_cron("0 0 3 ? * *") == "0 0 3 ? * *"
    with pytest.raises(CronError, match="second field '70' is outside 0-59"):
        check_kfp_cron("70 0 3 * * *")


def test_a_schedule_without_tz_keeps_wall_clock_time_across_daylight_saving(monkeypatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")  # CET -> CEST on 2026-03-29 at 02:00
    schedule = parse_vertex_cron("0 3 * * *")
    before = schedule.next_after(dt.datetime(2026, 3, 27, 12, 0))  # fires 2026-03-28 03:00 CET
    after = schedule.next_after(before)
    assert (before.hour, after.hour) == (3, 3)
    assert after.utcoffset() - before.utcoffset() == dt.timedelta(hours=1)
    assert after.timestamp() - before.timestamp() == 23 * 3600  # the night the clocks go forward
